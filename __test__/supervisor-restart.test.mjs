// Supervisor restarts (DESIGN §4): exponential backoff then 'exhausted' with nothing left;
// a sign of life resets the count; 'on-failure' vs 'always' on a clean exit; and the seed
// story — an image worker that crashes on a corrupt input is restarted, the request it was
// working on rejects with ERR_WORKER_EXITED, and the next request succeeds.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { outcome, sleep, processesWithMarker, withoutUsage } from './helpers.mjs'
import { supervise, nextEvent, names, allGone } from './supervisor-helpers.mjs'

test('a crash loop backs off base, 2×base, 4×base, then is exhausted with no process left', { timeout: 30_000 }, async (t) => {
  const base = 200
  const { sup, events, pids } = supervise(t, 'worker-exit.js', { args: ['1'], restartDelay: base, maxRestarts: 3 })
  const exhausted = nextEvent(sup, 'exhausted', 15_000)
  await sup.start()
  assert.deepEqual(await exhausted, {
    message: 'The worker crashed 4 times in a row; maxRestarts (3) reached, not restarting',
    restartCount: 3,
  })
  const restarting = events.filter((e) => e.name === 'restarting')
  assert.deepEqual(restarting.map((e) => e.value), [
    { delay: base, attempt: 1 },
    { delay: 2 * base, attempt: 2 },
    { delay: 4 * base, attempt: 3 },
  ])
  // The delay is really waited: from each crash to the next spawn.
  const spawns = events.filter((e) => e.name === 'spawn')
  assert.equal(spawns.length, 4, 'maxRestarts: 3 is at most 4 spawns')
  restarting.forEach((r, i) => {
    const waited = spawns[i + 1].at - r.at
    const delay = r.value.delay
    assert.ok(waited >= delay * 0.9 && waited < delay * 3 + 500, `attempt ${i + 1}: waited ${waited} ms for ${delay}`)
  })
  const crashed = events.filter((e) => e.name === 'crashed').map((e) => withoutUsage(e.value))
  assert.deepEqual(crashed, [0, 1, 2, 3].map((restartCount) => ({ code: 1, signal: null, limit: null, restartCount })))
  assert.equal(sup.state, 'exhausted')
  assert.equal(sup.pid, null)
  assert.equal(sup.connected, false)
  await allGone(pids)
  // Nothing more happens.
  const count = events.length
  await sleep(1_000)
  assert.equal(events.length, count)
})

test('a message resets the restart count', { timeout: 30_000 }, async (t) => {
  const { sup, events } = supervise(t, 'worker-exit.js', { args: ['1', 'hello'], restartDelay: 50, maxRestarts: 2 })
  await sup.start()
  // Each worker says hello before crashing: every restart is attempt 1, never exhausted.
  while (events.filter((e) => e.name === 'restarting').length < 5) await nextEvent(sup, 'restarting')
  const restarting = events.filter((e) => e.name === 'restarting').map((e) => e.value)
  assert.deepEqual(restarting.slice(0, 5), Array(5).fill({ delay: 50, attempt: 1 }))
  assert.ok(!names(events).includes('exhausted'))
  assert.ok(events.filter((e) => e.name === 'message').length >= 5)
})

test("restart 'on-failure': a clean exit is done, not restarted", { timeout: 30_000 }, async (t) => {
  const { sup, events } = supervise(t, 'worker-exit.js', { args: ['0'], restartDelay: 50 })
  await sup.start()
  assert.deepEqual(withoutUsage(await nextEvent(sup, 'exit')), { code: 0, signal: null, limit: null })
  await sleep(500)
  assert.deepEqual(names(events), ['spawn', 'exit'])
  assert.equal(sup.state, 'stopped')
  assert.equal(sup.pid, null)
})

test("restart 'always': a clean exit is restarted, and is no crash", { timeout: 30_000 }, async (t) => {
  const { sup, events } = supervise(t, 'worker-exit.js', { args: ['0'], restart: 'always', restartDelay: 50, maxRestarts: 1 })
  await sup.start()
  while (events.filter((e) => e.name === 'spawn').length < 3) await nextEvent(sup, 'spawn')
  assert.deepEqual(names(events).slice(0, 7), ['spawn', 'exit', 'restarting', 'spawn', 'exit', 'restarting', 'spawn'])
  // Clean exits never count: attempt 1 each time, even past maxRestarts.
  assert.deepEqual(events.filter((e) => e.name === 'restarting').map((e) => e.value).slice(0, 2), [
    { delay: 50, attempt: 1 },
    { delay: 50, attempt: 1 },
  ])
})

test('image worker: a corrupt input crashes it, its request rejects, it is restarted, the next request succeeds', { timeout: 30_000 }, async (t) => {
  const { sup, events, pids } = supervise(t, 'worker-image.js', { restartDelay: 100, stdio: 'pipe' })
  let stderr = ''
  sup.on('stderr', (chunk) => (stderr += chunk))
  await sup.start()
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]).toString('base64')
  const first = await sup.request({ image: jpeg })
  assert.deepEqual(first, { thumbnail: 'ffd8ffe0', size: 7, pid: pids[0] })

  const corrupt = Buffer.from('not a jpeg').toString('base64')
  const started = performance.now()
  const crashedRequest = await outcome(sup.request({ image: corrupt }))
  assert.equal(crashedRequest.error.code, 'ERR_WORKER_EXITED')
  assert.ok(performance.now() - started < 2_000, 'rejected as the worker died')
  assert.deepEqual(await nextEvent(sup, 'spawn'), { pid: pids[1] })
  assert.notEqual(pids[1], pids[0])

  const next = await sup.request({ image: jpeg })
  assert.equal(next.pid, pids[1])
  assert.match(stderr, /corrupt JPEG/)
  const crash = events.find((e) => e.name === 'crashed')
  assert.deepEqual(withoutUsage(crash.value), { code: 1, signal: null, limit: null, restartCount: 0 })
  assert.equal(processesWithMarker(`worker-image`).length, 1, 'one worker at a time')
})
