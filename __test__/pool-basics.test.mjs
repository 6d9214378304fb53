// Pool basics (DESIGN §6), end to end through the package: requests spread over real workers,
// events and stats() in their documented shapes, the typed errors a caller sees, and a pool
// that lets Node exit once it is closed.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { Pool } from 'tethered'
import { fixture, killGroup, pidAlive, waitFor, withoutUsage } from './helpers.mjs'

const EVENTS = ['spawn', 'exit', 'crashed', 'restarting', 'recycle', 'unresponsive', 'exhausted', 'error']

/** A Pool of worker-echo.js with `options`; every event recorded; closed and cleaned up after. */
function pooled(t, options = {}) {
  const pool = new Pool({ modulePath: fixture('worker-echo.js'), restartDelay: 20, ...options })
  const events = []
  const pids = []
  for (const name of EVENTS) pool.on(name, (value) => events.push({ name, value }))
  pool.on('spawn', ({ pid }) => pids.push(pid))
  t.after(async () => {
    await pool.close({ drain: false }).catch(() => {})
    for (const pid of pids) killGroup(pid)
  })
  return { pool, events, pids }
}

test('requests spread over the workers, one at a time each; events and stats() as documented', { timeout: 30_000 }, async (t) => {
  const { pool, events } = pooled(t, { size: 2 })
  assert.equal(pool.state, 'idle')
  assert.equal(pool.size, 0)
  await pool.start()
  assert.equal(pool.state, 'running')
  assert.equal(pool.size, 2)
  assert.deepEqual(events.map((e) => e.name), ['spawn', 'spawn'], 'start() resolves after both spawns')
  assert.deepEqual(events.map((e) => e.value.worker).sort(), [0, 1])

  const slow = Array.from({ length: 4 }, () => pool.request({ op: 'sleep', ms: 200 }))
  const queued = pool.stats()
  assert.equal(queued.inFlight, 2, 'concurrency 1: one request per worker')
  assert.equal(queued.queued, 2)
  assert.deepEqual(await Promise.all(slow), ['slept', 'slept', 'slept', 'slept'])

  const stats = pool.stats()
  assert.equal(stats.state, 'running')
  assert.equal(stats.completed, 4)
  assert.equal(stats.failed, 0)
  assert.deepEqual(Object.keys(stats.rejected).sort(), [
    'aborted', 'closed', 'exhausted', 'queueFull', 'queueTimeout', 'timeout', 'workerError', 'workerExited',
  ])
  assert.ok(stats.latencyMs.p50 >= 200 && stats.latencyMs.p99 >= stats.latencyMs.p50, JSON.stringify(stats.latencyMs))
  assert.equal(stats.workers.length, 2)
  for (const row of stats.workers) {
    assert.equal(row.served, 2, 'each worker served two')
    assert.equal(row.state, 'ready')
    assert.equal(typeof row.pid, 'number')
    assert.ok(row.uptimeMs >= 0)
    assert.deepEqual(Object.keys(row).sort(), ['crashes', 'inFlight', 'lastExitUsage', 'pid', 'restartCount', 'rss', 'served', 'state', 'uptimeMs', 'worker'])
    assert.equal(row.lastExitUsage, null, 'no worker exited yet')
  }
})

test("'message' and output carry the worker and its pid", { timeout: 30_000 }, async (t) => {
  const { pool } = pooled(t, { size: 1, stdio: 'pipe' })
  const ready = new Promise((resolve) => pool.on('message', (message, from) => message.ready && resolve({ message, from })))
  const stderr = new Promise((resolve) => pool.on('stderr', (chunk, from) => resolve({ chunk, from })))
  await pool.start()
  const { message, from } = await ready
  assert.deepEqual(from, { worker: 0, pid: message.ready })
  assert.equal(await pool.request({ op: 'print', stdout: '', stderr: 'to stderr' }), true)
  const printed = await stderr
  assert.equal(printed.chunk.toString(), 'to stderr')
  assert.deepEqual(printed.from, from)
})

test('typed errors: queue full, worker error, crash, abort, closed, invalid options', { timeout: 30_000 }, async (t) => {
  const { pool, events } = pooled(t, { size: 1, maxQueue: 1, stdio: 'pipe' })
  // request() before start() starts the pool.
  assert.equal(await pool.request({ op: 'echo', value: 'first' }), 'first')
  assert.equal(pool.state, 'running')

  const busy = pool.request({ op: 'sleep', ms: 300 })
  let busyDone = false
  busy.then(() => (busyDone = true))
  const waiting = pool.request({ op: 'echo', value: 'queued' })
  await assert.rejects(pool.request({ op: 'echo', value: 'no room' }), { code: 'ERR_POOL_QUEUE_FULL' })
  // At once: while the only worker is still busy, not after waiting for room (a wall-clock bound
  // would flake on a loaded machine).
  assert.equal(busyDone, false, 'a full queue rejects at once')
  assert.equal(await busy, 'slept')
  assert.equal(await waiting, 'queued')

  await assert.rejects(pool.request({ op: 'fail', message: 'bad jpeg', code: 'EBADJPEG' }), {
    message: 'bad jpeg',
    code: 'EBADJPEG',
  })

  const already = AbortSignal.abort('stop now')
  await assert.rejects(pool.request({ op: 'echo', value: 1 }, { signal: already }), (error) => {
    assert.equal(error.name, 'AbortError')
    assert.equal(error.code, 'ABORT_ERR')
    assert.equal(error.cause, 'stop now')
    return true
  })
  const controller = new AbortController()
  const inFlight = pool.request({ op: 'sleep', ms: 200 }, { signal: controller.signal })
  setTimeout(() => controller.abort('changed my mind'), 20)
  await assert.rejects(inFlight, { name: 'AbortError', code: 'ABORT_ERR', cause: 'changed my mind' })
  // The worker was told; it keeps its slot until it answers, then serves again.
  assert.equal(await pool.request({ op: 'echo', value: 'after abort' }), 'after abort')

  await assert.rejects(pool.request({ op: 'sleep', ms: 1000 }, { timeout: 50 }), { code: 'ERR_TIMEOUT' })

  await pool.request({ op: 'print', stdout: '', stderr: 'last words\n' })
  const pid = pool.stats().workers[0].pid
  await assert.rejects(pool.request({ op: 'exit', code: 3 }), (error) => {
    assert.equal(error.code, 'ERR_WORKER_EXITED')
    assert.equal(error.attempts, 1)
    assert.equal(error.pid, pid)
    assert.equal(error.exitCode, 3)
    assert.equal(error.signal, null)
    assert.match(error.stderrTail, /last words/)
    return true
  })
  await waitFor(() => events.some((e) => e.name === 'crashed'), { what: "a 'crashed' event" })
  assert.deepEqual(withoutUsage(events.find((e) => e.name === 'crashed').value), { worker: 0, pid, code: 3, signal: null, limit: null, restartCount: 0 })
  assert.equal(await pool.request({ op: 'echo', value: 'restarted' }), 'restarted')

  await assert.rejects(pool.request(undefined), { code: 'ERR_INVALID_ARG_TYPE' })
  await assert.rejects(pool.request({}, { timeout: -1 }), { code: 'ERR_OUT_OF_RANGE' })
  await assert.rejects(pool.request({}, { signal: 'nope' }), { code: 'ERR_INVALID_ARG_TYPE' })

  await pool.close()
  assert.equal(pool.state, 'closed')
  assert.equal(pool.size, 0)
  await assert.rejects(pool.request({ op: 'echo', value: 1 }), { code: 'ERR_POOL_CLOSED' })
  await pool.close()

  const stats = pool.stats()
  assert.equal(stats.rejected.queueFull, 1)
  assert.equal(stats.rejected.workerError, 1)
  assert.equal(stats.rejected.aborted, 2, 'a signal fired before the call counts too')
  assert.equal(stats.rejected.timeout, 1)
  assert.equal(stats.rejected.workerExited, 1)
  assert.equal(stats.rejected.closed, 1)
  assert.equal(stats.failed, 7)
  assert.equal(stats.crashes, 1)
})

test('invalid options throw typed errors naming the option', () => {
  const modulePath = fixture('worker-echo.js')
  assert.throws(() => new Pool(), { code: 'ERR_INVALID_ARG_TYPE' })
  assert.throws(() => new Pool({ modulePath, size: 0 }), { name: 'RangeError', code: 'ERR_OUT_OF_RANGE', message: /options\.size/ })
  assert.throws(() => new Pool({ modulePath, size: { min: 3, max: 2 } }), { code: 'ERR_OUT_OF_RANGE' })
  assert.throws(() => new Pool({ modulePath, concurrency: 'many' }), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE', message: /options\.concurrency/ })
  assert.throws(() => new Pool({ modulePath, maxAttempts: 0 }), { code: 'ERR_OUT_OF_RANGE', message: /options\.maxAttempts/ })
  assert.throws(() => new Pool({ modulePath, killSignal: 'SIGNOPE' }), { code: 'ERR_INVALID_ARG_VALUE' })
})

test('a closed pool leaves nothing running and Node exits by itself', { timeout: 30_000 }, async () => {
  const script = `
    const { Pool } = require(${JSON.stringify(new URL('../index.js', import.meta.url).pathname)})
    const pool = new Pool({ modulePath: ${JSON.stringify(fixture('worker-echo.js'))}, size: 2 })
    const pids = []
    pool.on('spawn', ({ pid }) => pids.push(pid))
    Promise.all([1, 2, 3].map((value) => pool.request({ op: 'echo', value })))
      .then((results) => { console.log(JSON.stringify({ results, pids })); return pool.close() })
  `
  const { stdout } = await new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { timeout: 20_000 }, (error, stdout, stderr) =>
      error ? reject(Object.assign(error, { stderr })) : resolve({ stdout }),
    )
  })
  const { results, pids } = JSON.parse(stdout)
  assert.deepEqual(results, [1, 2, 3])
  assert.equal(pids.length, 2)
  for (const pid of pids) assert.equal(pidAlive(pid), false, `worker ${pid} left running`)
})
