// maxBuffer: a stream passing the limit rejects the call with ERR_MAX_BUFFER, kills the group
// at once (even a child that would write 1 GB), and hands back at most maxBuffer bytes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect } from 'tethered'
import { outcome, settlesWithin, waitFor, groupMembers, killGroup, pidAlive } from './helpers.mjs'

const GIB = 1024 * 1024 * 1024
const MIB = 1024 * 1024

async function expectOverflow(promise) {
  const o = await settlesWithin(outcome(promise), 20_000, 'a call over maxBuffer')
  assert.equal(o.ok, false, 'the call rejects')
  return o.error
}

test('1 GB on stdout: rejects within seconds, group killed, partial stdout ≤ maxBuffer', { timeout: 60_000 }, async (t) => {
  const maxBuffer = 256 * 1024
  const err = await expectOverflow(
    spawnCollect('sh', ['-c', `echo to-stderr >&2; head -c ${GIB} /dev/zero`], { maxBuffer, encoding: 'buffer' }),
  )
  t.after(() => killGroup(err.pid))
  assert.ok(err instanceof Error)
  assert.equal(err.code, 'ERR_MAX_BUFFER')
  assert.equal(err.stream, 'stdout')
  assert.match(err.message, /maxBuffer/)
  assert.ok(Buffer.isBuffer(err.stdout))
  assert.ok(err.stdout.length > 0 && err.stdout.length <= maxBuffer, `stdout length ${err.stdout.length}`)
  assert.ok(err.stdout.every((b) => b === 0))
  assert.equal(err.stderr.toString(), 'to-stderr\n', 'the other stream is kept too')
  assert.ok(Number.isInteger(err.pid))
  assert.equal(pidAlive(err.pid), false, 'leader reaped before the promise settled')
  await waitFor(() => groupMembers(err.pid).length === 0, { timeout: 5_000, what: 'the group (sh and head) to be gone' })
})

test('1 GB on stderr: rejects with stream "stderr", stdout kept', { timeout: 60_000 }, async (t) => {
  const maxBuffer = 100_000
  const err = await expectOverflow(
    spawnCollect('sh', ['-c', `echo hello; head -c ${GIB} /dev/zero >&2`], { maxBuffer }),
  )
  t.after(() => killGroup(err.pid))
  assert.equal(err.code, 'ERR_MAX_BUFFER')
  assert.equal(err.stream, 'stderr')
  assert.equal(typeof err.stderr, 'string')
  assert.ok(err.stderr.length > 0 && err.stderr.length <= maxBuffer, `stderr length ${err.stderr.length}`)
  assert.equal(err.stdout, 'hello\n')
  await waitFor(() => groupMembers(err.pid).length === 0, { timeout: 5_000, what: 'the group to be gone' })
})

test('exactly maxBuffer bytes is fine; one more byte rejects with exactly maxBuffer kept', async () => {
  const maxBuffer = 70_001
  const fits = await spawnCollect('head', ['-c', String(maxBuffer), '/dev/zero'], { maxBuffer, encoding: 'buffer' })
  assert.equal(fits.exitCode, 0)
  assert.equal(fits.stdout.length, maxBuffer)
  const err = await expectOverflow(
    spawnCollect('head', ['-c', String(maxBuffer + 1), '/dev/zero'], { maxBuffer, encoding: 'buffer' }),
  )
  assert.equal(err.code, 'ERR_MAX_BUFFER')
  assert.equal(err.stdout.length, maxBuffer)
})

test('maxBuffer: 1 is the smallest limit', async () => {
  const err = await expectOverflow(spawnCollect('printf', ['ab'], { maxBuffer: 1 }))
  assert.equal(err.code, 'ERR_MAX_BUFFER')
  assert.equal(err.stdout, 'a')
})

test('the default limit is 10 MiB per stream', { timeout: 60_000 }, async () => {
  const fits = await spawnCollect('head', ['-c', String(10 * MIB), '/dev/zero'], { encoding: 'buffer' })
  assert.equal(fits.stdout.length, 10 * MIB)
  const err = await expectOverflow(spawnCollect('head', ['-c', String(10 * MIB + 1), '/dev/zero'], { encoding: 'buffer' }))
  assert.equal(err.code, 'ERR_MAX_BUFFER')
  assert.equal(err.stdout.length, 10 * MIB)
})

test('maxBuffer: Infinity lifts the limit', { timeout: 60_000 }, async () => {
  const r = await spawnCollect('head', ['-c', String(11 * MIB), '/dev/zero'], { maxBuffer: Infinity, encoding: 'buffer' })
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout.length, 11 * MIB)
})

test('a group that ignores SIGTERM is still ended by the overflow (SIGKILL escalation)', { timeout: 60_000 }, async (t) => {
  const err = await expectOverflow(
    spawnCollect('sh', ['-c', `trap '' TERM; head -c ${GIB} /dev/zero; sleep 1000`], { maxBuffer: 4096, forceKillAfter: 300 }),
  )
  t.after(() => killGroup(err.pid))
  assert.equal(err.code, 'ERR_MAX_BUFFER')
  assert.ok(err.stdout.length <= 4096)
  assert.equal(err.signal, 'SIGKILL')
  await waitFor(() => groupMembers(err.pid).length === 0, { timeout: 5_000, what: 'the group to be gone' })
})
