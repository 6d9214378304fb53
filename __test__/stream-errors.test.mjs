// Failures: a command that cannot start (the documented behaviour: `exited` rejects, 'error'
// only for listeners, nothing thrown at a program that only awaits `exited`), and EPIPE on stdin
// as an error on the stream.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { createRequire } from 'node:module'
import { promisify } from 'node:util'
import { spawn } from 'tethered'
import { ending, fixture, MiB, sleep, tracker } from './fixtures/stream-helpers.mjs'

test('a command that does not exist: exited rejects with the spawn-error shape', async () => {
  const child = spawn('tethered-no-such-command', ['--flag', 'x'])
  assert.equal(child.pid, undefined)
  const errors = []
  child.on('error', (err) => errors.push(err))
  const err = await child.exited.then(
    () => assert.fail('exited should reject'),
    (e) => e,
  )
  assert.ok(err instanceof Error)
  assert.equal(err.code, 'ENOENT')
  assert.equal(err.errno, -2)
  assert.equal(err.syscall, 'spawn tethered-no-such-command')
  assert.equal(err.path, 'tethered-no-such-command')
  assert.deepEqual(err.spawnargs, ['--flag', 'x'])
  assert.equal(err.message, 'spawn tethered-no-such-command ENOENT')
  assert.deepEqual(errors, [err], "the same error reaches 'error' listeners")
  // The streams exist (as in Node) and end quietly.
  const out = []
  for await (const chunk of child.stdout) out.push(chunk)
  assert.deepEqual(out, [])
  await finished(child.stderr.resume())
  assert.equal(child.stdin.destroyed, true)
  assert.equal(child.kill(), false)
})

test('a file that is not executable: EACCES', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tethered-stream-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'plain.sh')
  writeFileSync(path, '#!/bin/sh\necho hi\n')
  chmodSync(path, 0o644)
  await assert.rejects(spawn(path).exited, { code: 'EACCES', errno: -13, syscall: `spawn ${path}`, path })
})

test('a program that only awaits exited (or ignores it) never crashes', async () => {
  const run = promisify(execFile)
  const { stdout, stderr } = await run(process.execPath, ['--unhandled-rejections=strict', fixture('stream-only-exited.mjs')])
  assert.equal(stdout, 'caught ENOENT\ncaught ABORT_ERR\nstill running\n')
  assert.equal(stderr, '', 'no warning and no unhandled rejection')
})

test('EPIPE on stdin is an error on the stream, not an uncaught exception', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  // The child closes its stdin and stays alive: every write after that is EPIPE.
  const child = start('sh', ['-c', 'exec 0<&-; sleep 30'], { stdio: ['pipe', 'ignore', 'ignore'] })
  await sleep(100)
  const failed = once(child.stdin, 'error')
  const piece = Buffer.alloc(MiB)
  for (let i = 0; i < 4 && !child.stdin.destroyed; i++) child.stdin.write(piece)
  const [err] = await failed
  assert.equal(err.code, 'EPIPE')
  assert.equal(err.errno, -32)
  assert.equal(err.syscall, 'write')
  assert.equal(child.stdin.destroyed, true)
  assert.equal(child.kill(), true, 'the child itself is untouched')
  assert.equal((await child.exited).signal, 'SIGTERM')
})

test('a child that exits early: pipeline into its stdin fails, the program goes on', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('head', ['-c', '10'])
  const out = []
  child.stdout.on('data', (chunk) => out.push(chunk))
  async function* endless() {
    const piece = Buffer.alloc(256 * 1024, 'y')
    for (;;) yield piece
  }
  await assert.rejects(pipeline(Readable.from(endless()), child.stdin), (err) =>
    ['EPIPE', 'ERR_STREAM_PREMATURE_CLOSE'].includes(err.code),
  )
  assert.deepEqual(ending(await child.exited), { exitCode: 0, signal: null, timedOut: false })
  await finished(child.stdout)
  assert.equal(Buffer.concat(out).toString(), 'yyyyyyyyyy')
})

test('stdin is closed for the user when the child exits', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('true')
  child.stdout.resume()
  child.stderr.resume()
  await child.exited
  assert.equal(child.stdin.destroyed, true)
  // A late write fails through its callback; the destroyed stream emits no 'error'.
  child.stdin.on('error', () => assert.fail("no 'error' event"))
  const err = await new Promise((resolve) => child.stdin.write('late', resolve))
  assert.equal(err.code, 'ERR_STREAM_DESTROYED')
  await sleep(20)
})

test('every error of the native child carries a code', async () => {
  // The native half under lib/child.js, used as lib/child.js never uses it.
  const require = createRequire(import.meta.url)
  const native = require('../binding.js').spawnStream('sleep', ['30'])
  assert.throws(() => native.tryRead(3), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => native.closeOutput(0), { code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => native.waitReadable(7), { code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => native.kill('SIGNOPE'), { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE' })
  const exited = native.wait()
  await assert.rejects(native.wait(), { code: 'ERR_INVALID_STATE' })
  native.kill('SIGKILL')
  assert.equal((await exited).signal, 'SIGKILL')
})
