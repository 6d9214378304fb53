// AbortSignal: aborting kills the whole group and rejects with AbortError / ABORT_ERR; an
// already-aborted signal rejects without running anything; the listener never outlives a call.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { getEventListeners } from 'node:events'
import { spawnCollect } from 'tethered'
import {
  fixture, uniqueMarker, processesWithMarker, killMarked, killGroup, waitFor, settlesWithin, outcome, tempDir, sleep, pidAlive,
} from './helpers.mjs'

function assertAbortError(err) {
  assert.ok(err instanceof Error, 'an Error')
  assert.equal(err.name, 'AbortError')
  assert.equal(err.code, 'ABORT_ERR')
}

test('abort mid-run rejects with AbortError and kills the whole group', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('abort-tree')
  t.after(() => killMarked(marker))
  const ac = new AbortController()
  const call = spawnCollect('sh', [fixture('tree.sh'), marker, '3'], { signal: ac.signal, timeout: 60_000 })
  // tree.sh + 3 grandchildren + intermediate sh + great-grandchild
  await waitFor(() => processesWithMarker(marker).length === 6, { what: 'the whole tree to be running' })
  ac.abort()
  const o = await settlesWithin(outcome(call), 10_000, 'the aborted call')
  assert.equal(o.ok, false)
  assertAbortError(o.error)
  assert.equal(o.error.stdout, 'started\n', 'output collected so far is attached')
  assert.equal(pidAlive(o.error.pid), false, 'leader reaped before the rejection')
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'every marked process to be gone' })
})

test('an already-aborted signal rejects without running the command', async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const flag = join(dir, 'ran')
  const signal = AbortSignal.abort()
  const o = await settlesWithin(outcome(spawnCollect('touch', [flag], { signal })), 10_000)
  assert.equal(o.ok, false)
  assertAbortError(o.error)
  await sleep(300)
  assert.equal(existsSync(flag), false, 'the command never ran')
  assert.equal(getEventListeners(signal, 'abort').length, 0)
})

test('aborting after the call settled changes nothing', async () => {
  const ac = new AbortController()
  const r = await spawnCollect('sh', ['-c', 'echo fine'], { signal: ac.signal })
  ac.abort()
  await sleep(50)
  assert.equal(r.stdout, 'fine\n')
  assert.equal(r.exitCode, 0)
})

test('the abort listener is removed when each call settles (resolve, reject, spawn error, abort)', { timeout: 60_000 }, async () => {
  const ac = new AbortController()
  const { signal } = ac
  await spawnCollect('true', [], { signal })
  assert.equal(getEventListeners(signal, 'abort').length, 0, 'after a resolve')
  await spawnCollect('printf', ['abc'], { signal, maxBuffer: 1 }).catch(() => {})
  assert.equal(getEventListeners(signal, 'abort').length, 0, 'after a maxBuffer rejection')
  await spawnCollect('tethered-no-such-command-xyz', [], { signal }).catch(() => {})
  assert.equal(getEventListeners(signal, 'abort').length, 0, 'after a spawn error')
  await spawnCollect('sleep', ['1000'], { signal, timeout: 100 }).then((r) => killGroup(r.pid))
  assert.equal(getEventListeners(signal, 'abort').length, 0, 'after a timeout')
  // While calls run, each holds one listener.
  const running = Array.from({ length: 5 }, () => spawnCollect('sleep', ['0.2'], { signal }))
  assert.equal(getEventListeners(signal, 'abort').length, 5, 'one listener per running call')
  await Promise.all(running)
  assert.equal(getEventListeners(signal, 'abort').length, 0, 'after concurrent calls')
  const other = new AbortController()
  const aborted = spawnCollect('sleep', ['1000'], { signal: other.signal })
  await sleep(50)
  other.abort()
  await aborted.catch(() => {})
  assert.equal(getEventListeners(other.signal, 'abort').length, 0, 'after an abort')
})

test('many calls sharing one long-lived signal cause no MaxListenersExceededWarning', { timeout: 60_000 }, async (t) => {
  const warnings = []
  const onWarning = (w) => warnings.push(w)
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))
  const ac = new AbortController()
  for (let i = 0; i < 40; i++) {
    await spawnCollect('true', [], { signal: ac.signal })
  }
  // Batches of 5 concurrent calls stay under the default limit of 10 only if listeners go away.
  for (let i = 0; i < 8; i++) {
    await Promise.all(Array.from({ length: 5 }, () => spawnCollect('true', [], { signal: ac.signal })))
  }
  await sleep(50) // warnings are emitted on process.nextTick
  const leaks = warnings.filter((w) => w.name === 'MaxListenersExceededWarning')
  assert.deepEqual(leaks.map((w) => w.message), [])
  assert.equal(getEventListeners(ac.signal, 'abort').length, 0)
})

test('AbortSignal.timeout() works as an abort signal', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('abort-timeout-signal')
  t.after(() => killMarked(marker))
  const o = await settlesWithin(
    outcome(spawnCollect('bash', ['-c', 'exec -a "$0" sleep 1000', marker], { signal: AbortSignal.timeout(200) })),
    10_000,
  )
  assert.equal(o.ok, false)
  assertAbortError(o.error)
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'the sleeper to be gone' })
})

// The implementation accepts options in place of args (`fn(command, options)`, as Node's
// execFile does). Then options.signal must be honoured too, not validated and ignored.
test('abort also works when options are passed in place of args', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('abort-shifted')
  t.after(() => killMarked(marker))
  // The fixture takes no arguments; it finds its marker in the (inherited) environment.
  process.env.TETHERED_MARKER = marker
  t.after(() => delete process.env.TETHERED_MARKER)
  const ac = new AbortController()
  const call = spawnCollect(fixture('marked-sleep-from-env.sh'), { signal: ac.signal, timeout: 3_000 })
  await waitFor(() => processesWithMarker(marker).length === 1, { what: 'the sleeper to run' })
  ac.abort()
  const o = await settlesWithin(outcome(call), 15_000)
  assert.equal(o.ok, false, `expected an AbortError rejection, got ${JSON.stringify(o.value)}`)
  assertAbortError(o.error)
})
