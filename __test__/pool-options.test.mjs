// Invalid Pool options (DESIGN §1, §6): the constructor throws, request() and close() reject,
// with TypeError ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE or RangeError ERR_OUT_OF_RANGE,
// and a message that names the option. Valid edge values are accepted.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Pool } from 'tethered'
import { fixture, outcome } from './helpers.mjs'
import { makePool } from './pool-helpers.mjs'

const modulePath = fixture('pool-worker.js')

/** Checks `error` against the expected class, code and the option its message must name. */
function assertTyped(error, [type, code, option], what) {
  assert.ok(error instanceof type, `${what}: ${error}`)
  assert.equal(error.code, code, what)
  if (option) assert.ok(error.message.includes(option), `${what}: the message "${error.message}" names ${option}`)
}

test('invalid constructor options throw typed errors naming the option', () => {
  const type = (option) => [TypeError, 'ERR_INVALID_ARG_TYPE', option]
  const value = (option) => [TypeError, 'ERR_INVALID_ARG_VALUE', option]
  const range = (option) => [RangeError, 'ERR_OUT_OF_RANGE', option]
  const cases = [
    [undefined, type()],
    ['worker.js', type()],
    [{}, value()],
    [{ modulePath: 5 }, type('modulePath')],
    [{ modulePath, command: 'node' }, value()],
    [{ modulePath, size: 'two' }, type('size')],
    [{ modulePath, size: 0 }, range('size')],
    [{ modulePath, size: 1.5 }, range('size')],
    [{ modulePath, size: { min: 1 } }, type('size')],
    [{ modulePath, size: { min: -1, max: 2 } }, range('size')],
    [{ modulePath, size: { min: 3, max: 2 } }, range('size')],
    [{ modulePath, size: { min: 0, max: 0 } }, range('size')],
    [{ modulePath, concurrency: 0 }, range('concurrency')],
    [{ modulePath, concurrency: '2' }, type('concurrency')],
    [{ modulePath, maxQueue: -1 }, range('maxQueue')],
    [{ modulePath, maxQueue: 2.5 }, range('maxQueue')],
    [{ modulePath, requestTimeout: -1 }, range('requestTimeout')],
    [{ modulePath, queueTimeout: NaN }, range('queueTimeout')],
    [{ modulePath, idleTimeout: 'soon' }, type('idleTimeout')],
    [{ modulePath, maxAttempts: 0 }, range('maxAttempts')],
    [{ modulePath, maxRestarts: -1 }, range('maxRestarts')],
    [{ modulePath, restartWindow: 1.5 }, range('restartWindow')],
    [{ modulePath, recycleAfter: -5 }, range('recycleAfter')],
    [{ modulePath, maxMemory: -1 }, range('maxMemory')],
    [{ modulePath, memoryCheckInterval: 0 }, range('memoryCheckInterval')],
    [{ modulePath, healthCheckTimeout: 0 }, range('healthCheckTimeout')],
    [{ modulePath, restartDelay: -1 }, range('restartDelay')],
    [{ modulePath, stdio: 'inherits' }, value('stdio')],
    [{ modulePath, killSignal: 'SIGNOPE' }, value('killSignal')],
    [{ modulePath, args: ['a', 1] }, type('args')],
    [{ modulePath, env: { A: 1 } }, type('env')],
  ]
  for (const [options, expected] of cases) {
    let thrown
    try {
      new Pool(options)
    } catch (error) {
      thrown = error
    }
    assert.ok(thrown, `new Pool(${JSON.stringify(options)}) did not throw`)
    assertTyped(thrown, expected, JSON.stringify(options))
  }
})

test('valid edge values are accepted', () => {
  for (const options of [
    { size: 1 },
    { size: { min: 0, max: 2 } },
    { size: { min: 2, max: 2 } },
    { maxQueue: 0 },
    { maxQueue: Infinity },
    { requestTimeout: 0, queueTimeout: 0 },
    { recycleAfter: 0 },
    { maxMemory: 512 * 1024 * 1024 },
    { concurrency: 32, maxAttempts: 5 },
  ]) {
    assert.doesNotThrow(() => new Pool({ modulePath, ...options }), JSON.stringify(options))
  }
})

test('invalid request() and close() options reject typed errors; nothing is thrown', { timeout: 30_000 }, async (t) => {
  const { pool, pids } = makePool(t, { size: 1 })
  const cases = [
    [{ timeout: -1 }, [RangeError, 'ERR_OUT_OF_RANGE', 'timeout']],
    [{ timeout: 1.5 }, [RangeError, 'ERR_OUT_OF_RANGE', 'timeout']],
    [{ queueTimeout: -1 }, [RangeError, 'ERR_OUT_OF_RANGE', 'queueTimeout']],
    [{ maxAttempts: 0 }, [RangeError, 'ERR_OUT_OF_RANGE', 'maxAttempts']],
    [{ signal: 'abort' }, [TypeError, 'ERR_INVALID_ARG_TYPE', 'signal']],
    ['fast', [TypeError, 'ERR_INVALID_ARG_TYPE']],
  ]
  for (const [options, expected] of cases) {
    let promise
    assert.doesNotThrow(() => {
      promise = pool.request({ op: 'echo' }, options)
    })
    const { error } = await outcome(promise)
    assertTyped(error, expected, `request(body, ${JSON.stringify(options)})`)
  }
  assert.deepEqual(pids, [], 'no invalid request started the pool')
  assert.equal(pool.stats().failed, 0, 'argument errors are not request failures')

  const { error } = await outcome(pool.close({ drain: 'yes' }))
  assertTyped(error, [TypeError, 'ERR_INVALID_ARG_TYPE', 'drain'], 'close({ drain: "yes" })')
})
