// runProcess never rejects because of the process: every failure is a field of the result.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync, chmodSync } from 'node:fs'
import { join } from 'node:path'
import { runProcess } from 'tethered'
import { fixture, uniqueMarker, processesWithMarker, killMarked, killGroup, waitFor, settlesWithin, tempDir } from './helpers.mjs'

const GIB = 1024 * 1024 * 1024

function assertShape(r) {
  for (const key of ['stdout', 'stderr', 'ok', 'code', 'signal', 'timedOut', 'durationMs']) {
    assert.ok(key in r, `result has ${key}`)
  }
  assert.equal(typeof r.ok, 'boolean')
  assert.equal(typeof r.durationMs, 'number')
}

test('success: ok, code 0, no error', async () => {
  const r = await runProcess('sh', ['-c', 'echo out; echo err >&2'])
  assertShape(r)
  assert.equal(r.ok, true)
  assert.equal(r.code, 0)
  assert.equal(r.signal, null)
  assert.equal(r.timedOut, false)
  assert.equal(r.stdout, 'out\n')
  assert.equal(r.stderr, 'err\n')
  assert.equal(r.error, undefined)
  assert.ok(!('error' in r), 'no error key at all')
})

test('a plain non-zero exit: ok false, the code, and no error', async () => {
  const r = await runProcess('sh', ['-c', 'echo failing >&2; exit 9'])
  assertShape(r)
  assert.equal(r.ok, false)
  assert.equal(r.code, 9)
  assert.equal(r.signal, null)
  assert.equal(r.stderr, 'failing\n')
  assert.ok(!('error' in r), 'no error for the process’s own exit')
})

test('death by a signal: ok false, signal set, code null, no error', async () => {
  const r = await runProcess('sh', ['-c', 'kill -KILL $$'])
  assert.equal(r.ok, false)
  assert.equal(r.code, null)
  assert.equal(r.signal, 'SIGKILL')
  assert.equal(r.timedOut, false)
  assert.ok(!('error' in r))
})

test('command not found: code 127, "Failed to spawn:" on stderr, error.code ENOENT', async () => {
  const r = await runProcess('tethered-no-such-command-xyz', ['a'])
  assertShape(r)
  assert.equal(r.ok, false)
  assert.equal(r.code, 127)
  assert.equal(r.signal, null)
  assert.equal(r.stdout, '')
  assert.match(r.stderr, /^Failed to spawn: /)
  assert.match(r.stderr, /tethered-no-such-command-xyz/)
  assert.equal(r.error.code, 'ENOENT')
  assert.equal(typeof r.error.message, 'string')
  assert.ok(r.error.message.length > 0)
})

test('not executable: code 126, "Failed to spawn:" on stderr, error.code EACCES', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const file = join(dir, 'plain.sh')
  writeFileSync(file, 'echo nope\n')
  chmodSync(file, 0o644)
  const r = await runProcess(file)
  assert.equal(r.ok, false)
  assert.equal(r.code, 126)
  assert.match(r.stderr, /^Failed to spawn: /)
  assert.equal(r.error.code, 'EACCES')
})

test('encoding buffer applies to the "Failed to spawn" stderr too', async () => {
  const r = await runProcess('tethered-no-such-command-xyz', [], { encoding: 'buffer' })
  assert.ok(Buffer.isBuffer(r.stdout) && Buffer.isBuffer(r.stderr))
  assert.match(r.stderr.toString(), /^Failed to spawn: /)
})

test('output too large: ok false, ERR_MAX_BUFFER, output truncated to maxBuffer', { timeout: 60_000 }, async (t) => {
  const r = await settlesWithin(runProcess('head', ['-c', String(GIB), '/dev/zero'], { maxBuffer: 50_000, encoding: 'buffer' }), 20_000)
  assert.equal(r.ok, false)
  assert.equal(r.error.code, 'ERR_MAX_BUFFER')
  assert.equal(typeof r.error.message, 'string')
  assert.equal(r.timedOut, false)
  assert.ok(r.stdout.length > 0 && r.stdout.length <= 50_000, `stdout length ${r.stdout.length}`)
})

test('timeout: ok false, timedOut, ERR_TIMEOUT, group killed', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('run-timeout')
  t.after(() => killMarked(marker))
  const r = await settlesWithin(runProcess('sh', [fixture('tree.sh'), marker, '1'], { timeout: 1_500 }), 20_000)
  assert.equal(r.ok, false)
  assert.equal(r.timedOut, true)
  assert.equal(r.signal, 'SIGTERM')
  assert.equal(r.error.code, 'ERR_TIMEOUT')
  assert.equal(r.stdout, 'started\n')
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'the group to be gone' })
})

test('abort: ok false, error.code ABORT_ERR, resolves (does not reject)', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('run-abort')
  t.after(() => killMarked(marker))
  const ac = new AbortController()
  const call = runProcess('bash', ['-c', 'exec -a "$0" sleep 1000', marker], { signal: ac.signal })
  await waitFor(() => processesWithMarker(marker).length === 1, { what: 'the sleeper to run' })
  ac.abort()
  const r = await settlesWithin(call, 10_000)
  assert.equal(r.ok, false)
  assert.equal(r.error.code, 'ABORT_ERR')
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'the sleeper to be gone' })
})

test('an already-aborted signal resolves with ABORT_ERR without running', async () => {
  const r = await runProcess('true', [], { signal: AbortSignal.abort() })
  assert.equal(r.ok, false)
  assert.equal(r.error.code, 'ABORT_ERR')
})

test('never rejects for process failures, even many at once', { timeout: 60_000 }, async (t) => {
  const calls = [
    runProcess('true'),
    runProcess('false'),
    runProcess('tethered-no-such-command-xyz'),
    runProcess('sh', ['-c', 'kill -TERM $$']),
    runProcess('printf', ['xyz'], { maxBuffer: 1 }),
    runProcess('sleep', ['1000'], { timeout: 100 }),
    runProcess('true', [], { cwd: '/nonexistent-tethered-dir' }),
  ]
  const settled = await settlesWithin(Promise.allSettled(calls), 20_000)
  for (const s of settled) {
    assert.equal(s.status, 'fulfilled', s.reason && s.reason.stack)
    if (s.value.pid) t.after(() => killGroup(s.value.pid))
  }
  assert.deepEqual(settled.map((s) => s.value.ok), [true, false, false, false, false, false, false])
  assert.deepEqual(settled.map((s) => s.value.error && s.value.error.code),
    [undefined, undefined, 'ENOENT', undefined, 'ERR_MAX_BUFFER', 'ERR_TIMEOUT', 'ENOENT'])
})

test('invalid arguments still reject (programming errors)', async () => {
  await assert.rejects(runProcess(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  await assert.rejects(runProcess('true', [], { timeout: -5 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  await assert.rejects(runProcess(''), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
})
