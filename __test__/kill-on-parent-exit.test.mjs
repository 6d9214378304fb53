// killOnParentExit (DESIGN §2): with the default, no descendant outlives the Node process —
// not on normal exit, not on an uncaught exception, not on a signal, not on SIGKILL — and
// tethered's handlers do not change how Node itself dies of a signal.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { spawnCollect } from 'tethered'
import { fixture, uniqueMarker, processesWithMarker, killMarked, waitFor, settlesWithin, sleep } from './helpers.mjs'

/** Runs the fixture parent; resolves once its child runs, with the parent's exit promise. */
async function startParent(marker, mode, keep = true) {
  const parent = spawn(process.execPath, [fixture('parent-with-child.mjs'), marker, mode, String(keep)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const exited = new Promise((resolve) => parent.on('exit', (code, signal) => resolve({ code, signal })))
  let out = ''
  parent.stdout.on('data', (d) => (out += d))
  await waitFor(() => out.includes('ready'), { timeout: 15_000, what: 'the parent to report its child running' })
  return { parent, exited }
}

for (const [mode, how] of [['wait', 'SIGKILL of the parent'], ['exit', 'process.exit()'], ['throw', 'an uncaught exception'], ['signal:SIGTERM', 'SIGTERM to the parent']]) {
  test(`the child dies with its Node parent: ${how}`, { timeout: 60_000 }, async (t) => {
    const marker = uniqueMarker(`parent-${mode.replace(':', '-')}`)
    t.after(() => killMarked(marker))
    const { parent, exited } = await startParent(marker, mode)
    t.after(() => parent.kill('SIGKILL'))
    // "ready" means the fixture saw its child running; it may already be dying by now.
    if (mode === 'wait') parent.kill('SIGKILL')
    await settlesWithin(exited, 10_000, 'the parent exit')
    await waitFor(() => processesWithMarker(`${marker}-child`).length === 0, { timeout: 5_000, what: 'the orphaned child to die' })
  })
}

test('killOnParentExit: false lets the child outlive its parent', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('parent-keep')
  t.after(() => killMarked(marker))
  const { parent, exited } = await startParent(marker, 'wait', false)
  parent.kill('SIGKILL')
  await settlesWithin(exited, 10_000, 'the parent exit')
  await sleep(1_000)
  assert.equal(processesWithMarker(`${marker}-child`).length, 1, 'the child is still running')
})

test('SIGINT still ends a Node process that uses tethered (by that signal)', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('parent-sigint')
  t.after(() => killMarked(marker))
  const r = await settlesWithin(
    spawnCollect(process.execPath, [fixture('parent-with-child.mjs'), marker, 'signal:SIGINT'], { timeout: 30_000 }),
    40_000,
  )
  assert.equal(r.stdout, 'ready\n')
  assert.equal(r.signal, 'SIGINT', `exitCode ${r.exitCode}, stderr ${r.stderr}`)
})
