// The worker helper's cancellation (tethered/worker): a handler gets `{ signal }` beside the
// body; { tethered: 'cancel', id } aborts that request's signal and the request is answered
// once, with ABORT_ERR, when its handler settles. Driven by a Supervisor over a real IPC
// channel, sending the cancel envelope by hand as a Pool does.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { outcome, sleep } from './helpers.mjs'
import { supervise, nextMessage } from './supervisor-helpers.mjs'

/** Sends a tagged request; resolves the envelope id once the worker has it. */
async function requestSeen(sup, body) {
  const received = nextMessage(sup, (m) => m.received === body.tag)
  const answer = outcome(sup.request(body, { timeout: 20_000 }))
  const { id } = await received
  return { id, answer }
}

test('a cancel aborts the handler’s signal; the request is answered ABORT_ERR and the worker keeps serving', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'pool-worker.js')
  await sup.start()
  const { id, answer } = await requestSeen(sup, { op: 'wait', tag: 'a' })
  const other = await requestSeen(sup, { op: 'wait', ms: 300, tag: 'b' })

  const aborted = nextMessage(sup, (m) => m.aborted !== undefined)
  const started = performance.now()
  await sup.send({ tethered: 'cancel', id })
  assert.deepEqual(await aborted, { aborted: 'a', pid: sup.pid, reason: { name: 'AbortError', code: 'ABORT_ERR' } })
  const { error } = await answer
  assert.ok(performance.now() - started < 5_000)
  assert.equal(error.code, 'ABORT_ERR')
  assert.match(error.message, new RegExp(`request ${id} was cancelled`))

  // The other request in flight was not touched; the same worker answers the next one.
  assert.deepEqual((await other.answer).value, { pid: sup.pid, peak: 2, waited: 300 })
  assert.deepEqual(await sup.request({ op: 'echo', value: 'after' }), { pid: sup.pid, peak: 2, value: 'after' })
})

test('a handler that ignores the signal is answered ABORT_ERR when it finishes, not before', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'pool-worker.js')
  await sup.start()
  const started = performance.now()
  const { id, answer } = await requestSeen(sup, { op: 'sleep', ms: 1_500, tag: 's' })
  await sup.send({ tethered: 'cancel', id })
  const { error } = await answer
  const took = performance.now() - started
  assert.equal(error.code, 'ABORT_ERR', 'its result is replaced by the cancel')
  assert.ok(took >= 1_400, `answered after ${took} ms, before the handler finished`)
})

test('a cancel for an id that is not running is ignored; the handler sees an unaborted signal', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'pool-worker.js')
  await sup.start()
  const done = await requestSeen(sup, { op: 'echo', value: 1, tag: 'done' })
  assert.equal((await done.answer).value.value, 1)
  // Already answered, never used, and not an id at all: none of them disturbs a running request.
  const running = await requestSeen(sup, { op: 'wait', ms: 400, tag: 'r' })
  for (const id of [done.id, 987_654, -1, 'x']) await sup.send({ tethered: 'cancel', id })
  assert.deepEqual((await running.answer).value, { pid: sup.pid, peak: 1, waited: 400 })
})

test('a handler that takes only the body works as before', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js')
  await sup.start()
  // worker-echo.js's handler takes only the body.
  assert.equal(await sup.request({ op: 'echo', value: 'plain' }), 'plain')
  const failed = await outcome(sup.request({ op: 'fail', message: 'no', code: 'EBAD' }))
  assert.equal(failed.error.code, 'EBAD')
})

test('without onRequest the helper leaves request and cancel envelopes to the worker’s own listener', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'pool-plain.js')
  await sup.start()
  assert.deepEqual(await sup.request({ n: 1 }), { pid: sup.pid, body: { n: 1 } })
  const seen = nextMessage(sup, (m) => m.sawCancel !== undefined)
  await sup.send({ tethered: 'cancel', id: 41 })
  assert.deepEqual(await seen, { sawCancel: 41 })
  await sleep(100)
  assert.equal(sup.state, 'running')
})
