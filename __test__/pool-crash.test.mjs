// Worker deaths in a Pool (DESIGN §6): a request in flight rejects ERR_WORKER_EXITED with what
// an operator needs, or is re-dispatched while it has attempts left; a poison request kills
// exactly maxAttempts workers; queued requests are untouched; the slot restarts with backoff
// and keeps its index; more than maxRestarts crashes within restartWindow → 'exhausted'.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { outcome, sleep, tempDir } from './helpers.mjs'
import { makePool, nextEvent, nextMessage, eventsNamed, recorded, allGone } from './pool-helpers.mjs'

test('a crash mid-request without attempts left: ERR_WORKER_EXITED with attempts, pid, exitCode, signal, stderrTail', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 2, stdio: 'pipe' })
  await pool.start()
  const received = nextMessage(pool, (m) => m.received === 'bad')
  const request = outcome(pool.request({ op: 'crash', code: 3, stderr: 'decoding...\ncorrupt JPEG data\n', tag: 'bad' }))
  const { pid } = await received
  const { error } = await request
  assert.equal(error.code, 'ERR_WORKER_EXITED')
  assert.ok(error instanceof Error)
  assert.equal(error.attempts, 1)
  assert.equal(error.pid, pid)
  assert.equal(error.exitCode, 3)
  assert.equal(error.signal, null)
  assert.match(error.stderrTail, /corrupt JPEG data\n?$/)

  const [crashed] = await recorded(events, 'crashed')
  assert.equal(crashed.pid, pid)
  assert.equal(crashed.code, 3)
  assert.equal(crashed.signal, null)
  const slot = crashed.worker
  const [restarting] = await recorded(events, 'restarting')
  assert.equal(restarting.worker, slot)
  assert.equal(restarting.attempt, 1)
  assert.equal(restarting.delay, 50)
  const replacement = (await recorded(events, 'spawn', 3))[2]
  assert.equal(replacement.worker, slot, 'the replacement keeps the slot index')
  assert.notEqual(replacement.pid, pid)
  await allGone([pid])

  // The other worker never stopped serving; the pool is whole again.
  const answers = await Promise.all([1, 2, 3, 4].map((value) => pool.request({ op: 'sleep', ms: 100, value })))
  assert.deepEqual(new Set(answers.map((a) => a.pid)), new Set(pids.filter((p) => p !== pid)))
  const s = pool.stats()
  assert.equal(s.crashes, 1)
  assert.equal(s.restarts, 1)
  assert.equal(s.rejected.workerExited, 1)
  assert.equal(s.workers.find((w) => w.worker === slot).crashes, 1)
})

test('a worker killed by a signal: exitCode null, signal named; stderrTail keeps at most 4 KiB, the last lines', { timeout: 30_000 }, async (t) => {
  const { pool } = makePool(t, { size: 1, stdio: 'pipe' })
  const lines = Array.from({ length: 2_000 }, (_, i) => `chatty line ${i}\n`).join('')
  const { error } = await outcome(pool.request({ op: 'crash', signal: 'SIGKILL', stderr: lines }))
  assert.equal(error.code, 'ERR_WORKER_EXITED')
  assert.equal(error.exitCode, null)
  assert.equal(error.signal, 'SIGKILL')
  assert.ok(Buffer.byteLength(error.stderrTail) <= 4_096, `stderrTail is ${Buffer.byteLength(error.stderrTail)} bytes`)
  assert.ok(Buffer.byteLength(error.stderrTail) >= 2_048, 'a tail worth reading')
  assert.match(error.stderrTail, /chatty line 1999\n?$/)
})

test('without piped stderr there is no stderrTail', { timeout: 30_000 }, async (t) => {
  const { pool } = makePool(t, { size: 1, stdio: 'ignore' })
  const { error } = await outcome(pool.request({ op: 'crash', stderr: 'unseen\n' }))
  assert.equal(error.code, 'ERR_WORKER_EXITED')
  assert.ok(!error.stderrTail, `stderrTail ${JSON.stringify(error.stderrTail)}`)
})

test('a crash with attempts left: the request is re-dispatched and answered', { timeout: 30_000 }, async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const { pool, events } = makePool(t, { size: 2, maxAttempts: 2 })
  await pool.start()
  const answer = await pool.request({ op: 'crash', once: join(dir, 'crashed'), after: 50 })
  assert.equal(answer.survived, true)
  assert.equal(eventsNamed(events, 'crashed').length, 1)
  const s = pool.stats()
  assert.equal(s.completed, 1)
  assert.equal(s.failed, 0)
  // Its own option overrides the pool's: one attempt, so the crash rejects it.
  const single = await outcome(pool.request({ op: 'crash', once: join(dir, 'second') }, { maxAttempts: 1 }))
  assert.equal(single.error.code, 'ERR_WORKER_EXITED')
  assert.equal(single.error.attempts, 1)
})

test('a poison request kills exactly maxAttempts workers', { timeout: 30_000 }, async (t) => {
  const { pool, events } = makePool(t, { size: 2, maxAttempts: 3 })
  await pool.start()
  const { error } = await outcome(pool.request({ op: 'crash', code: 7 }))
  assert.equal(error.code, 'ERR_WORKER_EXITED')
  assert.equal(error.attempts, 3)
  assert.equal(error.exitCode, 7)
  await sleep(500)
  const crashed = eventsNamed(events, 'crashed')
  assert.equal(crashed.length, 3, 'one death per attempt, no more')
  assert.equal(new Set(crashed.map((c) => c.pid)).size, 3)
  assert.equal(pool.stats().crashes, 3)
  assert.equal((await pool.request({ op: 'echo', value: 'fine' })).value, 'fine')
})

test('queued requests survive a crash and are served by the replacement', { timeout: 30_000 }, async (t) => {
  const { pool, pids } = makePool(t, { size: 1 })
  await pool.start()
  const crash = outcome(pool.request({ op: 'crash', after: 200 }))
  const queued = [1, 2, 3].map((value) => pool.request({ op: 'echo', value }))
  await sleep(50)
  assert.equal(pool.stats().queued, 3)
  assert.equal((await crash).error.code, 'ERR_WORKER_EXITED')
  const answers = await Promise.all(queued)
  assert.deepEqual(answers.map((a) => a.value), [1, 2, 3])
  assert.equal(pids.length, 2)
  assert.ok(answers.every((a) => a.pid === pids[1]), 'served by the replacement')
})

test('more than maxRestarts crashes within restartWindow: exhausted; every request rejects ERR_POOL_EXHAUSTED', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1, maxRestarts: 2, restartWindow: 60_000, args: ['exit-at-start'] })
  const exhausted = nextEvent(pool, 'exhausted', 20_000)
  await pool.start()
  // With attempts to spare it is re-dispatched until the pool gives up.
  const pending = outcome(pool.request({ op: 'sleep', ms: 1_000 }, { maxAttempts: 100 }))
  const event = await exhausted
  assert.equal(event.crashes, 3)
  assert.equal(event.window, 60_000)
  assert.equal(typeof event.message, 'string')
  assert.equal(pool.state, 'exhausted')
  assert.equal((await pending).error.code, 'ERR_POOL_EXHAUSTED')

  const started = performance.now()
  const later = await outcome(pool.request({ op: 'echo' }))
  assert.equal(later.error.code, 'ERR_POOL_EXHAUSTED')
  assert.ok(performance.now() - started < 200, 'rejected at once')
  assert.equal(eventsNamed(events, 'crashed').length, 3)
  assert.equal(pids.length, 3, 'no restart after the last crash')
  await allGone(pids)
  assert.equal(pool.size, 0)

  const closing = performance.now()
  await pool.close()
  assert.ok(performance.now() - closing < 200, 'close() after exhausted resolves at once')
  const s = pool.stats()
  assert.equal(s.state, 'exhausted')
  assert.equal(s.rejected.exhausted, 2)
})

test('crashes spread out beyond restartWindow do not exhaust the pool', { timeout: 30_000 }, async (t) => {
  const { pool, events } = makePool(t, { size: 1, maxRestarts: 1, restartWindow: 400 })
  await pool.start()
  for (let i = 0; i < 3; i++) {
    assert.equal((await outcome(pool.request({ op: 'crash' }))).error.code, 'ERR_WORKER_EXITED')
    await sleep(600)
  }
  assert.equal(pool.state, 'running')
  assert.deepEqual(eventsNamed(events, 'exhausted'), [])
  assert.equal((await pool.request({ op: 'echo', value: 'alive' })).value, 'alive')
})
