// timeout and AbortSignal on a streaming child: the whole group is killed (SIGKILL after
// forceKillAfter when the kill signal is ignored), the streams end, `exited` says why.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { getEventListeners, once } from 'node:events'
import { spawn } from 'tethered'
import { ending, eventually, livingMembers, tracker } from './fixtures/stream-helpers.mjs'

// A leader with two grandchildren in its group, writing to stdout until it is stopped.
const TICKING_GROUP = 'sleep 30 & sleep 30 & while :; do echo tick; sleep 0.01; done'

const readAll = async (stream) => {
  let bytes = 0
  for await (const chunk of stream) bytes += chunk.length
  return bytes
}

test('timeout on a streaming child kills the group; exited says timedOut', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('sh', ['-c', TICKING_GROUP], { timeout: 300 })
  await eventually(() => livingMembers(child.pid).length >= 3)
  const [bytes, exit] = await Promise.all([readAll(child.stdout), child.exited])
  assert.ok(bytes > 0, 'it streamed until the timeout')
  assert.deepEqual(ending(exit), { exitCode: null, signal: 'SIGTERM', timedOut: true })
  assert.ok(await eventually(() => livingMembers(child.pid).length === 0), 'no member of the group is left')
})

test('a group that ignores the kill signal gets SIGKILL after forceKillAfter', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const started = Date.now()
  const child = start('sh', ['-c', `trap '' TERM; ${TICKING_GROUP}`], { timeout: 100, forceKillAfter: 200 })
  child.stdout.resume()
  assert.deepEqual(ending(await child.exited), { exitCode: null, signal: 'SIGKILL', timedOut: true })
  assert.ok(Date.now() - started >= 250, 'SIGKILL came after the grace period')
  assert.ok(await eventually(() => livingMembers(child.pid).length === 0))
})

test('abort kills the group; exited rejects with an AbortError after the leader is reaped', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const controller = new AbortController()
  const child = start('sh', ['-c', TICKING_GROUP], { signal: controller.signal })
  const errors = []
  child.on('error', (err) => errors.push(err))
  const streamed = readAll(child.stdout)
  await eventually(() => livingMembers(child.pid).length >= 3)
  controller.abort()
  const err = await child.exited.then(
    () => assert.fail('exited should reject'),
    (e) => e,
  )
  assert.equal(err.name, 'AbortError')
  assert.equal(err.code, 'ABORT_ERR')
  assert.equal(err.signal, 'SIGTERM')
  assert.equal(err.exitCode, null)
  assert.equal(err.pid, child.pid)
  assert.deepEqual(errors, [err])
  assert.ok((await streamed) > 0)
  assert.ok(await eventually(() => livingMembers(child.pid).length === 0))
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0, 'the abort listener is removed')
})

test('an AbortSignal that already fired starts nothing', async () => {
  const child = spawn('sh', ['-c', 'echo should not run'], { signal: AbortSignal.abort() })
  assert.equal(child.pid, undefined)
  await assert.rejects(child.exited, { name: 'AbortError', code: 'ABORT_ERR' })
  assert.equal(await readAll(child.stdout), 0)
})

test('after a normal exit the abort listener is gone and aborting changes nothing', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const controller = new AbortController()
  const child = start('true', [], { signal: controller.signal, stdio: 'ignore' })
  assert.equal(getEventListeners(controller.signal, 'abort').length, 1)
  assert.deepEqual(ending(await child.exited), { exitCode: 0, signal: null, timedOut: false })
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
  controller.abort()
})

test('a command that cannot start leaves no abort listener behind', async () => {
  const controller = new AbortController()
  const child = spawn('tethered-no-such-command', [], { signal: controller.signal })
  await assert.rejects(child.exited, { code: 'ENOENT' })
  assert.equal(getEventListeners(controller.signal, 'abort').length, 0)
})

test('options in place of args: the AbortSignal is still listened to', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const controller = new AbortController()
  const child = start('cat', { signal: controller.signal, stdio: ['pipe', 'ignore', 'ignore'] })
  await once(child, 'spawn')
  controller.abort()
  await assert.rejects(child.exited, { name: 'AbortError', signal: 'SIGTERM' })
})
