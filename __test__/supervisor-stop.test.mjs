// Supervisor stop() and endings (DESIGN §4): stop() is bounded by stopTimeout and leaves no
// process of the group; a request in flight when its worker dies rejects at once; and after
// stop() or 'exhausted' nothing keeps the Node process alive.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect } from 'tethered'
import { fixture, groupMembers, outcome, settlesWithin, pidAlive, withoutUsage } from './helpers.mjs'
import { supervise, nextEvent, nextMessage, names, allGone } from './supervisor-helpers.mjs'

test('stop() of a worker that ignores shutdown and SIGTERM is bounded by stopTimeout; the group is gone', { timeout: 30_000 }, async (t) => {
  const stopTimeout = 1_000
  const { sup, events } = supervise(t, 'worker-stubborn.js', { stopTimeout })
  const ready = nextMessage(sup, (m) => m.ready)
  await sup.start()
  const { ready: pid, grandchild } = await ready
  assert.deepEqual(groupMembers(pid).sort(), [pid, grandchild].sort())

  const started = performance.now()
  await settlesWithin(sup.stop(), 3 * stopTimeout + 1_000, 'stop()')
  const took = performance.now() - started
  assert.ok(took >= stopTimeout * 0.9 && took < stopTimeout + 1_000, `stop() took ${took} ms`)
  assert.equal(sup.state, 'stopped')
  assert.equal(sup.pid, null)
  assert.deepEqual(names(events), ['spawn', 'exit'])
  assert.deepEqual(withoutUsage(events.at(-1).value), { code: null, signal: 'SIGKILL', limit: null })
  assert.equal(pidAlive(pid), false)
  await allGone([pid, grandchild])
  assert.deepEqual(groupMembers(pid), [])
})

test('stop() of a worker using tethered/worker: its onShutdown hook runs, it exits 0, no restart', { timeout: 30_000 }, async (t) => {
  const { sup, events, pids } = supervise(t, 'worker-echo.js', { stopTimeout: 10_000, restartDelay: 10 })
  await sup.start()
  const started = performance.now()
  await Promise.all([sup.stop(), sup.stop()])
  assert.ok(performance.now() - started < 2_000, 'the worker left when asked')
  assert.deepEqual(names(events), ['spawn', 'exit'])
  const said = events.filter((e) => e.name === 'message').map((e) => Object.keys(e.value)[0])
  assert.deepEqual(said, ['ready', 'shuttingDown'], 'the hook ran before the exit')
  assert.deepEqual(withoutUsage(events.at(-1).value), { code: 0, signal: null, limit: null })
  assert.equal(sup.state, 'stopped')
  await allGone(pids)
  // stop() again, and start() again afterwards, both work.
  await sup.stop()
  await sup.start()
  assert.equal(sup.state, 'running')
  assert.notEqual(sup.pid, pids[0])
})

test('a command worker without an IPC reader is stopped by killSignal', { timeout: 30_000 }, async (t) => {
  const { sup, events, pids } = supervise(t, 'worker-echo.js', { modulePath: undefined, command: 'sleep', args: ['1000'], stopTimeout: 600 })
  await sup.start()
  assert.equal(sup.connected, true, 'the channel is there even if the program ignores it')
  const started = performance.now()
  await sup.stop()
  const took = performance.now() - started
  // shutdown goes unread; SIGTERM at stopTimeout/2 ends sleep.
  assert.ok(took >= 250 && took < 1_500, `stop() took ${took} ms`)
  assert.deepEqual(withoutUsage(events.at(-1).value), { code: null, signal: 'SIGTERM', limit: null })
  await allGone(pids)
})

test('a request in flight when the worker is SIGKILLed rejects at once with ERR_WORKER_EXITED', { timeout: 30_000 }, async (t) => {
  const { sup, pids } = supervise(t, 'worker-echo.js', { restartDelay: 100 })
  await sup.start()
  const pending = outcome(sup.request({ op: 'sleep', ms: 20_000 }))
  const untimed = outcome(sup.request({ op: 'sleep', ms: 20_000 }, { timeout: 60_000 }))
  await sup.request({ op: 'echo', value: 'the requests are in' })
  const killedAt = performance.now()
  process.kill(pids[0], 'SIGKILL')
  const [first, second] = await Promise.all([pending, untimed])
  const after = performance.now() - killedAt
  for (const r of [first, second]) {
    assert.equal(r.error.code, 'ERR_WORKER_EXITED')
    assert.match(r.error.message, new RegExp(`pid ${pids[0]}`))
  }
  assert.ok(after < 1_000, `rejected ${after} ms after the kill`)
  assert.deepEqual(await nextEvent(sup, 'spawn'), { pid: pids[1] })
  assert.equal(await sup.request({ op: 'echo', value: 'again' }), 'again')
})

for (const mode of ['stop', 'exhausted', 'idle']) {
  test(`the Node process exits by itself after ${mode === 'idle' ? 'an unused supervisor' : mode}`, { timeout: 60_000 }, async () => {
    const r = await spawnCollect(process.execPath, [fixture('supervisor-parent.mjs'), mode], { timeout: 20_000 })
    assert.equal(r.timedOut, false, `the parent did not exit on its own; stdout ${r.stdout}`)
    assert.equal(r.exitCode, 0, r.stderr)
    assert.equal(r.stderr, '', 'no warning')
    const [summary, done] = r.stdout.trim().split('\n')
    assert.equal(done, 'done')
    const { pids } = JSON.parse(summary)
    if (mode === 'idle') assert.deepEqual(pids, ['ERR_IPC_CHANNEL_CLOSED'])
    else await allGone(pids)
    assert.ok(r.durationMs < 10_000, `took ${r.durationMs} ms`)
  })
}
