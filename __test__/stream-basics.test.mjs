// spawn(): the Child's shape, `exited`, events, stdio modes, kill(), setEncoding and argument
// checking.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { createRequire } from 'node:module'
import { Readable, Writable } from 'node:stream'
import { finished } from 'node:stream/promises'
import { promisify } from 'node:util'
import { spawn } from 'tethered'
import { ending, eventually, fixture, livingMembers, tracker } from './fixtures/stream-helpers.mjs'

const collect = async (stream) => {
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  return chunks
}
const text = async (stream) => Buffer.concat(await collect(stream)).toString()

test('a Child has pid, Node streams and exited', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('sh', ['-c', 'cat; echo done >&2'])
  // The pid is there when spawn() returns; 'spawn' follows.
  assert.equal(typeof child.pid, 'number')
  await once(child, 'spawn')
  assert.ok(child.stdin instanceof Writable)
  assert.ok(child.stdout instanceof Readable)
  assert.ok(child.stderr instanceof Readable)
  assert.ok(child.exited instanceof Promise)
  child.stdin.end('hello')
  const [out, err, exit] = await Promise.all([collect(child.stdout), text(child.stderr), child.exited])
  assert.ok(out.every((chunk) => Buffer.isBuffer(chunk)), 'chunks are Buffers')
  assert.equal(Buffer.concat(out).toString(), 'hello')
  assert.equal(err, 'done\n')
  assert.deepEqual(ending(exit), { exitCode: 0, signal: null, timedOut: false })
})

test('exited: exit code, signal and timeout', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  assert.deepEqual(ending(await start('sh', ['-c', 'exit 3']).exited), { exitCode: 3, signal: null, timedOut: false })
  assert.deepEqual(ending(await start('sh', ['-c', 'kill -KILL $$']).exited), {
    exitCode: null,
    signal: 'SIGKILL',
    timedOut: false,
  })
  assert.deepEqual(ending(await start('sleep', ['30'], { timeout: 100 }).exited), {
    exitCode: null,
    signal: 'SIGTERM',
    timedOut: true,
  })
  assert.deepEqual(ending(await start('sleep', ['30'], { timeout: 100, killSignal: 'SIGINT' }).exited), {
    exitCode: null,
    signal: 'SIGINT',
    timedOut: true,
  })
})

test("events: 'spawn', then 'exit' with code and signal; exitCode/signalCode are set", async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('sh', ['-c', 'exit 7'], { stdio: 'ignore' })
  const events = []
  child.on('spawn', () => events.push('spawn'))
  child.on('exit', (code, signal) => events.push(['exit', code, signal]))
  assert.equal(child.exitCode, null)
  await child.exited
  assert.deepEqual(events, ['spawn', ['exit', 7, null]])
  assert.equal(child.exitCode, 7)
  assert.equal(child.signalCode, null)
})

test('stdio: ignore and inherit give no stream; an array sets each one', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const ignored = start('sh', ['-c', 'echo lost; echo lost >&2'], { stdio: 'ignore' })
  assert.equal(ignored.stdin, null)
  assert.equal(ignored.stdout, null)
  assert.equal(ignored.stderr, null)
  assert.equal((await ignored.exited).exitCode, 0)

  const mixed = start('sh', ['-c', 'read x; echo "$x"; echo err >&2'], { stdio: ['pipe', 'pipe', 'ignore'] })
  assert.equal(mixed.stderr, null)
  mixed.stdin.end('line\n')
  assert.equal(await text(mixed.stdout), 'line\n')

  // 'inherit': the child writes to this process's own stdout, seen from a parent process.
  const run = promisify(execFile)
  const { stdout } = await run(process.execPath, [fixture('stream-inherit.mjs')])
  assert.equal(stdout, 'from the grandchild\n{"stdout":null}\n')
})

test('kill() signals the group and says whether it was delivered', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const group = start('sh', ['-c', 'sleep 30 & wait'], { stdio: 'ignore' })
  await once(group, 'spawn')
  await eventually(() => livingMembers(group.pid).length === 2)
  assert.equal(group.kill('SIGUSR1'), true)
  assert.deepEqual(ending(await group.exited), { exitCode: null, signal: 'SIGUSR1', timedOut: false })
  assert.ok(await eventually(() => livingMembers(group.pid).length === 0), 'the grandchild got it too')

  const child = start('sleep', ['30'], { stdio: 'ignore' })
  assert.equal(child.kill(9), true, 'queued until the process started')
  assert.equal((await child.exited).signal, 'SIGKILL')
  assert.equal(child.kill(), false, 'nothing left to signal')
  assert.throws(() => child.kill('SIGNOPE'), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
})

test('setEncoding works as in Node: a character split across reads is not mangled', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  // '€' is e2 82 ac; the child writes it in two pieces with a pause between.
  const child = start('sh', ['-c', "printf 'a\\342\\202'; sleep 0.2; printf '\\254b'"])
  child.stdout.setEncoding('utf8')
  const pieces = await collect(child.stdout)
  assert.ok(pieces.every((p) => typeof p === 'string'))
  assert.ok(pieces.length >= 2, `read in ${pieces.length} pieces`)
  assert.equal(pieces.join(''), 'a€b')
  assert.ok(!pieces.join('').includes('\ufffd'))
})

test('cwd, env and options in place of args reach the child', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('sh', ['-c', 'pwd; echo "$GREETING"'], { cwd: '/tmp', env: { GREETING: 'hi' } })
  assert.equal(await text(child.stdout), '/tmp\nhi\n')
  const noArgs = start('pwd', { cwd: '/' })
  assert.equal(await text(noArgs.stdout), '/\n')
})

test('invalid arguments throw synchronously with Node codes', () => {
  assert.throws(() => spawn(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => spawn(''), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
  assert.throws(() => spawn('echo', ['a\0b']), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
  assert.throws(() => spawn('echo', [], { stdio: 'ipc' }), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_VALUE',
    message: /options\.stdio/,
  })
  assert.throws(() => spawn('echo', [], { stdio: ['pipe', 3] }), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_TYPE',
    message: /options\.stdio\[1\]/,
  })
  assert.throws(() => spawn('echo', [], { timeout: -1 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => spawn('echo', [], { signal: {} }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' })
})

test('CommonJS require gives the same spawn', async () => {
  const require = createRequire(import.meta.url)
  const cjs = require('tethered')
  assert.equal(cjs.spawn, spawn)
  const child = cjs.spawn('true')
  child.stdout.resume()
  await Promise.all([child.exited, finished(child.stdout), once(child, 'exit')])
})
