// Supervisor messaging (DESIGN §4): a real Node IPC channel in json mode — round trips, large,
// unicode and bursty messages in order, request()/response envelopes, send() without a worker,
// stdio 'pipe', and typed errors for invalid options.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Supervisor } from 'tethered'
import { settlesWithin, outcome, sleep } from './helpers.mjs'
import { supervise, nextMessage } from './supervisor-helpers.mjs'

test('round trip: spawn, state, argv, env, send and echo', { timeout: 30_000 }, async (t) => {
  const { sup, events } = supervise(t, 'worker-echo.js', {
    args: ['one', 'two words'],
    env: { TETHERED_TEST_VALUE: 'from-options' },
  })
  assert.equal(sup.state, 'idle')
  assert.equal(sup.pid, null)
  assert.equal(sup.connected, false)
  const ready = nextMessage(sup, (m) => m.ready)
  await sup.start()
  assert.equal(sup.state, 'running')
  assert.equal(sup.connected, true)
  assert.equal(sup.restartCount, 0)
  assert.deepEqual(events[0].name, 'spawn', 'start() resolves after its spawn event')
  assert.equal(events[0].value.pid, sup.pid)
  assert.deepEqual(await ready, { ready: sup.pid, argv: ['one', 'two words'], env: 'from-options' })

  const echoed = nextMessage(sup, (m) => m.echo)
  assert.equal(await sup.send({ hello: 'worker', n: [1, null, true] }), undefined)
  assert.deepEqual(await echoed, { echo: { hello: 'worker', n: [1, null, true] } })
  assert.ok(!events.some((e) => e.name === 'message' && (e.value.type === 'pong' || e.value.tethered)), 'internals are not messages')
})

test('a 5 MB message and emoji arrive exactly, both ways', { timeout: 60_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js')
  await sup.start()
  const emoji = 'héllo 👋🏽 世界 🧵 \u2028 \u0000 "quoted" \\ \n end'
  const big = '€'.repeat(5 * 1024 * 1024 / 3) + '👋🏽'
  for (const value of [emoji, big, { nested: [emoji, { big }] }]) {
    const echoed = nextMessage(sup, (m) => m.echo !== undefined, 30_000)
    await sup.send(value)
    assert.deepEqual((await echoed).echo, value)
    assert.deepEqual(await sup.request({ op: 'echo', value }, { timeout: 30_000 }), value)
  }
})

test('10,000 messages arrive in order, both ways', { timeout: 60_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js')
  await sup.start()
  const count = 10_000

  const fromWorker = []
  const onSeq = (m) => m.seq !== undefined && fromWorker.push(m.seq)
  sup.on('message', onSeq)
  assert.equal(await sup.request({ op: 'burst', count }), count)
  // The burst was sent before the answer, on the same channel.
  sup.off('message', onSeq)
  assert.deepEqual(fromWorker, Array.from({ length: count }, (_, i) => i))

  const echoed = []
  const allEchoed = new Promise((resolve) => {
    sup.on('message', (m) => {
      if (m.echo?.i === undefined) return
      echoed.push(m.echo.i)
      if (echoed.length === count) resolve()
    })
  })
  const sends = []
  for (let i = 0; i < count; i++) sends.push(sup.send({ i }))
  await Promise.all(sends)
  await settlesWithin(allEchoed, 30_000, 'the echoes')
  assert.deepEqual(echoed, Array.from({ length: count }, (_, i) => i))
})

test('request(): answered, failed by the worker, timed out', { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js')
  await sup.start()
  assert.deepEqual(await sup.request({ op: 'echo', value: { a: [1, 2] } }), { a: [1, 2] })
  assert.equal(await sup.request({ op: 'echo' }), undefined, 'a result of undefined')
  const ordered = await sup.request({ op: 'echo', value: { z: 1, a: { y: 2, b: 3 } } })
  assert.deepEqual(Object.keys(ordered), ['z', 'a'], 'keys keep their order')
  assert.deepEqual(Object.keys(ordered.a), ['y', 'b'])
  const answers = await Promise.all([1, 2, 3].map((value) => sup.request({ op: 'echo', value })))
  assert.deepEqual(answers, [1, 2, 3], 'concurrent requests are matched by id')

  const failed = await outcome(sup.request({ op: 'fail', message: 'bad jpeg' }))
  assert.equal(failed.error.message, 'bad jpeg')
  assert.equal(failed.error.code, 'ERR_WORKER_REQUEST_FAILED')
  const coded = await outcome(sup.request({ op: 'fail', message: 'gone', code: 'ENOENT' }))
  assert.equal(coded.error.code, 'ENOENT')

  const started = performance.now()
  const late = await outcome(sup.request({ op: 'sleep', ms: 2_000 }, { timeout: 200 }))
  const waited = performance.now() - started
  assert.equal(late.error.code, 'ERR_TIMEOUT')
  assert.match(late.error.message, /200 ms/)
  assert.ok(waited >= 190 && waited < 1_500, `rejected after ${waited} ms`)
  // The worker is left running, and its late answer is dropped.
  assert.equal(sup.state, 'running')
  await sleep(2_000)
  assert.equal(await sup.request({ op: 'echo', value: 'still here' }), 'still here')

  for (const bad of [{ timeout: -1 }, { timeout: 1.5 }]) {
    const r = await outcome(sup.request('x', bad))
    assert.equal(r.error.code, 'ERR_OUT_OF_RANGE')
    assert.ok(r.error instanceof RangeError)
  }
})

test('send()/request() with no worker reject ERR_IPC_CHANNEL_CLOSED; nothing is thrown or unhandled', { timeout: 30_000 }, async (t) => {
  const problems = []
  const onProblem = (error) => problems.push(error)
  process.on('unhandledRejection', onProblem)
  process.on('uncaughtException', onProblem)
  t.after(() => {
    process.off('unhandledRejection', onProblem)
    process.off('uncaughtException', onProblem)
  })
  const { sup } = supervise(t, 'worker-echo.js')
  let promise
  assert.doesNotThrow(() => {
    promise = sup.send({ before: 'start' })
  })
  assert.equal((await outcome(promise)).error.code, 'ERR_IPC_CHANNEL_CLOSED')
  assert.equal((await outcome(sup.request({ op: 'echo' }))).error.code, 'ERR_IPC_CHANNEL_CLOSED')

  await sup.start()
  await sup.stop()
  assert.equal(sup.state, 'stopped')
  assert.equal(sup.connected, false)
  const after = await outcome(sup.send('after stop'))
  assert.equal(after.error.code, 'ERR_IPC_CHANNEL_CLOSED')
  assert.ok(after.error instanceof Error)

  // Values JSON cannot carry reject too, without throwing.
  const circular = {}
  circular.self = circular
  const cyclic = (await outcome(sup.send(circular))).error
  assert.ok(cyclic instanceof TypeError)
  assert.equal(cyclic.code, 'ERR_INVALID_ARG_VALUE')
  assert.match(cyclic.message, /^The "message" argument cannot be serialized: .*circular/)
  const big = (await outcome(sup.request({ n: 1n }))).error
  assert.equal(big.code, 'ERR_INVALID_ARG_VALUE')
  assert.match(big.message, /BigInt/)
  assert.equal((await outcome(sup.send(undefined))).error.code, 'ERR_INVALID_ARG_TYPE')

  await sleep(100)
  assert.deepEqual(problems, [])
})

test("stdio 'pipe' emits 'stdout' and 'stderr' Buffers", { timeout: 30_000 }, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js', { stdio: 'pipe' })
  let stdout = ''
  let stderr = ''
  sup.on('stdout', (chunk) => {
    assert.ok(Buffer.isBuffer(chunk))
    stdout += chunk
  })
  sup.on('stderr', (chunk) => {
    assert.ok(Buffer.isBuffer(chunk))
    stderr += chunk
  })
  await sup.start()
  await sup.request({ op: 'print', stdout: 'to stdout ✓\n', stderr: 'to stderr ✓\n' })
  // Output is read to EOF before the worker's exit is reported, so stop() comes after it all.
  await sup.stop()
  assert.equal(stdout, 'to stdout ✓\n')
  assert.equal(stderr, 'to stderr ✓\n')
})

test('invalid options throw typed errors from the constructor', () => {
  const cases = [
    [undefined, TypeError, 'ERR_INVALID_ARG_TYPE'],
    ['worker.js', TypeError, 'ERR_INVALID_ARG_TYPE'],
    [{}, TypeError, 'ERR_INVALID_ARG_VALUE'],
    [{ modulePath: 5 }, TypeError, 'ERR_INVALID_ARG_TYPE'],
    [{ modulePath: '' }, TypeError, 'ERR_INVALID_ARG_VALUE'],
    [{ modulePath: 'w.js', command: 'node' }, TypeError, 'ERR_INVALID_ARG_VALUE'],
    [{ modulePath: 'w.js', restart: 'never' }, TypeError, 'ERR_INVALID_ARG_VALUE'],
    [{ modulePath: 'w.js', stdio: 'inherits' }, TypeError, 'ERR_INVALID_ARG_VALUE'],
    [{ modulePath: 'w.js', killSignal: 'SIGNOPE' }, TypeError, 'ERR_INVALID_ARG_VALUE'],
    [{ modulePath: 'w.js', args: ['a', 1] }, TypeError, 'ERR_INVALID_ARG_TYPE'],
    [{ modulePath: 'w.js', env: { A: 1 } }, TypeError, 'ERR_INVALID_ARG_TYPE'],
    [{ modulePath: 'w.js', maxRestarts: -1 }, RangeError, 'ERR_OUT_OF_RANGE'],
    [{ modulePath: 'w.js', restartDelay: 1.5 }, RangeError, 'ERR_OUT_OF_RANGE'],
    [{ modulePath: 'w.js', healthCheckTimeout: 0 }, RangeError, 'ERR_OUT_OF_RANGE'],
    [{ modulePath: 'w.js', stopTimeout: NaN }, RangeError, 'ERR_OUT_OF_RANGE'],
  ]
  for (const [options, type, code] of cases) {
    assert.throws(() => new Supervisor(options), (error) => {
      assert.ok(error instanceof type, `${JSON.stringify(options)}: ${error}`)
      assert.equal(error.code, code, JSON.stringify(options))
      return true
    })
  }
})

test('a worker that cannot start rejects start() with a spawn error', { timeout: 30_000 }, async (t) => {
  const sup = new Supervisor({ command: '/nonexistent/tethered-worker' })
  const r = await outcome(sup.start())
  assert.equal(r.error.code, 'ENOENT')
  assert.equal(r.error.syscall, 'spawn /nonexistent/tethered-worker')
  assert.equal(sup.state, 'stopped')
  assert.equal(sup.pid, null)
})

test('require("tethered/worker") loads outside a worker and does nothing', async () => {
  const { createRequire } = await import('node:module')
  const helper = createRequire(import.meta.url)('tethered/worker')
  assert.equal(typeof helper.onRequest, 'function')
  assert.equal(typeof helper.onShutdown, 'function')
})

test("a line that is not JSON is an 'error' (a warning when nobody listens); the rest still arrives", { timeout: 30_000 }, async (t) => {
  // A command worker may speak the protocol too: fd 3 is the channel.
  const script = 'printf \'not json\\n{"after":1}\\n\' >&3; sleep 1000'
  const options = { modulePath: undefined, command: 'sh', args: ['-c', script], stopTimeout: 200 }

  const { sup } = supervise(t, 'worker-echo.js', options)
  const errors = []
  sup.on('error', (error) => errors.push(error))
  const after = nextMessage(sup, (m) => m.after)
  await sup.start()
  assert.deepEqual(await after, { after: 1 })
  assert.equal(errors.length, 1)
  assert.equal(errors[0].code, 'ERR_IPC_MALFORMED_MESSAGE')

  const unheard = new Supervisor(options)
  t.after(() => unheard.stop())
  const warned = new Promise((resolve) => process.once('warning', resolve))
  await unheard.start()
  const warning = await settlesWithin(warned, 5_000, 'the warning')
  assert.equal(warning.code, 'ERR_IPC_MALFORMED_MESSAGE')
})
