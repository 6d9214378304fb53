// Supervisor health checks (DESIGN §4): a worker that answers pings is never flagged; one stuck
// in a busy loop is flagged 'unresponsive', SIGKILLed and replaced by a new process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fixture, pidAlive, sleep, withoutUsage } from './helpers.mjs'
import { supervise, recordedEvent, names, allGone } from './supervisor-helpers.mjs'

test('a healthy worker is never flagged over many intervals', { timeout: 30_000 }, async (t) => {
  // The timeout is generous: a fresh Node worker on a loaded 2-core machine may take more than a
  // second to load and answer its first ping, and that is not what this test is about.
  const { sup, events, pids } = supervise(t, 'worker-echo.js', { healthCheckInterval: 200, healthCheckTimeout: 3_000 })
  await sup.start()
  // Fifteen intervals; each ping answered inside its timeout.
  await sleep(3_000)
  assert.deepEqual(names(events), ['spawn'])
  assert.equal(pids.length, 1)
  assert.equal(sup.pid, pids[0])
  assert.equal(sup.state, 'running')
  assert.equal(sup.restartCount, 0)
})

test('a worker stuck in while(true){} is flagged unresponsive, killed and replaced', { timeout: 30_000 }, async (t) => {
  const { sup, events, pids } = supervise(t, 'worker-stuck.js', {
    healthCheckInterval: 200,
    healthCheckTimeout: 400,
    restartDelay: 50,
    stopTimeout: 500,
  })
  await sup.start()
  const first = sup.pid
  // Read from the record: 'unresponsive', 'exit' and 'crashed' may arrive in one batch.
  const flagged = await recordedEvent(events, 'unresponsive', 0, 5_000)
  assert.deepEqual(flagged, { pid: first })
  const crashed = await recordedEvent(events, 'crashed', 0, 5_000)
  assert.deepEqual(withoutUsage(crashed), { code: null, signal: 'SIGKILL', limit: null, restartCount: 0 })
  const { pid: second } = await recordedEvent(events, 'spawn', 1, 5_000)
  assert.notEqual(second, first)
  assert.equal(pidAlive(first), false, 'the stuck worker is gone')
  await allGone([first])
  assert.deepEqual(names(events).slice(0, 5), ['spawn', 'unresponsive', 'exit', 'crashed', 'restarting'])
  // Flagged no sooner than one interval plus the timeout after the spawn.
  const spawnedAt = events[0].at
  const flaggedAt = events.find((e) => e.name === 'unresponsive').at
  assert.ok(flaggedAt - spawnedAt >= 550, `flagged after ${flaggedAt - spawnedAt} ms`)
  assert.deepEqual(pids.slice(0, 2), [first, second])
})

test('a command worker gets no health checks unless asked', { timeout: 30_000 }, async (t) => {
  const { sup, events } = supervise(t, 'worker-stuck.js', {
    modulePath: undefined,
    command: process.execPath,
    args: [fixture('worker-stuck.js')],
    healthCheckTimeout: 100,
    stopTimeout: 200,
  })
  await sup.start()
  await sleep(1_000)
  assert.deepEqual(names(events), ['spawn'])
  assert.equal(sup.state, 'running')
})
