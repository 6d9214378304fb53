// A grandchild that keeps stdout/stderr open after the leader exited never makes a call hang:
// the call settles after a short bounded drain. (tethered does not kill that grandchild; the
// test cleans it up by pid and group.)
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect, runProcess } from 'tethered'
import { uniqueMarker, processesWithMarker, killMarked, killGroup, settlesWithin, markedSleeper, procStat } from './helpers.mjs'

test('a background grandchild holding stdout does not hang spawnCollect', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('holds-stdout')
  t.after(() => killMarked(marker))
  const r = await settlesWithin(spawnCollect('sh', ['-c', `${markedSleeper(marker)} & echo done`]), 10_000)
  t.after(() => killGroup(r.pid))
  assert.equal(r.exitCode, 0)
  assert.equal(r.stdout, 'done\n')
  assert.equal(r.timedOut, false)
  // The grandchild really was holding the pipe: it is still there, in the leader's group.
  const [grandchild] = processesWithMarker(marker)
  assert.ok(grandchild, 'the grandchild is still running')
  assert.equal(procStat(grandchild).pgrp, r.pid)
  process.kill(grandchild, 'SIGKILL')
})

test('a background grandchild holding stderr only does not hang either', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('holds-stderr')
  t.after(() => killMarked(marker))
  const r = await settlesWithin(spawnCollect('sh', ['-c', `${markedSleeper(marker)} >/dev/null & echo err >&2`]), 10_000)
  t.after(() => killGroup(r.pid))
  assert.equal(r.exitCode, 0)
  assert.equal(r.stderr, 'err\n')
  assert.equal(processesWithMarker(marker).length, 1)
})

test('a grandchild that left the group (setsid) and holds stdout does not hang the call', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('setsid-holder')
  t.after(() => killMarked(marker))
  const r = await settlesWithin(spawnCollect('sh', ['-c', `setsid ${markedSleeper(marker)} & sleep 0.2; echo done`]), 10_000)
  assert.equal(r.stdout, 'done\n')
  assert.equal(r.exitCode, 0)
})

test('runProcess also settles with a grandchild holding the pipes', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('holds-run')
  t.after(() => killMarked(marker))
  const r = await settlesWithin(runProcess('sh', ['-c', `${markedSleeper(marker)} & echo done; exit 4`]), 10_000)
  assert.equal(r.code, 4)
  assert.equal(r.stdout, 'done\n')
  assert.equal(r.ok, false)
  assert.equal(r.error, undefined)
})
