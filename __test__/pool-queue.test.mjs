// The Pool's queue (DESIGN §6): FIFO, bounded by maxQueue (a full queue rejects at once), and
// a request that times out or is aborted while it waits is removed without touching a worker.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { outcome, sleep } from './helpers.mjs'
import { makePool, eventsNamed } from './pool-helpers.mjs'

/** The tags the workers announced having received, in order. */
function receivedTags(events) {
  return eventsNamed(events, 'message').filter((m) => m.received !== undefined).map((m) => m.received)
}

test('waiting requests are dispatched in FIFO order', { timeout: 30_000 }, async (t) => {
  const { pool, events } = makePool(t, { size: 1 })
  await pool.start()
  const tags = ['a', 'b', 'c', 'd', 'e']
  await Promise.all(tags.map((tag) => pool.request({ op: 'sleep', ms: 30, tag })))
  assert.deepEqual(receivedTags(events), tags)
})

test('a full queue rejects ERR_POOL_QUEUE_FULL at once; what was admitted is served', { timeout: 30_000 }, async (t) => {
  const { pool } = makePool(t, { size: 1, maxQueue: 2, queueTimeout: 0 })
  await pool.start()
  const admitted = [pool.request({ op: 'sleep', ms: 2_000 }), pool.request({ op: 'echo', value: 'q1' }), pool.request({ op: 'echo', value: 'q2' })]
  await sleep(200)
  assert.equal(pool.stats().queued, 2)

  const started = performance.now()
  const full = await outcome(pool.request({ op: 'echo', value: 'over' }))
  const took = performance.now() - started
  assert.equal(full.error.code, 'ERR_POOL_QUEUE_FULL')
  assert.ok(full.error instanceof Error)
  assert.ok(took < 500, `rejected after ${took} ms, not at once`)
  assert.equal(pool.stats().queued, 2, 'the queue never passes maxQueue')
  assert.equal(pool.stats().rejected.queueFull, 1)

  const answers = await Promise.all(admitted)
  assert.deepEqual(answers.slice(1).map((a) => a.value), ['q1', 'q2'])
  // Room again once the queue drained.
  assert.equal((await pool.request({ op: 'echo', value: 'room' })).value, 'room')
})

test('a queue timeout rejects ERR_POOL_QUEUE_TIMEOUT and the worker never sees the request', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1, queueTimeout: 300 })
  await pool.start()
  const busy = pool.request({ op: 'sleep', ms: 1_500, tag: 'busy' })
  await sleep(100)
  const started = performance.now()
  // Its own option beats the pool's; both time out while the worker is busy.
  const [own, pools] = await Promise.all([
    outcome(pool.request({ op: 'echo', tag: 'own' }, { queueTimeout: 500 })),
    outcome(pool.request({ op: 'echo', tag: 'pools' })),
  ])
  const took = performance.now() - started
  assert.equal(own.error.code, 'ERR_POOL_QUEUE_TIMEOUT')
  assert.equal(pools.error.code, 'ERR_POOL_QUEUE_TIMEOUT')
  assert.ok(took >= 480 && took < 1_400, `rejected after ${took} ms`)
  assert.equal((await busy).pid, pids[0])

  // No queue timeout at all (0): it waits as long as it takes.
  assert.equal((await pool.request({ op: 'echo', value: 'late', tag: 'late' }, { queueTimeout: 0 })).value, 'late')
  assert.deepEqual(receivedTags(events), ['busy', 'late'], 'the timed-out requests never reached the worker')
  assert.equal(pool.stats().rejected.queueTimeout, 2)
  assert.deepEqual(pids, [pids[0]], 'no worker was replaced')
})

test('abort while queued: AbortError with the signal’s reason as cause; no worker touched', { timeout: 30_000 }, async (t) => {
  const { pool, events } = makePool(t, { size: 1 })
  await pool.start()
  const busy = pool.request({ op: 'sleep', ms: 800, tag: 'busy' })
  await sleep(100)

  const controller = new AbortController()
  const queued = outcome(pool.request({ op: 'echo', tag: 'aborted' }, { signal: controller.signal }))
  await sleep(100)
  const reason = new Error('the client went away')
  const started = performance.now()
  controller.abort(reason)
  const { error } = await queued
  assert.ok(performance.now() - started < 300, 'rejected at once')
  assert.equal(error.name, 'AbortError')
  assert.equal(error.code, 'ABORT_ERR')
  assert.equal(error.cause, reason)

  await busy
  await pool.request({ op: 'echo', tag: 'after' })
  assert.deepEqual(receivedTags(events), ['busy', 'after'])
  const s = pool.stats()
  assert.equal(s.rejected.aborted, 1)
  assert.equal(s.failed, 1)
  assert.equal(s.completed, 2)
})

test('a signal aborted before the call: rejected at once, counted like any abort', { timeout: 30_000 }, async (t) => {
  const { pool, events } = makePool(t, { size: 1 })
  await pool.start()
  const already = await outcome(pool.request({ op: 'echo', tag: 'already' }, { signal: AbortSignal.abort('gone') }))
  assert.equal(already.error.name, 'AbortError')
  assert.equal(already.error.code, 'ABORT_ERR')
  assert.equal(already.error.cause, 'gone')
  await pool.request({ op: 'echo', tag: 'after' })
  assert.deepEqual(receivedTags(events), ['after'], 'never reached a worker')
  // DESIGN §6: stats().failed counts every rejected request, as the sum of stats().rejected.
  const s = pool.stats()
  assert.equal(s.rejected.aborted, 1)
  assert.equal(s.failed, 1)
})
