// Recycling (DESIGN §6): after recycleAfter requests (N to 1.1 N) or past maxMemory of RSS, a
// worker is replaced gracefully — the replacement first, then the old one finishes what it holds
// and stops. No request fails, capacity never dips below size.min, one recycles at a time, and
// none of it counts as a crash.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { makePool, eventsNamed, recorded, allGone, watchSize } from './pool-helpers.mjs'

test('recycleAfter: each worker is replaced after at least N requests; nothing fails, capacity never dips', { timeout: 60_000 }, async (t) => {
  const recycleAfter = 10
  const { pool, events } = makePool(t, { size: 2, recycleAfter })
  await pool.start()
  const size = watchSize(pool)
  const recyclingAtOnce = []
  const sampler = setInterval(() => recyclingAtOnce.push(pool.stats().workers.filter((w) => w.state === 'recycling').length), 5)

  const answers = []
  // Waves of four: both workers stay busy, and a queue is there while they recycle.
  for (let wave = 0; wave < 40; wave++) {
    answers.push(...(await Promise.all([0, 1, 2, 3].map(() => pool.request({ op: 'sleep', ms: 10 })))))
  }
  size.stop()
  clearInterval(sampler)

  assert.equal(answers.length, 160, 'every request answered')
  const recycles = eventsNamed(events, 'recycle')
  assert.ok(recycles.length >= 3, `${recycles.length} recycles for 160 requests over 2 workers`)
  assert.ok(recycles.every((r) => r.reason === 'requests'))
  const servedBy = new Map()
  for (const { pid } of answers) servedBy.set(pid, (servedBy.get(pid) ?? 0) + 1)
  // Never early. (It may serve a few more while its replacement starts: capacity comes first.)
  for (const { pid } of recycles) assert.ok(servedBy.get(pid) >= recycleAfter, `pid ${pid} served ${servedBy.get(pid)}, recycled early`)
  assert.ok(size.min() >= 2, `size fell to ${size.min()} during recycling`)
  assert.ok(Math.max(...recyclingAtOnce) <= 1, 'one worker recycles at a time')

  // The last recycled worker may still be finishing its stop when the last answer is in.
  const exits = await recorded(events, 'exit', recycles.length)
  await allGone(recycles.map((r) => r.pid))
  assert.deepEqual(eventsNamed(events, 'crashed'), [])
  assert.ok(exits.every((e) => e.code === 0 && e.signal === null), 'recycled workers leave gracefully')
  // A recycle that came due with the last answers may start after the snapshot above; once the
  // pool is closed every event has been delivered, and the counts must agree.
  await pool.close()
  const s = pool.stats()
  assert.equal(s.failed, 0)
  assert.equal(s.crashes, 0)
  assert.equal(s.recycles, eventsNamed(events, 'recycle').length)
})

test('maxMemory: a worker whose RSS passes it is replaced after it answers; nothing fails', { timeout: 60_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 1, maxMemory: 160 * 1024 * 1024, memoryCheckInterval: 100 })
  await pool.start()
  const [hog] = pids
  const size = watchSize(pool)
  const grown = await pool.request({ op: 'grow', bytes: 200 * 1024 * 1024 })
  assert.equal(grown.pid, hog)
  assert.ok(grown.rss > 200 * 1024 * 1024, `the worker's RSS is ${grown.rss}`)

  // Requests keep flowing while the pool notices and recycles.
  const during = []
  while (eventsNamed(events, 'exit').length === 0) {
    during.push(await pool.request({ op: 'sleep', ms: 20 }))
    if (during.length > 500) assert.fail('no recycle after 500 requests')
  }
  size.stop()
  const [recycle] = await recorded(events, 'recycle')
  assert.deepEqual(recycle, { worker: 0, pid: hog, reason: 'memory' })
  await allGone([hog])
  assert.ok(size.min() >= 1, 'capacity never dropped')
  const spawnedAt = events.filter((e) => e.name === 'spawn').map((e) => e.at)
  const exitedAt = events.find((e) => e.name === 'exit').at
  assert.ok(spawnedAt.length === 2 && spawnedAt[1] < exitedAt, 'the replacement was up before the old worker left')
  const fresh = await pool.request({ op: 'echo', value: 'new' })
  assert.notEqual(fresh.pid, hog)
  assert.deepEqual(eventsNamed(events, 'crashed'), [])
  const exits = eventsNamed(events, 'exit')
  assert.equal(exits.length, 1)
  assert.equal(exits[0].pid, hog)
  assert.equal(exits[0].worker, 0)
  assert.equal(exits[0].code, 0, 'the old worker left gracefully')
  assert.equal(pool.stats().failed, 0)
  assert.equal(pool.stats().recycles, 1)
})
