// Supervisor with serialization: 'advanced' (DESIGN §7): Node's v8 framing on a real channel,
// so Buffers, typed arrays, Map, Set, Date and BigInt cross unchanged both ways — to a worker
// that uses only process.send / process.on('message'), and through the tethered/worker helper.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Supervisor } from 'tethered'
import { fixture, outcome } from './helpers.mjs'
import { supervise, nextMessage, nextEvent } from './supervisor-helpers.mjs'

/** One of everything JSON cannot carry. */
function rich() {
  return {
    buffer: Buffer.from([0, 1, 2, 254, 255]),
    map: new Map([['a', 1], [2, { nested: new Set(['x']) }]]),
    set: new Set([1, 'two', 3n]),
    date: new Date('2024-02-29T12:34:56.789Z'),
    bigint: 2n ** 70n,
    floats: new Float64Array([0.5, -1e300, Number.NaN]),
    words: new Uint16Array([1, 65_535]),
    undef: undefined,
  }
}

const allSeen = { buffer: true, map: true, set: true, date: true, bigint: true, floats: true, words: true }

test('a plain process.send worker gets and sends Buffer, Map, Set, Date, BigInt and typed arrays', { timeout: 30_000 }, async (t) => {
  const { sup, events } = supervise(t, 'worker-plain-advanced.js', { serialization: 'advanced', healthCheckInterval: 100 })
  const ready = nextMessage(sup, (m) => m.ready)
  await sup.start()
  // Node reads the mode and deletes it from the worker's environment.
  assert.deepEqual(await ready, { ready: sup.pid, mode: null })

  const value = rich()
  const echoed = nextMessage(sup, (m) => m.echo !== undefined)
  await sup.send(value)
  const { echo, seen } = await echoed
  assert.deepEqual(seen, allSeen, 'the worker received the real types')
  assert.deepEqual(echo, value, 'and they came back unchanged')
  assert.ok(Buffer.isBuffer(echo.buffer))
  assert.ok(echo.floats instanceof Float64Array)
  assert.ok('undef' in echo, 'undefined survives, unlike in JSON')

  const answer = await sup.request(value)
  assert.deepEqual(answer, { got: value, seen: allSeen })

  // Health checks run in this mode too: pongs are consumed, the worker is kept.
  await new Promise((resolve) => setTimeout(resolve, 400))
  assert.ok(!events.some((e) => e.name === 'unresponsive' || e.name === 'crashed'), JSON.stringify(events.map((e) => e.name)))
  assert.ok(!events.some((e) => e.name === 'message' && e.value?.type === 'pong'), 'pongs are not messages')
  assert.equal(sup.restartCount, 0)
})

test('the tethered/worker helper answers requests and shuts down in advanced mode', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js', { serialization: 'advanced' })
  const ready = nextMessage(sup, (m) => m.ready)
  await sup.start()
  await ready
  assert.equal(sup.connected, true)

  const value = rich()
  assert.deepEqual(await sup.request({ op: 'echo', value }), value)
  assert.equal(await sup.request({ op: 'echo', value: undefined }), undefined)
  const failed = await outcome(sup.request({ op: 'fail', message: 'bad jpeg', code: 'EJPEG' }))
  assert.equal(failed.error?.message, 'bad jpeg')
  assert.equal(failed.error?.code, 'EJPEG')

  const echoed = nextMessage(sup, (m) => m.echo !== undefined)
  await sup.send(new Map([[1n, Buffer.from('hi')]]))
  assert.deepEqual((await echoed).echo, new Map([[1n, Buffer.from('hi')]]))

  // A burst arrives whole and in order.
  const seqs = []
  sup.on('message', (m) => m.seq !== undefined && seqs.push(m.seq))
  assert.equal(await sup.request({ op: 'burst', count: 2_000 }), 2_000)
  await new Promise((resolve) => setTimeout(resolve, 50))
  assert.deepEqual(seqs, Array.from({ length: 2_000 }, (_, i) => i))

  // stop() sends the shutdown message, which the helper hears.
  const last = nextMessage(sup, (m) => m.shuttingDown)
  await sup.stop()
  assert.equal((await last).shuttingDown > 0, true)
})

test('a 5 MB Buffer crosses both ways intact', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js', { serialization: 'advanced' })
  await sup.start()
  const big = Buffer.alloc(5 * 1024 * 1024)
  for (let i = 0; i < big.length; i += 4093) big[i] = i % 251
  const echoed = nextMessage(sup, (m) => m.echo !== undefined)
  await sup.send({ big })
  const back = (await echoed).echo.big
  assert.ok(Buffer.isBuffer(back))
  assert.ok(back.equals(big))
  const answered = await sup.request({ op: 'echo', value: big })
  assert.ok(answered.equals(big))
})

test('what V8 cannot serialize rejects the call; the supervisor carries on', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js', { serialization: 'advanced' })
  await sup.start()
  // As with fork(): V8's serializer throws, and here that rejects the call.
  const sent = await outcome(sup.send({ f() {} }))
  assert.match(sent.error?.message, /could not be cloned/)
  assert.equal(sent.error?.code, 'ERR_INVALID_ARG_VALUE')
  assert.ok(sent.error instanceof TypeError)
  const requested = await outcome(sup.request({ op: 'echo', value: Symbol('s') }))
  assert.match(requested.error?.message, /could not be cloned/)
  assert.equal(requested.error?.code, 'ERR_INVALID_ARG_VALUE')
  assert.equal(await sup.request({ op: 'echo', value: 1n }), 1n)
})

test('json stays the default; an invalid serialization is a typed error', () => {
  const modulePath = fixture('worker-echo.js')
  assert.equal(new Supervisor({ modulePath }).state, 'idle')
  assert.throws(() => new Supervisor({ modulePath, serialization: 'v8' }), {
    code: 'ERR_INVALID_ARG_VALUE',
    message: /options\.serialization.*'json' or 'advanced'/,
  })
  assert.throws(() => new Supervisor({ modulePath, serialization: 1 }), {
    code: 'ERR_INVALID_ARG_TYPE',
    message: /options\.serialization/,
  })
})

test('a worker exiting mid-request in advanced mode rejects it with ERR_WORKER_EXITED', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js', { serialization: 'advanced', restartDelay: 20 })
  await sup.start()
  const pid = sup.pid
  const failed = await outcome(sup.request({ op: 'exit', code: 3 }))
  assert.equal(failed.error?.code, 'ERR_WORKER_EXITED')
  const spawned = await nextEvent(sup, 'spawn')
  assert.notEqual(spawned.pid, pid)
})
