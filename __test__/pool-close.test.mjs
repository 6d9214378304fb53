// close() (DESIGN §6): with drain, what was queued and in flight finishes before the workers
// stop; without, queued requests reject ERR_POOL_CLOSED and in-flight ones ERR_WORKER_EXITED;
// requests after close() reject ERR_POOL_CLOSED at once; nothing is left running, and a Node
// program that used a pool exits by itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect } from 'tethered'
import { fixture, outcome, sleep, groupMembers } from './helpers.mjs'
import { makePool, eventsNamed, allGone } from './pool-helpers.mjs'

test('close() drains: queued and in-flight requests are served, then every worker stops', { timeout: 30_000 }, async (t) => {
  const { pool, events, pids } = makePool(t, { size: 2 })
  await pool.start()
  const requests = Array.from({ length: 6 }, (_, i) => pool.request({ op: 'sleep', ms: 200, value: i }))
  await sleep(50)
  assert.equal(pool.stats().queued, 4)
  const closed = pool.close()
  assert.equal(pool.state, 'closing')
  const refused = await outcome(pool.request({ op: 'echo' }))
  assert.equal(refused.error.code, 'ERR_POOL_CLOSED', 'no new request while closing')

  const answers = await Promise.all(requests)
  assert.equal(answers.length, 6)
  await closed
  assert.equal(pool.state, 'closed')
  assert.equal(pool.size, 0)
  const exits = eventsNamed(events, 'exit')
  assert.equal(exits.length, 2)
  assert.ok(exits.every((e) => e.code === 0 && e.signal === null), 'stopped by the shutdown message')
  await allGone(pids)
  for (const pid of pids) assert.deepEqual(groupMembers(pid), [])
  const s = pool.stats()
  assert.equal(s.completed, 6)
  assert.equal(s.rejected.closed, 1)
  assert.deepEqual(s.workers, [])
})

test('close({ drain: false }): queued reject ERR_POOL_CLOSED, in flight ERR_WORKER_EXITED, at once', { timeout: 30_000 }, async (t) => {
  const { pool, pids } = makePool(t, { size: 2 })
  await pool.start()
  const inFlight = [outcome(pool.request({ op: 'hang' })), outcome(pool.request({ op: 'sleep', ms: 5_000 }))]
  const queued = [outcome(pool.request({ op: 'echo' })), outcome(pool.request({ op: 'echo' }))]
  await sleep(100)
  const started = performance.now()
  await pool.close({ drain: false })
  const took = performance.now() - started
  // Neither worker gets in the way: both leave on the shutdown message.
  assert.ok(took < 2_000, `close() took ${took} ms`)
  for (const { error } of await Promise.all(queued)) assert.equal(error.code, 'ERR_POOL_CLOSED')
  for (const { error } of await Promise.all(inFlight)) assert.equal(error.code, 'ERR_WORKER_EXITED')
  assert.equal(pool.state, 'closed')
  await allGone(pids)
  assert.equal((await outcome(pool.request({ op: 'echo' }))).error.code, 'ERR_POOL_CLOSED')
})

test('requests after close() reject ERR_POOL_CLOSED at once; close() twice is fine; start() after it rejects', { timeout: 30_000 }, async (t) => {
  const { pool } = makePool(t, { size: 1 })
  await pool.request({ op: 'echo' })
  await Promise.all([pool.close(), pool.close()])
  const started = performance.now()
  const after = await outcome(pool.request({ op: 'echo' }))
  assert.ok(performance.now() - started < 100)
  assert.equal(after.error.code, 'ERR_POOL_CLOSED')
  assert.ok(after.error instanceof Error)
  await pool.close()
  assert.equal((await outcome(pool.start())).error?.code, 'ERR_POOL_CLOSED')
})

test('close() of a pool that never started resolves and starts nothing', { timeout: 30_000 }, async (t) => {
  const { pool, pids } = makePool(t, { size: 2 })
  await pool.close()
  assert.equal(pool.state, 'closed')
  assert.deepEqual(pids, [])
})

for (const mode of ['drain', 'nodrain', 'exhausted', 'idle']) {
  test(`a Node program exits by itself after a pool (${mode})`, { timeout: 60_000 }, async () => {
    const r = await spawnCollect(process.execPath, [fixture('pool-parent.mjs'), mode], { timeout: 20_000 })
    assert.equal(r.timedOut, false, `the program did not exit on its own; stdout ${r.stdout}`)
    assert.equal(r.exitCode, 0, r.stderr)
    assert.equal(r.stderr, '', 'no warning')
    const [summary, done] = r.stdout.trim().split('\n')
    assert.equal(done, 'done')
    const { pids, codes } = JSON.parse(summary)
    const expected = { drain: [200], nodrain: ['ERR_WORKER_EXITED'], exhausted: [], idle: ['ERR_POOL_CLOSED'] }
    assert.deepEqual(codes, expected[mode])
    assert.equal(pids.length, { drain: 2, nodrain: 1, exhausted: 2, idle: 0 }[mode])
    await allGone(pids)
    assert.ok(r.durationMs < 10_000, `took ${r.durationMs} ms`)
  })
}
