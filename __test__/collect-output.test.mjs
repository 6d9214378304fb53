// spawnCollect: stdout and stderr are collected separately, byte-exact, and decoded once at
// the end so multibyte characters split across reads are never mangled.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { spawnCollect } from 'tethered'
import { fixture } from './helpers.mjs'
import { patternBytes } from './fixtures/pattern.mjs'

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

test('stdout and stderr are kept apart, in order within each stream', async () => {
  const script = 'echo out1; echo err1 >&2; echo out2; echo err2 >&2; printf "no newline"'
  const r = await spawnCollect('sh', ['-c', script])
  assert.equal(r.stdout, 'out1\nout2\nno newline')
  assert.equal(r.stderr, 'err1\nerr2\n')
  assert.equal(r.exitCode, 0)
  assert.equal(r.signal, null)
  assert.equal(r.timedOut, false)
})

test('the result has the documented shape', async () => {
  const r = await spawnCollect('true')
  assert.deepEqual(Object.keys(r).sort(), [
    'durationMs', 'exitCode', 'limit', 'pid', 'resourceUsage', 'signal', 'stderr', 'stdout', 'timedOut',
  ])
  assert.equal(r.stdout, '')
  assert.equal(r.stderr, '')
  assert.ok(Number.isInteger(r.pid) && r.pid > 1, `pid ${r.pid}`)
  assert.equal(typeof r.durationMs, 'number')
  assert.ok(r.durationMs >= 0 && Number.isFinite(r.durationMs))
})

test('arguments reach the child verbatim (no shell, spaces and quotes intact)', async () => {
  const args = ['a b', "it's", '"q"', '$HOME', '*', '', 'ü€😀']
  const r = await spawnCollect('node', ['-e', 'process.stdout.write(JSON.stringify(process.argv.slice(1)))', ...args])
  assert.deepEqual(JSON.parse(r.stdout), args)
})

test("encoding: 'buffer' gives Buffers for both streams", async () => {
  const r = await spawnCollect('sh', ['-c', 'printf abc; printf def >&2'], { encoding: 'buffer' })
  assert.ok(Buffer.isBuffer(r.stdout))
  assert.ok(Buffer.isBuffer(r.stderr))
  assert.equal(r.stdout.toString('latin1'), 'abc')
  assert.equal(r.stderr.toString('latin1'), 'def')
  const empty = await spawnCollect('true', [], { encoding: 'buffer' })
  assert.ok(Buffer.isBuffer(empty.stdout) && empty.stdout.length === 0)
  assert.ok(Buffer.isBuffer(empty.stderr) && empty.stderr.length === 0)
})

test('8 MiB of binary stdout arrives byte-exact', { timeout: 60_000 }, async () => {
  const size = 8 * 1024 * 1024
  const expected = patternBytes(size, 12345)
  const r = await spawnCollect('node', [fixture('pattern.mjs'), String(size), '12345'], { encoding: 'buffer' })
  assert.equal(r.exitCode, 0, r.stderr.toString())
  assert.equal(r.stdout.length, size)
  assert.equal(sha256(r.stdout), sha256(expected))
})

test('8 MiB of binary stderr arrives byte-exact, while stdout stays separate', { timeout: 60_000 }, async () => {
  const size = 8 * 1024 * 1024
  const expected = patternBytes(size, 777)
  const r = await spawnCollect('node', [fixture('pattern.mjs'), String(size), '777', 'stderr'], { encoding: 'buffer' })
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout.length, 0)
  assert.equal(r.stderr.length, size)
  assert.equal(sha256(r.stderr), sha256(expected))
})

test('a multibyte character split across two writes (with a pause) is decoded intact', { timeout: 30_000 }, async () => {
  const r = await spawnCollect('sh', [fixture('split-utf8.sh')])
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'a€b😀\n')
  assert.ok(!r.stdout.includes('\uFFFD'))
})

test('megabytes of multibyte text straddling read boundaries decode intact', { timeout: 60_000 }, async () => {
  const count = 200_000 // "€😀ä" is 9 bytes: 1.8 MB in 65521-byte writes
  const r = await spawnCollect('node', [fixture('repeat-utf8.mjs'), String(count)])
  assert.equal(r.exitCode, 0, r.stderr)
  assert.equal(r.stdout.length, '€😀ä'.length * count)
  assert.ok(!r.stdout.includes('\uFFFD'), 'no replacement characters')
  assert.equal(r.stdout, '€😀ä'.repeat(count))
})

test('invalid UTF-8 is replaced the way Buffer#toString does, not dropped', async () => {
  const r = await spawnCollect('printf', ['x\\377y'])
  assert.equal(r.stdout, Buffer.from([0x78, 0xff, 0x79]).toString('utf8'))
})
