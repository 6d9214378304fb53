// No resource leaks: many calls leave no extra open file descriptors (pipes, pidfds) and no
// zombie children, on the success path and on every early-ending path.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect, runProcess } from 'tethered'
import { countOpenFds, zombieChildren, waitFor, killGroup, uniqueMarker, killMarked, markedSleeper, processesWithMarker } from './helpers.mjs'

const FD_TOLERANCE = 2

/** Waits for the fd count to come back within tolerance; returns the last count seen. */
async function settledFdCount(baseline) {
  let last = countOpenFds()
  try {
    await waitFor(() => (last = countOpenFds()) <= baseline + FD_TOLERANCE, { timeout: 3_000 })
  } catch {}
  return last
}

test('1000 sequential spawnCollect("true") calls leave no extra fds and no zombies', { timeout: 120_000 }, async () => {
  // Warm up: the first calls create the runtime's own long-lived descriptors.
  for (let i = 0; i < 5; i++) await spawnCollect('true')
  const before = countOpenFds()
  for (let i = 0; i < 1000; i++) {
    const r = await spawnCollect('true')
    if (r.exitCode !== 0) assert.fail(`call ${i}: ${JSON.stringify(r)}`)
  }
  const after = await settledFdCount(before)
  assert.ok(after <= before + FD_TOLERANCE, `open fds: ${before} before, ${after} after 1000 calls`)
  assert.deepEqual(zombieChildren(), [], 'no zombie children')
})

test('early endings (timeout, maxBuffer, abort, spawn errors, unread input) leak nothing', { timeout: 120_000 }, async (t) => {
  const pids = []
  t.after(() => pids.forEach(killGroup))
  const rounds = async () => {
    const ac = new AbortController()
    const aborted = spawnCollect('sleep', ['1000'], { signal: ac.signal }).catch((e) => e)
    const results = await Promise.all([
      spawnCollect('sleep', ['1000'], { timeout: 20 }),
      spawnCollect('head', ['-c', '1000000', '/dev/zero'], { maxBuffer: 10 }).catch((e) => e),
      spawnCollect('tethered-no-such-cmd').catch((e) => e),
      spawnCollect('/etc/passwd/x').catch((e) => e),
      spawnCollect('true', [], { cwd: '/nonexistent-tethered' }).catch((e) => e),
      spawnCollect('true', [], { input: 'x'.repeat(1 << 20) }),
      runProcess('sleep', ['1000'], { timeout: 20 }),
      runProcess('tethered-no-such-cmd'),
      spawnCollect('true', [], { signal: AbortSignal.abort() }).catch((e) => e),
      (async () => { await new Promise((r) => setTimeout(r, 10)); ac.abort(); return aborted })(),
    ])
    for (const r of results) if (r && r.pid) pids.push(r.pid)
  }
  for (let i = 0; i < 3; i++) await rounds() // warm-up
  const before = countOpenFds()
  for (let i = 0; i < 30; i++) await rounds()
  const after = await settledFdCount(before)
  assert.ok(after <= before + FD_TOLERANCE, `open fds: ${before} before, ${after} after 300 early-ended calls`)
  await waitFor(() => zombieChildren().length === 0, { timeout: 5_000, what: 'no zombie children' })
})

test('calls whose grandchild holds the pipes do not keep our pipe ends open', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('leak-holder')
  t.after(() => killMarked(marker))
  await spawnCollect('true')
  const before = countOpenFds()
  for (let i = 0; i < 20; i++) {
    const r = await spawnCollect('sh', ['-c', `${markedSleeper(marker)} & echo done`])
    assert.equal(r.stdout, 'done\n')
  }
  assert.equal(processesWithMarker(marker).length, 20, 'the grandchildren still hold the other ends')
  const after = await settledFdCount(before)
  assert.ok(after <= before + FD_TOLERANCE, `open fds: ${before} before, ${after} after`)
  killMarked(marker)
  await waitFor(() => zombieChildren().length === 0, { timeout: 5_000, what: 'no zombie children' })
})
