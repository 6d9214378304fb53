// Requests in flight that time out or are aborted (DESIGN §6): rejected at once; the worker is
// sent a cancel and keeps its slot until it answers; one that answers is kept, one that does
// not within healthCheckTimeout is killed and replaced ('recycle' reason 'timeout', then
// 'crashed'); while a cancel is unanswered the worker gets no new request; and a worker that
// hangs on every request ends 'exhausted'; one deaf to health checks is killed as unresponsive.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { outcome, sleep } from './helpers.mjs'
import { makePool, nextEvent, nextMessage, eventsNamed, recorded, allGone } from './pool-helpers.mjs'

test('a timed-out request whose worker answers the cancel: ERR_TIMEOUT at once, the worker is kept', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1, healthCheckTimeout: 1_000 })
  // A worker still booting could not answer in time; this one has answered once already.
  await pool.request({ op: 'echo' })
  const aborted = nextMessage(pool, (m) => m.aborted === 'slow')
  const started = performance.now()
  const { error } = await outcome(pool.request({ op: 'wait', tag: 'slow' }, { timeout: 300 }))
  const took = performance.now() - started
  assert.equal(error.code, 'ERR_TIMEOUT')
  assert.ok(took >= 290 && took < 1_200, `rejected after ${took} ms`)
  assert.deepEqual(await aborted, { aborted: 'slow', pid: pids[0], reason: { name: 'AbortError', code: 'ABORT_ERR' } })

  await sleep(1_200) // past healthCheckTimeout: nothing is killed
  assert.equal((await pool.request({ op: 'echo', value: 'next' })).pid, pids[0], 'the same worker serves on')
  assert.deepEqual(pids, [pids[0]])
  assert.deepEqual(eventsNamed(events, 'recycle'), [])
  assert.deepEqual(eventsNamed(events, 'crashed'), [])
  assert.equal(pool.stats().rejected.timeout, 1)
})

test('a timed-out request whose worker ignores the cancel: the worker is killed and replaced', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1, requestTimeout: 300 })
  await pool.start()
  const [hung] = pids
  const started = performance.now()
  const { error } = await outcome(pool.request({ op: 'hang' }))
  assert.equal(error.code, 'ERR_TIMEOUT')
  assert.ok(performance.now() - started < 1_200, 'rejected at the timeout, not at the kill')

  const [recycle] = await recorded(events, 'recycle')
  assert.deepEqual(recycle, { worker: 0, pid: hung, reason: 'timeout' })
  const replacement = (await recorded(events, 'spawn', 2))[1]
  assert.equal(replacement.worker, 0, 'the replacement keeps the slot')
  assert.notEqual(replacement.pid, hung)
  await allGone([hung])
  const killedAfter = events.find((e) => e.name === 'recycle').at - started
  assert.ok(killedAfter >= 300 + 450, `killed ${killedAfter} ms after the request, before healthCheckTimeout ran out`)

  const order = events.filter((e) => ['recycle', 'crashed', 'spawn'].includes(e.name)).map((e) => e.name)
  assert.deepEqual(order, ['spawn', 'recycle', 'crashed', 'spawn'])
  const crashed = eventsNamed(events, 'crashed')[0]
  assert.equal(crashed.worker, 0)
  assert.equal(crashed.pid, hung)
  assert.equal(crashed.signal, 'SIGKILL')
  // A worker booting counts against requestTimeout, so this one gets more.
  assert.equal((await pool.request({ op: 'echo', value: 1 }, { timeout: 10_000 })).pid, replacement.pid)
  const s = pool.stats()
  assert.equal(s.crashes, 1)
  assert.equal(s.rejected.timeout, 1)
})

test('abort in flight: AbortError at once, cause = signal.reason; the worker stops and serves on', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1 })
  await pool.start()
  const controller = new AbortController()
  const received = nextMessage(pool, (m) => m.received === 'w')
  const aborted = nextMessage(pool, (m) => m.aborted === 'w')
  const request = outcome(pool.request({ op: 'wait', tag: 'w' }, { signal: controller.signal }))
  await received
  const reason = { why: 'client closed the connection' }
  const started = performance.now()
  controller.abort(reason)
  const { error } = await request
  assert.ok(performance.now() - started < 300, 'rejected at once')
  assert.ok(error instanceof Error)
  assert.equal(error.name, 'AbortError')
  assert.equal(error.code, 'ABORT_ERR')
  assert.equal(error.cause, reason)
  await aborted
  assert.equal((await pool.request({ op: 'echo', value: 2 })).pid, pids[0])
  // Aborting after the answer changes nothing.
  const late = new AbortController()
  assert.equal((await pool.request({ op: 'echo', value: 3 }, { signal: late.signal })).value, 3)
  late.abort()
  await sleep(50)
  assert.deepEqual(eventsNamed(events, 'crashed'), [])
  assert.equal(pool.stats().rejected.aborted, 1)
  assert.equal(pool.stats().completed, 2)
})

test('from a cancel until its answer the worker gets no new request', { timeout: 30_000 }, async (t) => {
  // The worker holds up to 2, but once a cancel is out it takes nothing until it answered it.
  const { pool, events } = makePool(t, { size: 1, concurrency: 2, healthCheckTimeout: 5_000 })
  await pool.start()
  const started = performance.now()
  const cancelled = outcome(pool.request({ op: 'sleep', ms: 1_200, tag: 'ignores' }, { timeout: 200 }))
  assert.equal((await cancelled).error.code, 'ERR_TIMEOUT')
  const next = pool.request({ op: 'echo', value: 'waited', tag: 'next' })
  assert.equal((await next).value, 'waited')
  const nextReceived = events.find((e) => e.name === 'message' && e.value.received === 'next').at - started
  assert.ok(nextReceived >= 1_150, `the next request reached the worker ${nextReceived} ms in, before the cancel was answered`)
  assert.deepEqual(eventsNamed(events, 'recycle'), [], 'answered within healthCheckTimeout: kept')
})

test('a worker that hangs on every request ends exhausted: the kills count as crashes', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1, requestTimeout: 150, maxRestarts: 1 })
  await pool.start()
  const exhausted = nextEvent(pool, 'exhausted', 20_000)
  for (let i = 1; i <= 2; i++) {
    assert.equal((await outcome(pool.request({ op: 'hang' }))).error.code, 'ERR_TIMEOUT')
    await recorded(events, 'crashed', i)
  }
  const { crashes } = await exhausted
  assert.equal(crashes, 2)
  assert.equal(pool.state, 'exhausted')
  assert.equal(eventsNamed(events, 'recycle').filter((r) => r.reason === 'timeout').length, 2)
  await allGone(pids)
})

test('a worker that stops answering health checks is unresponsive: killed, counted as a crash, replaced', { timeout: 30_000 }, async (t) => {
  // worker-stuck.js spins without ever reading its channel.
  const { pool, events, pids } = makePool(t, { size: 1, healthCheckInterval: 200, healthCheckTimeout: 300 }, 'worker-stuck.js')
  await pool.start()
  const [stuck] = pids
  const [unresponsive] = await recorded(events, 'unresponsive')
  assert.deepEqual(unresponsive, { worker: 0, pid: stuck })
  const [crashed] = await recorded(events, 'crashed')
  assert.equal(crashed.pid, stuck)
  assert.equal(crashed.signal, 'SIGKILL')
  await recorded(events, 'spawn', 2)
  const order = events.filter((e) => ['unresponsive', 'crashed', 'spawn'].includes(e.name)).map((e) => e.name)
  assert.deepEqual(order.slice(0, 4), ['spawn', 'unresponsive', 'crashed', 'spawn'])
  await allGone([stuck])
  assert.ok(pool.stats().crashes >= 1)
})
