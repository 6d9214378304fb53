// Pool dispatch (DESIGN §6): requests spread over the workers, no worker ever holds more than
// `concurrency` (measured by the workers themselves), request() before start() starts the pool,
// workers that speak the protocol by hand work, and stats() has its documented shape and counts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { outcome, sleep } from './helpers.mjs'
import { makePool, eventsNamed } from './pool-helpers.mjs'

test('start() resolves with size.min workers up; requests spread over every worker', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 3 })
  assert.equal(pool.state, 'idle')
  assert.equal(pool.size, 0)
  await pool.start()
  assert.equal(pool.state, 'running')
  assert.equal(pool.size, 3)
  const spawns = eventsNamed(events, 'spawn')
  assert.deepEqual(spawns.map((s) => s.worker).sort(), [0, 1, 2], 'one spawn per slot, by index')
  assert.equal(new Set(pids).size, 3)

  // Three at once go to three workers (the fewest in flight wins), never two to one.
  const first = await Promise.all([0, 1, 2].map(() => pool.request({ op: 'sleep', ms: 300 })))
  assert.deepEqual(first.map((a) => a.pid).sort(), [...pids].sort())
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => pool.request({ op: 'sleep', ms: 100 + (i % 3) * 20 })))
  assert.deepEqual([...new Set(answers.map((a) => a.pid))].sort(), [...pids].sort(), 'every worker served')
  assert.ok(answers.every((a) => a.peak === 1), 'concurrency 1: one request per worker at a time')
})

test('no worker ever holds more than `concurrency` requests, and each does take that many', { timeout: 30_000 }, async (t) => {
  const { pool, pids } = makePool(t, { size: 2, concurrency: 3 })
  await pool.start()
  const perWorker = []
  const total = []
  const sampler = setInterval(() => {
    const s = pool.stats()
    perWorker.push(...s.workers.map((w) => w.inFlight))
    total.push(s.inFlight)
  }, 5)
  const answers = await Promise.all(Array.from({ length: 30 }, () => pool.request({ op: 'sleep', ms: 150 })))
  clearInterval(sampler)
  const peaks = answers.map((a) => a.peak)
  assert.equal(Math.max(...peaks), 3, `the workers' own peaks: ${peaks}`)
  assert.ok(Math.max(...perWorker) <= 3, 'stats() never shows more than concurrency in one worker')
  assert.ok(Math.max(...total) <= 6, 'nor more than size × concurrency in all')
  assert.deepEqual([...new Set(answers.map((a) => a.pid))].sort(), [...pids].sort())
})

test('request() before start() starts the pool', { timeout: 30_000 }, async (t) => {
  const { pool, pids } = makePool(t, { size: 1 })
  assert.equal(pool.state, 'idle')
  const answer = await pool.request({ op: 'echo', value: 'first' })
  assert.deepEqual(answer, { pid: pids[0], peak: 1, value: 'first' })
  assert.equal(pool.state, 'running')
  await pool.start()
  assert.equal(pids.length, 1, 'start() on a running pool spawns nothing more')
})

test('a worker that answers envelopes by hand (no onRequest) serves the pool', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 2 }, 'pool-plain.js')
  await pool.start()
  const answers = await Promise.all([1, 2, 3, 4].map((n) => pool.request({ n })))
  assert.deepEqual(answers.map((a) => a.body.n), [1, 2, 3, 4], 'each answer matches its request')
  assert.ok(answers.every((a) => pids.includes(a.pid)))
  assert.deepEqual(eventsNamed(events, 'message'), [], 'answers are consumed, not emitted')
})

test("'message' events carry the message and { worker, pid }", { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1 })
  await pool.request({ op: 'echo', value: 1, tag: 'hello' })
  const message = events.find((e) => e.name === 'message')
  assert.deepEqual(message.value, { received: 'hello', id: message.value.id, pid: pids[0] })
  assert.ok(Number.isSafeInteger(message.value.id) && message.value.id > 0)
  assert.deepEqual(message.info, { worker: 0, pid: pids[0] })
})

test('stats(): its shape, and counts that add up', { timeout: 30_000 }, async (t) => {
  const { pool, pids } = makePool(t, { size: 2, concurrency: 2 })
  const idle = pool.stats()
  assert.equal(idle.state, 'idle')
  assert.deepEqual(idle.workers, [])
  await pool.start()

  const results = await Promise.all([
    ...Array.from({ length: 10 }, (_, i) => outcome(pool.request({ op: 'echo', value: i }))),
    outcome(pool.request({ op: 'fail', message: 'bad input' })),
    outcome(pool.request({ op: 'fail', message: 'coded', code: 'EBADJPEG' })),
  ])
  assert.equal(results.filter((r) => r.ok).length, 10)
  const [plain, coded] = results.slice(10).map((r) => r.error)
  assert.equal(plain.code, 'ERR_WORKER_REQUEST_FAILED')
  assert.equal(plain.message, 'bad input')
  assert.equal(coded.code, 'EBADJPEG')

  const s = pool.stats()
  assert.deepEqual(Object.keys(s).sort(), [
    'completed', 'crashes', 'failed', 'inFlight', 'latencyMs', 'queued', 'recycles', 'rejected', 'restarts', 'state', 'workers',
  ])
  assert.equal(s.state, 'running')
  assert.equal(s.queued, 0)
  assert.equal(s.inFlight, 0)
  assert.equal(s.completed, 10)
  assert.equal(s.failed, 2)
  assert.deepEqual(s.rejected, {
    queueFull: 0, queueTimeout: 0, timeout: 0, aborted: 0, workerExited: 0, workerError: 2, exhausted: 0, closed: 0,
  })
  assert.equal(s.crashes, 0)
  assert.equal(s.restarts, 0)
  assert.equal(s.recycles, 0)
  assert.deepEqual(Object.keys(s.latencyMs).sort(), ['p50', 'p99'])
  assert.ok(s.latencyMs.p50 > 0 && s.latencyMs.p50 <= s.latencyMs.p99 && s.latencyMs.p99 < 5_000, JSON.stringify(s.latencyMs))

  assert.equal(s.workers.length, 2)
  assert.deepEqual(s.workers.map((w) => w.worker), [0, 1])
  assert.deepEqual(s.workers.map((w) => w.pid).sort(), [...pids].sort())
  let served = 0
  for (const w of s.workers) {
    assert.deepEqual(Object.keys(w).sort(), ['crashes', 'inFlight', 'lastExitUsage', 'pid', 'restartCount', 'rss', 'served', 'state', 'uptimeMs', 'worker'])
    assert.equal(w.state, 'ready')
    assert.equal(w.inFlight, 0)
    assert.equal(w.crashes, 0)
    assert.equal(w.restartCount, 0)
    assert.ok(Number.isInteger(w.served) && w.served >= 0)
    assert.ok(w.uptimeMs > 0 && w.uptimeMs < 60_000, `uptimeMs ${w.uptimeMs}`)
    // The RSS of a Node worker, once sampled: between 5 MB and 1 GB (0 or null before the first sample).
    assert.ok(w.rss === null || w.rss === 0 || (w.rss > 5e6 && w.rss < 1e9), `rss ${w.rss}`)
    served += w.served
  }
  assert.equal(served, 12, 'answers with an error were served too')

  // Busy while holding a request, with the pool's inFlight counting it.
  const slow = pool.request({ op: 'sleep', ms: 500 })
  await sleep(100)
  const busy = pool.stats()
  assert.equal(busy.inFlight, 1)
  assert.deepEqual(busy.workers.map((w) => w.state).sort(), ['busy', 'ready'])
  await slow
})
