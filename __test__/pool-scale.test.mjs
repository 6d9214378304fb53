// Size between min and max (DESIGN §6): a pool grows while requests wait, never past max, and
// shrinks back to min once the extra workers idled for idleTimeout — gracefully, not as crashes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sleep, waitFor } from './helpers.mjs'
import { makePool, eventsNamed, allGone, watchSize } from './pool-helpers.mjs'

test('grows under load up to max, shrinks to min after idleTimeout', { timeout: 60_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: { min: 1, max: 3 }, idleTimeout: 500 })
  await pool.start()
  assert.equal(pool.size, 1)
  const size = watchSize(pool)

  const answers = await Promise.all(Array.from({ length: 9 }, () => pool.request({ op: 'sleep', ms: 600 })))
  assert.equal(new Set(answers.map((a) => a.pid)).size, 3, 'the load was served by three workers')
  assert.equal(size.max(), 3)
  assert.equal(pids.length, 3, 'never more than max')

  // Idle: the two above min leave after idleTimeout; the first stays.
  const idleSince = performance.now()
  await waitFor(() => pool.size === 1, { timeout: 10_000, what: 'the pool to shrink to 1' })
  const shrunkAfter = performance.now() - idleSince
  size.stop()
  assert.ok(shrunkAfter >= 400, `shrank ${shrunkAfter} ms after going idle, before idleTimeout`)
  assert.ok(size.max() <= 3)
  const exits = eventsNamed(events, 'exit')
  assert.equal(exits.length, 2)
  assert.ok(exits.every((e) => e.code === 0 && e.signal === null), 'stopped gracefully')
  await allGone(exits.map((e) => e.pid))
  assert.deepEqual(eventsNamed(events, 'crashed'), [])
  const [survivor] = pool.stats().workers
  assert.ok(pids.includes(survivor.pid))

  // And grows again when needed.
  await Promise.all(Array.from({ length: 4 }, () => pool.request({ op: 'sleep', ms: 400 })))
  assert.ok(pids.length >= 4, 'grew again under the second load')
})

test('a pool at min never shrinks below it, however long it idles', { timeout: 30_000 }, async (t) => {
  const { pool, events } = makePool(t, { size: { min: 2, max: 4 }, idleTimeout: 200 })
  await pool.start()
  await pool.request({ op: 'echo' })
  await sleep(1_000)
  assert.equal(pool.size, 2)
  assert.deepEqual(eventsNamed(events, 'exit'), [])
})
