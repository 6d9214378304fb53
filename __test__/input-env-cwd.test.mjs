// input (string and bytes) reaches stdin; env is merged over process.env, undefined unsets,
// extendEnv: false starts empty; cwd sets the working directory.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, chmodSync, realpathSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createHash } from 'node:crypto'
import { spawnCollect } from 'tethered'
import { tempDir, settlesWithin } from './helpers.mjs'
import { patternBytes } from './fixtures/pattern.mjs'

const sha256 = (bytes) => createHash('sha256').update(bytes).digest('hex')

test('string input reaches stdin, UTF-8 encoded, and stdin is then closed', async () => {
  const r = await spawnCollect('cat', [], { input: 'héllo €\nsecond line' })
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'héllo €\nsecond line')
})

test('Buffer input reaches stdin byte-exact', async () => {
  const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 0x80])
  const r = await spawnCollect('cat', [], { input: bytes, encoding: 'buffer' })
  assert.deepEqual(r.stdout, bytes)
})

test('a Uint8Array view (with a byte offset) sends exactly its bytes', async () => {
  const backing = Buffer.from('xxhello worldyy')
  const view = new Uint8Array(backing.buffer, backing.byteOffset + 2, 11)
  const r = await spawnCollect('cat', [], { input: view })
  assert.equal(r.stdout, 'hello world')
})

test('4 MiB of input is echoed back while the output is read (no pipe deadlock)', { timeout: 60_000 }, async () => {
  const text = 'abcdefghijklmnopqrstuvwxyz0123456789\n'.repeat(Math.ceil((4 * 1024 * 1024) / 37))
  const r = await settlesWithin(spawnCollect('cat', [], { input: text }), 30_000)
  assert.equal(r.stdout.length, text.length)
  assert.equal(sha256(r.stdout), sha256(text))
})

test('4 MiB of binary Buffer input is hashed by the child correctly', { timeout: 60_000 }, async () => {
  const bytes = patternBytes(4 * 1024 * 1024, 99)
  const r = await settlesWithin(spawnCollect('sha256sum', [], { input: bytes }), 30_000)
  assert.equal(r.stdout.split(' ')[0], sha256(bytes))
})

test('a child that never reads a large input still completes (EPIPE is not an error)', { timeout: 30_000 }, async () => {
  const r = await settlesWithin(spawnCollect('sh', ['-c', 'echo ignored-stdin'], { input: 'x'.repeat(8 * 1024 * 1024) }), 15_000)
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'ignored-stdin\n')
})

test('without input, stdin is empty (a reader sees EOF at once, nothing hangs)', { timeout: 30_000 }, async () => {
  const r = await settlesWithin(spawnCollect('cat'), 10_000)
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, '')
})

test('empty input gives an empty, closed stdin', async () => {
  const r = await spawnCollect('wc', ['-c'], { input: '' })
  assert.equal(r.stdout.trim(), '0')
})

test('env is merged over process.env (read at call time)', async (t) => {
  process.env.TETHERED_TEST_PARENT = 'from-parent'
  t.after(() => delete process.env.TETHERED_TEST_PARENT)
  const r = await spawnCollect('/usr/bin/env', [], { env: { TETHERED_TEST_CHILD: 'from-options', TETHERED_TEST_EMPTY: '' } })
  const lines = r.stdout.split('\n')
  assert.ok(lines.includes('TETHERED_TEST_PARENT=from-parent'))
  assert.ok(lines.includes('TETHERED_TEST_CHILD=from-options'))
  assert.ok(lines.includes('TETHERED_TEST_EMPTY='))
  assert.ok(lines.includes(`PATH=${process.env.PATH}`))
})

test('options.env overrides a parent variable of the same name', async (t) => {
  process.env.TETHERED_TEST_OVERRIDE = 'parent'
  t.after(() => delete process.env.TETHERED_TEST_OVERRIDE)
  const r = await spawnCollect('sh', ['-c', 'printf %s "$TETHERED_TEST_OVERRIDE"'], { env: { TETHERED_TEST_OVERRIDE: 'child' } })
  assert.equal(r.stdout, 'child')
})

test('an env value of undefined unsets an inherited variable', async (t) => {
  process.env.TETHERED_TEST_UNSET = 'present'
  t.after(() => delete process.env.TETHERED_TEST_UNSET)
  const r = await spawnCollect('/usr/bin/env', [], { env: { TETHERED_TEST_UNSET: undefined } })
  assert.ok(!r.stdout.includes('TETHERED_TEST_UNSET'), r.stdout)
  assert.ok(r.stdout.split('\n').includes(`PATH=${process.env.PATH}`), 'the rest is still inherited')
})

test('an inherited variable that is not UTF-8 reaches the child byte-exact', async () => {
  // A Node process whose environment holds the bytes 61 ff 62 runs a child through tethered.
  const index = fileURLToPath(new URL('../index.js', import.meta.url))
  const parent = `require(process.argv[1])
    .spawnCollect('sh', ['-c', 'printf %s "$TETHERED_TEST_BYTES" | od -An -tx1'])
    .then((r) => process.stdout.write(r.stdout))`
  const r = await spawnCollect('sh', ['-c', 'TETHERED_TEST_BYTES="$(printf "a\\377b")" exec "$0" -e "$1" "$2"', process.execPath, parent, index])
  assert.equal(r.stderr, '')
  assert.equal(r.stdout.trim(), '61 ff 62')
})

test('extendEnv: false gives the child only the given variables', async () => {
  const r = await spawnCollect('/usr/bin/env', [], { extendEnv: false, env: { ONLY_ME: '1', AND_ME: 'two words' } })
  assert.deepEqual(r.stdout.trim().split('\n').sort(), ['AND_ME=two words', 'ONLY_ME=1'])
})

test('extendEnv: false without env gives an empty environment', async () => {
  const r = await spawnCollect('/usr/bin/env', [], { extendEnv: false })
  assert.equal(r.stdout, '')
})

test('env values keep UTF-8 and "=" intact', async () => {
  const r = await spawnCollect('sh', ['-c', 'printf %s "$V"'], { env: { V: 'a=b=ü€' } })
  assert.equal(r.stdout, 'a=b=ü€')
})

test('cwd sets the working directory', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const r = await spawnCollect('pwd', ['-P'], { cwd: dir })
  assert.equal(r.stdout.trim(), realpathSync(dir))
  writeFileSync(join(dir, 'file.txt'), 'contents in cwd')
  const rel = await spawnCollect('cat', ['file.txt'], { cwd: dir })
  assert.equal(rel.stdout, 'contents in cwd', 'relative paths are looked up in cwd')
})

test('a relative command path is resolved against cwd, as Node does', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const script = join(dir, 'hello.sh')
  writeFileSync(script, '#!/bin/sh\necho "hello from $(pwd -P)"\n')
  chmodSync(script, 0o755)
  const r = await spawnCollect('./hello.sh', [], { cwd: dir })
  assert.equal(r.stdout, `hello from ${realpathSync(dir)}\n`)
})

test('without cwd the child runs in process.cwd()', async () => {
  const r = await spawnCollect('pwd', ['-P'])
  assert.equal(r.stdout.trim(), realpathSync(process.cwd()))
})

// The implementation accepts options in place of args (`fn(command, options)`, as Node's
// execFile does); the options must then mean the same as in the third position.
test('options passed in place of args: env and cwd still apply', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const r = await spawnCollect('sh', { cwd: dir })
  assert.equal(r.exitCode, 0)
  const withEnv = await spawnCollect('/usr/bin/env', { extendEnv: false, env: { SHIFTED: 'yes' } })
  assert.equal(withEnv.stdout, 'SHIFTED=yes\n')
})
