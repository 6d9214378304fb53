// Pool with serialization: 'advanced' (DESIGN §6, §7): bodies, results and messages carry
// Buffers, typed arrays, Map, Set, Date and BigInt unchanged — through the tethered/worker
// helper and through a worker that speaks the envelopes by hand — and cancels, crashes and
// re-dispatch work as in json mode.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Pool } from 'tethered'
import { fixture, outcome } from './helpers.mjs'
import { makePool, nextMessage, recorded } from './pool-helpers.mjs'

function rich() {
  return {
    buffer: Buffer.from('\u00ff\u0000binary'),
    map: new Map([[1, new Set(['x'])]]),
    set: new Set([1n, 'two']),
    date: new Date(0),
    bigint: -(2n ** 64n),
    floats: new Float64Array([1.5, Number.POSITIVE_INFINITY]),
    words: new Uint16Array([7]),
  }
}

test('requests and results carry rich values through the helper', { timeout: 30_000 }, async (t) => {
  const { pool } = makePool(t, { size: 2, serialization: 'advanced' })
  await pool.start()
  const value = rich()
  const answers = await Promise.all(Array.from({ length: 20 }, () => pool.request({ op: 'echo', value })))
  for (const answer of answers) assert.deepEqual(answer.value, value)
  assert.ok(Buffer.isBuffer(answers[0].value.buffer))
  const failed = await outcome(pool.request({ op: 'fail', message: 'bad jpeg', code: 'EJPEG' }))
  assert.equal(failed.error?.code, 'EJPEG')
  assert.equal(failed.error?.message, 'bad jpeg')
  assert.equal(pool.stats().completed, 20)
})

test('a hand-written worker sees the real types, and its messages keep theirs', { timeout: 30_000 }, async (t) => {
  // The health-check timeout leaves a loaded machine's fresh Node worker time to boot: at 500 ms
  // it could be killed, again and again, before its first line ran.
  const { pool } = makePool(t, { size: 1, serialization: 'advanced', healthCheckInterval: 100, healthCheckTimeout: 3_000 }, 'worker-plain-advanced.js')
  const ready = nextMessage(pool, (m) => m.ready)
  await pool.start()
  await ready
  const value = rich()
  const answer = await pool.request(value)
  assert.deepEqual(answer.got, value)
  assert.deepEqual(answer.seen, { buffer: true, map: true, set: true, date: true, bigint: true, floats: true, words: true })
  // Pings are answered by hand here; a worker that answers them stays.
  await new Promise((resolve) => setTimeout(resolve, 400))
  assert.equal(pool.stats().crashes, 0)
})

test('a cancel reaches the worker in advanced mode', { timeout: 30_000 }, async (t) => {
  const { pool } = makePool(t, { size: 1, serialization: 'advanced' })
  await pool.start()
  const controller = new AbortController()
  const started = nextMessage(pool, (m) => m.received === 'w')
  const waiting = outcome(pool.request({ op: 'wait', tag: 'w' }, { signal: controller.signal }))
  await started
  const aborted = nextMessage(pool, (m) => m.aborted === 'w')
  controller.abort()
  assert.equal((await waiting).error?.code, 'ABORT_ERR')
  assert.deepEqual((await aborted).reason, { name: 'AbortError', code: 'ABORT_ERR' })
  // The slot is free again once the worker answered the cancel.
  assert.deepEqual((await pool.request({ op: 'echo', value: 5n })).value, 5n)
})

test('a request re-dispatched after a crash is written again, id and body intact', { timeout: 30_000 }, async (t) => {
  const { pool, events } = makePool(t, { size: 1, serialization: 'advanced', maxAttempts: 2 })
  await pool.start()
  const once = `/tmp/tethered-pool-advanced-${process.pid}-${Date.now()}`
  const answer = await pool.request({ op: 'crash', once, value: Buffer.from('kept') })
  assert.deepEqual(answer.survived, true)
  await recorded(events, 'crashed')
})

test('a 5 MB Buffer body and result cross intact', { timeout: 30_000 }, async (t) => {
  const { pool } = makePool(t, { size: 1, serialization: 'advanced' })
  const big = Buffer.alloc(5 * 1024 * 1024, 7)
  big[big.length - 1] = 1
  const answer = await pool.request({ op: 'echo', value: big })
  assert.ok(answer.value.equals(big))
})

test('an invalid serialization is a typed error', () => {
  const modulePath = fixture('pool-worker.js')
  assert.throws(() => new Pool({ modulePath, serialization: 'binary' }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /options\.serialization.*'json' or 'advanced'/,
  })
  assert.throws(() => new Pool({ modulePath, serialization: null }), { code: 'ERR_INVALID_ARG_TYPE' })
})
