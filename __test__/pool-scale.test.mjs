// Size between min and max (DESIGN §6): a pool grows while requests wait, never past max, and
// shrinks back to min once the extra workers idled for idleTimeout — gracefully, not as crashes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { sleep } from './helpers.mjs'
import { makePool, eventsNamed, recorded, allGone, watchSize } from './pool-helpers.mjs'

test('grows under load up to max, shrinks to min after idleTimeout', { timeout: 60_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: { min: 1, max: 3 }, idleTimeout: 500 })
  await pool.start()
  assert.equal(pool.size, 1)
  const size = watchSize(pool)

  const lastAnswerAt = new Map()
  const answers = await Promise.all(
    Array.from({ length: 9 }, async () => {
      const answer = await pool.request({ op: 'sleep', ms: 600 })
      lastAnswerAt.set(answer.pid, performance.now())
      return answer
    }),
  )
  assert.equal(new Set(answers.map((a) => a.pid)).size, 3, 'the load was served by three workers')
  assert.equal(size.max(), 3)
  assert.equal(pids.length, 3, 'never more than max')

  // Idle: the two above min leave, each once it idled for idleTimeout, gracefully.
  await recorded(events, 'exit', 2)
  size.stop()
  assert.ok(size.max() <= 3)
  for (const exit of events.filter((e) => e.name === 'exit')) {
    const idled = exit.at - lastAnswerAt.get(exit.value.pid)
    assert.ok(idled >= 400, `worker ${exit.value.pid} left ${idled} ms after its last answer, before idleTimeout`)
    assert.equal(exit.value.code, 0, 'stopped gracefully')
    assert.equal(exit.value.signal, null)
  }
  await allGone(eventsNamed(events, 'exit').map((e) => e.pid))
  assert.deepEqual(eventsNamed(events, 'crashed'), [])
  await sleep(700)
  assert.equal(pool.size, 1, 'min stays')
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
