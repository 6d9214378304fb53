// The Supervisor stays consistent and bounded when its worker misbehaves: what a 'message'
// listener reads already reflects that message; a worker that prints or sends faster than JS
// takes it in is held back at its pipe or channel; a message over maxMessageSize kills it.
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { serialize } from 'node:v8'
import { test } from 'node:test'
import { Supervisor } from 'tethered'
import { killGroup, sleep, tempDir, waitFor } from './helpers.mjs'
import { supervise } from './supervisor-helpers.mjs'

test('a message that resets the restart count shows the reset to its listener', async (t) => {
  // The race it guards against is lost only some of the time: try a few workers.
  for (let round = 0; round < 10; round++) {
    const tmp = tempDir()
    t.after(tmp.remove)
    const { sup } = supervise(t, 'worker-crash-then-say.js', {
      restartDelay: 0,
      maxRestarts: 5,
      healthCheckInterval: 0,
      env: { COUNT_FILE: join(tmp.dir, 'count'), CRASHES: '2' },
    })
    const counts = []
    sup.on('crashed', ({ restartCount }) => counts.push(restartCount))
    const seen = new Promise((resolve) => {
      sup.on('message', (message) => resolve({ message, restartCount: sup.restartCount }))
    })
    await sup.start()
    const { message, restartCount } = await seen
    assert.deepEqual(message, { said: 3 })
    assert.deepEqual(counts, [0, 1], 'the count before each crash')
    assert.equal(restartCount, 0, `round ${round}: the listener sees the count this message reset`)
    await sup.stop()
  }
})

const MiB = 1 << 20
/** What the parent may grow by while a worker floods it: the backlog is 4 MiB. */
const FLAT = 64 * MiB
/** Where a test that is failing stops the flood, to spare the machine. */
const GIVE_UP = 256 * MiB

/** Bytes the process `pid` has written so far (/proc/<pid>/io). */
function written(pid) {
  return Number(/wchar: (\d+)/.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))[1])
}

/**
 * Blocks this thread for `ms`, as a busy listener would, and reports how far the RSS grew
 * over `baseline` and whether `pid` wrote anything in the last second.
 */
function busyWait(ms, baseline, pid) {
  const end = performance.now() + ms
  let growth = 0
  let lastSecondFrom = null
  while (performance.now() < end && growth < GIVE_UP) {
    growth = Math.max(growth, process.memoryUsage.rss() - baseline)
    if (lastSecondFrom === null && end - performance.now() < 1_000) lastSecondFrom = written(pid)
  }
  const wroteLately = lastSecondFrom === null || written(pid) !== lastSecondFrom
  return { growth, wroteLately }
}

/** A supervised `sh -c script [$0]` that writes as fast as it can. */
function flooder(t, script, options = {}, $0 = []) {
  const sup = new Supervisor({ command: 'sh', args: ['-c', script, ...$0], ...options })
  const pids = []
  sup.on('spawn', ({ pid }) => pids.push(pid))
  t.after(async () => {
    await sup.stop().catch(() => {})
    for (const pid of pids) killGroup(pid)
  })
  return sup
}

test('a worker printing faster than JS takes it in is held back at its pipe', async (t) => {
  const sup = flooder(t, 'exec cat /dev/zero', { stdio: 'pipe' })
  let chunks = 0
  sup.on('stdout', () => chunks++)
  await sup.start()
  await sleep(200)
  const baseline = process.memoryUsage.rss()
  const { growth, wroteLately } = busyWait(4_000, baseline, sup.pid)
  assert.ok(growth < FLAT, `the parent grew by ${(growth / MiB).toFixed(0)} MiB`)
  assert.ok(!wroteLately, 'the worker is blocked on its full pipe while JS is busy')
  await sleep(200)
  assert.ok(chunks > 0, 'output flows again once JS is free')
})

test('an endless line is refused at maxMessageSize: the worker is killed and that is a crash', async (t) => {
  const sup = flooder(t, "tr '\\0' x < /dev/zero >&3", { maxMessageSize: MiB, maxRestarts: 0 })
  const errors = []
  sup.on('error', (error) => errors.push(error))
  // Listened for before start(): the crash may come in the same delivery as the start. (Not
  // with events.once, which rejects on the 'error' that comes first.)
  let growth = 0
  let watch
  const crashedSoon = new Promise((resolve, reject) => {
    sup.once('crashed', resolve)
    const baseline = process.memoryUsage.rss()
    const giveUpAt = performance.now() + 10_000
    watch = setInterval(() => {
      growth = Math.max(growth, process.memoryUsage.rss() - baseline)
      if (growth > GIVE_UP) reject(new Error(`no crash; the parent grew by ${growth >> 20} MiB`))
      if (performance.now() > giveUpAt) reject(new Error('no crash within 10 s'))
    }, 20)
  })
  t.after(() => clearInterval(watch))
  await sup.start()
  const crashed = await crashedSoon
  clearInterval(watch)
  assert.ok(growth < FLAT, `the parent grew by ${(growth / MiB).toFixed(0)} MiB`)
  assert.equal(crashed.signal, 'SIGKILL')
  assert.deepEqual(
    errors.map((error) => error.code),
    ['ERR_IPC_MESSAGE_TOO_LARGE'],
  )
  assert.match(errors[0].message, /maxMessageSize \(1048576 bytes\)/)
})

test('a message flood while JS is blocked stops at the backlog', async (t) => {
  // Advanced frames, which cost the parent little to decode: the flood outruns any debug build.
  const payload = serialize('x'.repeat(4000))
  const frame = Buffer.concat([Buffer.alloc(4), payload])
  frame.writeUInt32BE(payload.length)
  const tmp = tempDir()
  t.after(tmp.remove)
  const file = join(tmp.dir, 'frames')
  writeFileSync(file, Buffer.concat(Array(256).fill(frame)))
  const sup = flooder(t, 'while :; do cat "$0"; done >&3', { serialization: 'advanced' }, [file])
  let messages = 0
  let result
  sup.on('message', () => {
    if (messages++ === 0) result = busyWait(4_000, process.memoryUsage.rss(), sup.pid)
  })
  await sup.start()
  await waitFor(() => result !== undefined, { what: 'the busy listener' })
  const { growth, wroteLately } = result
  assert.ok(growth < FLAT, `the parent grew by ${(growth / MiB).toFixed(0)} MiB`)
  assert.ok(!wroteLately, 'the worker is blocked on its full channel while JS is busy')
  const before = messages
  await sleep(200)
  assert.ok(messages > before, 'messages flow again once JS is free')
})
