// Every invalid argument of DESIGN §1, on both entry points: the returned promise rejects (no
// synchronous throw) with TypeError ERR_INVALID_ARG_TYPE, TypeError ERR_INVALID_ARG_VALUE or
// RangeError ERR_OUT_OF_RANGE, and the message names the argument and the value received.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { inspect } from 'node:util'
import { spawnCollect, runProcess } from 'tethered'

const TYPE = ['TypeError', 'ERR_INVALID_ARG_TYPE']
const VALUE = ['TypeError', 'ERR_INVALID_ARG_VALUE']
const RANGE = ['RangeError', 'ERR_OUT_OF_RANGE']

// [kind, argument name as the message gives it, what the message shows as received, call args]
const o = (options) => ['true', [], options]
const cases = [
  // wrong types
  [TYPE, 'command', 'type number (42)', [42]],
  [TYPE, 'command', 'undefined', [undefined]],
  [TYPE, 'command', 'null', [null]],
  [TYPE, 'command', 'an instance of Object', [{}]],
  [TYPE, 'command', 'an instance of Array', [['true']]],
  [TYPE, 'command', 'type boolean (true)', [true]],
  [TYPE, 'command', 'symbol', [Symbol('x')]],
  [TYPE, 'args', "type string ('-l')", ['true', '-l']],
  [TYPE, 'args', 'type number (5)', ['true', 5]],
  [TYPE, 'args[0]', 'type number (1)', ['true', [1]]],
  [TYPE, 'args[1]', 'null', ['true', ['a', null]]],
  [TYPE, 'args[0]', 'an instance of Object', ['true', [{}]]],
  [TYPE, 'options', "type string ('x')", ['true', [], 'x']],
  [TYPE, 'options', 'type number (5)', ['true', [], 5]],
  [TYPE, 'options', 'type boolean (true)', ['true', [], true]],
  [TYPE, 'options', 'an instance of Array', ['true', [], []]],
  [TYPE, 'options.cwd', 'type number (1)', o({ cwd: 1 })],
  [TYPE, 'options.cwd', 'null', o({ cwd: null })],
  [TYPE, 'options.cwd', 'an instance of Uint8Array', o({ cwd: Buffer.from('/') })],
  [TYPE, 'options.env', "type string ('A=1')", o({ env: 'A=1' })],
  [TYPE, 'options.env', 'an instance of Array', o({ env: ['A=1'] })],
  [TYPE, 'options.env.A', 'type number (1)', o({ env: { A: 1 } })],
  [TYPE, 'options.env.A', 'null', o({ env: { A: null } })],
  [TYPE, 'options.extendEnv', "type string ('no')", o({ extendEnv: 'no' })],
  [TYPE, 'options.extendEnv', 'type number (0)', o({ extendEnv: 0 })],
  [TYPE, 'options.timeout', "type string ('1')", o({ timeout: '1' })],
  [TYPE, 'options.timeout', 'null', o({ timeout: null })],
  [TYPE, 'options.timeout', 'bigint', o({ timeout: 10n })],
  [TYPE, 'options.killSignal', 'type boolean (true)', o({ killSignal: true })],
  [TYPE, 'options.killSignal', 'null', o({ killSignal: null })],
  [TYPE, 'options.forceKillAfter', "type string ('300')", o({ forceKillAfter: '300' })],
  [TYPE, 'options.signal', 'an instance of Object', o({ signal: {} })],
  [TYPE, 'options.signal', 'an instance of AbortController', o({ signal: new AbortController() })],
  [TYPE, 'options.killOnParentExit', "type string ('yes')", o({ killOnParentExit: 'yes' })],
  [TYPE, 'options.maxBuffer', "type string ('1')", o({ maxBuffer: '1' })],
  [TYPE, 'options.maxBuffer', 'type boolean (true)', o({ maxBuffer: true })],
  [TYPE, 'options.input', 'type number (42)', o({ input: 42 })],
  [TYPE, 'options.input', 'an instance of Object', o({ input: {} })],
  [TYPE, 'options.input', 'an instance of Int16Array', o({ input: new Int16Array(2) })],
  [TYPE, 'options.encoding', 'type number (8)', o({ encoding: 8 })],
  [TYPE, 'options.encoding', 'null', o({ encoding: null })],
  // right type, bad value
  [VALUE, 'command', "''", ['']],
  [VALUE, 'command', 'ec', ['ec\0ho']],
  [VALUE, 'args[1]', 'a', ['true', ['ok', 'a\0b']]],
  [VALUE, 'options.cwd', '/tmp', o({ cwd: '/tmp\0x' })],
  [VALUE, 'options.env.A', 'x', o({ env: { A: 'x\0y' } })],
  [VALUE, 'options.env', 'A=B', o({ env: { 'A=B': 'x' } })],
  [VALUE, 'options.env', "''", o({ env: { '': 'x' } })],
  [VALUE, 'options.env', 'K', o({ env: { 'K\0': 'x' } })],
  [VALUE, 'options.encoding', "'latin1'", o({ encoding: 'latin1' })],
  [VALUE, 'options.encoding', "'hex'", o({ encoding: 'hex' })],
  [VALUE, 'options.killSignal', "'SIGNOPE'", o({ killSignal: 'SIGNOPE' })],
  [VALUE, 'options.killSignal', "'sigterm'", o({ killSignal: 'sigterm' })],
  [VALUE, 'options.killSignal', '999', o({ killSignal: 999 })],
  // numbers out of range
  [RANGE, 'options.timeout', '-1', o({ timeout: -1 })],
  [RANGE, 'options.timeout', '1.5', o({ timeout: 1.5 })],
  [RANGE, 'options.timeout', 'NaN', o({ timeout: NaN })],
  [RANGE, 'options.timeout', '-Infinity', o({ timeout: -Infinity })],
  [RANGE, 'options.maxBuffer', '0', o({ maxBuffer: 0 })],
  [RANGE, 'options.maxBuffer', '-1', o({ maxBuffer: -1 })],
  [RANGE, 'options.maxBuffer', 'NaN', o({ maxBuffer: NaN })],
  [RANGE, 'options.maxBuffer', '2.5', o({ maxBuffer: 2.5 })],
  [RANGE, 'options.maxBuffer', '-Infinity', o({ maxBuffer: -Infinity })],
  [RANGE, 'options.forceKillAfter', '-1', o({ forceKillAfter: -1 })],
  [RANGE, 'options.forceKillAfter', 'NaN', o({ forceKillAfter: NaN })],
  [RANGE, 'options.forceKillAfter', '0.5', o({ forceKillAfter: 0.5 })],
  [RANGE, 'options.forceKillAfter', 'Infinity', o({ forceKillAfter: Infinity })],
]

const describeArgs = (args) => args.map((a) => inspect(a, { depth: 1, breakLength: Infinity })).join(', ')

for (const [fnName, fn] of [['spawnCollect', spawnCollect], ['runProcess', runProcess]]) {
  for (const [[errorName, code], argName, received, args] of cases) {
    test(`${fnName}(${describeArgs(args)}) rejects with ${code} naming ${argName}`, async () => {
      let promise
      assert.doesNotThrow(() => {
        promise = fn(...args)
      }, 'no synchronous throw')
      assert.ok(promise instanceof Promise, 'returns a promise')
      const err = await promise.then(
        (value) => assert.fail(`resolved: ${JSON.stringify(value)}`),
        (e) => e,
      )
      assert.equal(err.name, errorName, `${err.name} ${err.code}: ${err.message}`)
      assert.ok(err instanceof (errorName === 'RangeError' ? RangeError : TypeError))
      assert.equal(err.code, code, err.message)
      assert.ok(err.message.includes(`"${argName}"`), `message names "${argName}": ${err.message}`)
      assert.ok(err.message.includes('Received'), `message shows what was received: ${err.message}`)
      const shown = err.message.slice(err.message.lastIndexOf('Received'))
      assert.ok(shown.includes(received), `message shows ${received}: ${err.message}`)
    })
  }
}

test('valid edge values are accepted', async () => {
  const accepted = [
    { timeout: 0 }, { forceKillAfter: 0 }, { maxBuffer: 1 }, { maxBuffer: Infinity },
    { maxBuffer: Number.MAX_SAFE_INTEGER }, { encoding: 'utf8' }, { encoding: 'buffer' },
    { killSignal: 'SIGKILL' }, { killSignal: 15 }, { killOnParentExit: false }, { extendEnv: true },
    { env: {} }, { env: null }, { input: '' }, { cwd: '/' }, null, undefined, {},
  ]
  for (const options of accepted) {
    const r = await spawnCollect('true', [], options)
    assert.equal(r.exitCode, 0, JSON.stringify(options))
  }
  assert.equal((await spawnCollect('true', null)).exitCode, 0, 'args: null')
  assert.equal((await spawnCollect('true', undefined, { timeout: 5_000 })).exitCode, 0, 'args: undefined')
})
