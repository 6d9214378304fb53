// A Pool worker that answers with more than maxMessageSize is killed for it: the pool says
// why ('error' ERR_IPC_MESSAGE_TOO_LARGE), counts a crash, and the request is rejected.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { makePool } from './pool-helpers.mjs'

test('an answer over maxMessageSize kills its worker and rejects the request', async (t) => {
  const { pool, events } = makePool(t, { size: 1, maxMessageSize: 1 << 20, maxAttempts: 1 })
  await pool.start()
  await assert.rejects(pool.request({ op: 'echo', value: 'x'.repeat(2 << 20) }), { code: 'ERR_WORKER_EXITED' })
  const names = events.map((event) => event.name)
  assert.ok(names.includes('crashed'), `events: ${names}`)
  const errors = events.filter((event) => event.name === 'error').map((event) => event.value.code)
  assert.deepEqual(errors, ['ERR_IPC_MESSAGE_TOO_LARGE'])
  const crashed = events.find((event) => event.name === 'crashed')
  assert.equal(crashed.value.signal, 'SIGKILL')
  const { value } = await pool.request({ op: 'echo', value: 'small' })
  assert.equal(value, 'small', 'a new worker serves on')
})
