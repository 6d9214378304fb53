// Kill escalation: whatever survives killSignal gets SIGKILL after forceKillAfter — the leader
// that ignores SIGTERM, and grandchildren that ignore it after the leader died.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect } from 'tethered'
import { fixture, uniqueMarker, processesWithMarker, killMarked, waitFor, settlesWithin, groupMembers, sleep } from './helpers.mjs'

test('a SIGTERM-ignoring group is SIGKILLed after forceKillAfter', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('ignore-term')
  t.after(() => killMarked(marker))
  const call = spawnCollect('sh', [fixture('ignore-term.sh'), marker], { timeout: 1_500, forceKillAfter: 300 })
  await waitFor(() => processesWithMarker(marker).length === 2, { what: 'leader and grandchild to run' })
  const r = await settlesWithin(call, 20_000)
  assert.equal(r.timedOut, true)
  assert.equal(r.signal, 'SIGKILL', 'SIGTERM was ignored, SIGKILL ended it')
  assert.equal(r.exitCode, null)
  assert.equal(r.stdout, 'started\n')
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'the whole group to be gone' })
  assert.deepEqual(groupMembers(r.pid), [])
})

test('the SIGKILL does not come before forceKillAfter has passed', { timeout: 60_000 }, async (t) => {
  // A generous grace period: the group must still be alive (ignoring SIGTERM) well inside it.
  const marker = uniqueMarker('grace')
  t.after(() => killMarked(marker))
  const call = spawnCollect('sh', [fixture('ignore-term.sh'), marker], { timeout: 200, forceKillAfter: 4_000 })
  await waitFor(() => processesWithMarker(marker).length === 2, { what: 'leader and grandchild to run' })
  await sleep(1_000) // timeout fired at ~200 ms; SIGKILL is due at ~4.2 s
  assert.equal(processesWithMarker(marker).length, 2, 'still alive during the grace period')
  const r = await settlesWithin(call, 20_000)
  assert.equal(r.signal, 'SIGKILL')
  assert.equal(r.timedOut, true)
})

test('a grandchild that ignores SIGTERM is SIGKILLed after the leader died of it', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('stubborn')
  t.after(() => killMarked(marker))
  const call = spawnCollect('sh', [fixture('stubborn-grandchild.sh'), marker], { timeout: 1_000, forceKillAfter: 500 })
  await waitFor(() => processesWithMarker(`${marker}-stubborn`).length === 1, { what: 'the stubborn grandchild to run' })
  const r = await settlesWithin(call, 20_000, 'the call (the grandchild holds the pipes)')
  assert.equal(r.timedOut, true)
  assert.equal(r.signal, 'SIGTERM', 'the leader itself died of SIGTERM')
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 10_000, what: 'the stubborn grandchild to be SIGKILLed' })
  assert.deepEqual(groupMembers(r.pid), [])
})

test('killSignal: SIGKILL ends a TERM-ignoring group at once', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('sigkill-first')
  t.after(() => killMarked(marker))
  const call = spawnCollect('sh', [fixture('ignore-term.sh'), marker], { timeout: 1_000, killSignal: 'SIGKILL', forceKillAfter: 60_000 })
  await waitFor(() => processesWithMarker(marker).length === 2, { what: 'leader and grandchild to run' })
  const r = await settlesWithin(call, 15_000)
  assert.equal(r.signal, 'SIGKILL')
  await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'the group to be gone' })
})
