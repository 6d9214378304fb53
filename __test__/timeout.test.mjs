// timeout: the call resolves with timedOut: true and the signal that ended it, and the whole
// process group — grandchildren and deeper — is gone.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect } from 'tethered'
import { fixture, uniqueMarker, processesWithMarker, killMarked, killGroup, waitFor, settlesWithin, pidAlive, groupMembers } from './helpers.mjs'

/** Starts `call`, records how many marked processes were ever seen while it ran. */
async function watchMarked(call, marker) {
  let seen = 0
  let done = false
  const watching = (async () => {
    while (!done) {
      seen = Math.max(seen, processesWithMarker(marker).length)
      await new Promise((r) => setTimeout(r, 20))
    }
  })()
  try {
    return { result: await call, seen: () => seen }
  } finally {
    done = true
    await watching
  }
}

test('timeout kills the whole group: leader, grandchildren and great-grandchild', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('timeout-tree')
  t.after(() => killMarked(marker))
  // Marked: tree.sh, 2 grandchild sleepers, the intermediate `sh -c` and its sleeper (great-grandchild).
  const { result: r, seen } = await watchMarked(
    settlesWithin(spawnCollect('sh', [fixture('tree.sh'), marker, '2'], { timeout: 2500 }), 20_000),
    marker,
  )
  assert.equal(seen(), 5, 'all five marked processes were running before the timeout')
  assert.equal(r.timedOut, true)
  assert.equal(r.signal, 'SIGTERM')
  assert.equal(r.exitCode, null)
  assert.equal(r.stdout, 'started\n', 'output before the timeout is kept')
  assert.equal(pidAlive(r.pid), false, 'leader reaped')
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'every marked process to be gone' })
  assert.deepEqual(groupMembers(r.pid), [])
})

test('killSignal by name is the signal sent (and reported) on timeout', { timeout: 30_000 }, async (t) => {
  const r = await settlesWithin(spawnCollect('sleep', ['1000'], { timeout: 200, killSignal: 'SIGINT' }), 15_000)
  t.after(() => killGroup(r.pid))
  assert.equal(r.timedOut, true)
  assert.equal(r.signal, 'SIGINT')
  assert.equal(r.exitCode, null)
})

test('killSignal by number is accepted and reported by name', { timeout: 30_000 }, async (t) => {
  const r = await settlesWithin(spawnCollect('sleep', ['1000'], { timeout: 200, killSignal: 9 }), 15_000)
  t.after(() => killGroup(r.pid))
  assert.equal(r.timedOut, true)
  assert.equal(r.signal, 'SIGKILL')
})

test('a process that finishes before its timeout is not marked timedOut', async () => {
  const r = await spawnCollect('sh', ['-c', 'echo quick'], { timeout: 10_000 })
  assert.equal(r.timedOut, false)
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'quick\n')
})

test('timeout: 0 means no timeout', { timeout: 30_000 }, async () => {
  const r = await settlesWithin(spawnCollect('sleep', ['0.3'], { timeout: 0 }), 15_000)
  assert.equal(r.timedOut, false)
  assert.equal(r.exitCode, 0)
  assert.equal(r.signal, null)
})

test('a timed-out child that exits on its own from the signal still counts as timed out', { timeout: 30_000 }, async (t) => {
  // The shell turns SIGTERM into exit code 7: the process ended, but because it was timed out.
  const r = await settlesWithin(
    spawnCollect('sh', ['-c', 'trap "exit 7" TERM; echo up; while :; do sleep 0.05; done'], { timeout: 300 }),
    15_000,
  )
  t.after(() => killGroup(r.pid))
  assert.equal(r.timedOut, true)
  assert.equal(r.stdout, 'up\n')
})
