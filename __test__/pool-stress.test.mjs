// The Pool's invariant under fire (DESIGN §6): a few hundred requests with random crashes,
// hangs, timeouts, aborts, queue timeouts and worker errors (seeded, so a failure replays), then
// close(). Every request settles exactly once: each promise is counted as it settles, none is
// missing once close() resolved, every answer is the one for its request, and stats() counts
// the same settlements — a request both resolved and rejected inside the pool would show there.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, settlesWithin } from './helpers.mjs'
import { makePool, allGone } from './pool-helpers.mjs'

/** A small seeded generator (mulberry32): the same seed gives the same run. */
function seeded(seed) {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let x = Math.imul(a ^ (a >>> 15), 1 | a)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

/** stats().rejected's counter for each rejection code. */
const COUNTER = {
  ERR_POOL_QUEUE_FULL: 'queueFull',
  ERR_POOL_QUEUE_TIMEOUT: 'queueTimeout',
  ERR_TIMEOUT: 'timeout',
  ABORT_ERR: 'aborted',
  ERR_WORKER_EXITED: 'workerExited',
  ERR_WORKER_REQUEST_FAILED: 'workerError',
  ERR_POOL_EXHAUSTED: 'exhausted',
  ERR_POOL_CLOSED: 'closed',
}

/** One random request: its body and call options. */
function randomRequest(random, index) {
  const roll = random()
  const ms = (lo, hi) => Math.floor(lo + random() * (hi - lo))
  if (roll < 0.5) return { body: { op: 'echo', value: index } }
  if (roll < 0.64) return { body: { op: 'sleep', ms: ms(10, 120) } }
  if (roll < 0.68) {
    const how = random() < 0.5 ? { code: 1 } : { signal: 'SIGKILL' }
    return { body: { op: 'crash', after: ms(0, 50), ...how }, options: { maxAttempts: random() < 0.5 ? 1 : 2 } }
  }
  if (roll < 0.7) return { body: { op: 'hang' }, options: { timeout: ms(100, 300) } }
  if (roll < 0.8) return { body: { op: 'wait' }, abortAfter: ms(0, 150) }
  if (roll < 0.85) return { body: { op: 'wait' }, options: { timeout: ms(100, 300) } }
  if (roll < 0.9) return { body: { op: 'fail', message: `no ${index}` } }
  return { body: { op: 'sleep', ms: ms(20, 80) }, options: { queueTimeout: 50 } }
}

async function hammer(t, { seed, count, closeAt, drain }) {
  const random = seeded(seed)
  const bugs = []
  const onWarning = (warning) => bugs.push(warning)
  process.on('warning', onWarning)
  t.after(() => process.off('warning', onWarning))

  const { pool, pids } = makePool(t, {
    size: 3,
    concurrency: 2,
    maxQueue: 40,
    requestTimeout: 2_000,
    queueTimeout: 3_000,
    healthCheckTimeout: 300,
    maxRestarts: 10_000,
    stdio: 'ignore',
  })
  await pool.start()

  const settlements = new Array(count).fill(0)
  const outcomes = new Array(count)
  const promises = []
  let closing
  for (let i = 0; i < count; i++) {
    if (i === closeAt) closing = pool.close({ drain })
    const { body, options = {}, abortAfter } = randomRequest(random, i)
    if (abortAfter !== undefined) {
      const controller = new AbortController()
      setTimeout(() => controller.abort(), abortAfter)
      options.signal = controller.signal
    }
    promises.push(
      pool.request(body, options).then(
        (value) => {
          settlements[i] += 1
          outcomes[i] = { body, value }
        },
        (error) => {
          settlements[i] += 1
          outcomes[i] = { body, error }
        },
      ),
    )
    if (i % 4 === 3) await sleep(Math.floor(random() * 120))
  }
  await settlesWithin(closing ?? pool.close({ drain }), 30_000, 'close()')
  // Settlements reach their handlers a tick after they happen; none may still be missing.
  await sleep(10)
  const missing = settlements.flatMap((n, i) => (n === 0 ? [i] : []))
  assert.deepEqual(missing, [], `seed ${seed}: requests never settled`)
  assert.ok(settlements.every((n) => n === 1), `seed ${seed}: a request settled twice`)
  await Promise.all(promises)

  const byCode = {}
  let resolved = 0
  for (const [i, { body, value, error }] of outcomes.entries()) {
    if (error === undefined) {
      resolved += 1
      if (body.op === 'echo') assert.equal(value.value, i, `seed ${seed}: request ${i} got another's answer`)
      assert.ok(['echo', 'sleep'].includes(body.op), `seed ${seed}: ${body.op} resolved`)
      continue
    }
    assert.ok(error.code in COUNTER, `seed ${seed}: request ${i} (${body.op}) rejected with ${error.code}: ${error.message}`)
    byCode[COUNTER[error.code]] = (byCode[COUNTER[error.code]] ?? 0) + 1
  }
  const s = pool.stats()
  assert.equal(s.completed, resolved, `seed ${seed}: stats().completed`)
  assert.equal(s.failed, count - resolved, `seed ${seed}: stats().failed`)
  for (const [counter, n] of Object.entries(s.rejected)) assert.equal(n, byCode[counter] ?? 0, `seed ${seed}: stats().rejected.${counter}`)
  assert.equal(s.state, 'closed')
  assert.equal(s.queued, 0)
  assert.equal(s.inFlight, 0)
  assert.deepEqual(bugs, [], 'no warning from tethered')
  await allGone(pids)
  return { s, byCode, workers: pids.length }
}

test('300 random requests, closed with drain after the last: each settles exactly once', { timeout: 120_000 }, async (t) => {
  const { byCode, workers } = await hammer(t, { seed: 20_240_601, count: 300, drain: true })
  // The mix did happen: crashes, timeouts, aborts, worker errors, each seen at least once.
  for (const counter of ['workerExited', 'timeout', 'aborted', 'workerError']) assert.ok(byCode[counter] > 0, `no ${counter} in this run`)
  assert.ok(workers > 3, 'workers were replaced')
})

test('300 random requests, closed without drain midway: each settles exactly once', { timeout: 120_000 }, async (t) => {
  const { byCode } = await hammer(t, { seed: 7, count: 300, closeAt: 200, drain: false })
  assert.ok(byCode.closed >= 100, 'requests after close() were refused')
})
