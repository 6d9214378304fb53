// Workers' channels are read on Node's own loop (src/bindings/uv.rs): what a worker says reaches
// JavaScript with no tokio thread in between, in order with its exit, even when JavaScript's
// thread was too busy to read while the worker was exiting.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { Pool, Supervisor } from 'tethered'
import { fixture, pidAlive, waitFor } from './helpers.mjs'

/** Voluntary context switches of this process's tokio threads so far: how often they woke. */
function tokioWakeUps() {
  let total = 0
  for (const tid of readdirSync('/proc/self/task')) {
    const dir = `/proc/self/task/${tid}`
    try {
      if (readFileSync(`${dir}/comm`, 'utf8').trim() !== 'tokio-rt-worker') continue
      total += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(readFileSync(`${dir}/status`, 'utf8'))[1])
    } catch {
      // The thread ended meanwhile.
    }
  }
  return total
}

const ROUND_TRIPS = 1_000

test('round trips with a Supervisor wake no tokio thread', { timeout: 60_000 }, async (t) => {
  const sup = new Supervisor({ modulePath: fixture('worker-echo.js'), healthCheckInterval: 0 })
  t.after(() => sup.stop())
  await sup.start()
  let answer
  sup.on('message', (message) => {
    if (message.echo !== undefined) answer?.(message)
  })
  const roundTrip = (n) => new Promise((resolve) => {
    answer = resolve
    sup.send({ n })
  })
  await roundTrip(-1)
  const before = tokioWakeUps()
  for (let n = 0; n < ROUND_TRIPS; n++) assert.deepEqual(await roundTrip(n), { echo: { n } })
  const woken = tokioWakeUps() - before
  // Read on a tokio thread and handed over, each answer woke one; a few wake-ups are the
  // runtime's own.
  assert.ok(woken < ROUND_TRIPS / 10, `tokio threads woke ${woken} times for ${ROUND_TRIPS} round trips`)
})

test('requests to a Pool wake no tokio thread', { timeout: 60_000 }, async (t) => {
  const pool = new Pool({ modulePath: fixture('pool-worker.js'), size: 1, healthCheckInterval: 0 })
  t.after(() => pool.close())
  await pool.start()
  await pool.request({ op: 'echo', value: -1 })
  const before = tokioWakeUps()
  for (let n = 0; n < ROUND_TRIPS; n++) await pool.request({ op: 'echo', value: n })
  const woken = tokioWakeUps() - before
  assert.ok(woken < ROUND_TRIPS / 10, `tokio threads woke ${woken} times for ${ROUND_TRIPS} requests`)
})

test("what a worker sent before exiting comes before its 'exit', though JavaScript was busy past the drain", { timeout: 60_000 }, async (t) => {
  const COUNT = 500
  // Sends COUNT messages, and exits once the last is written.
  const script = `for (let i = 1; i <= ${COUNT}; i++) process.send({ i }, i === ${COUNT} ? () => process.exit(0) : undefined)`
  const sup = new Supervisor({ command: process.execPath, args: ['-e', script], healthCheckInterval: 0 })
  t.after(() => sup.stop())
  const heard = []
  sup.on('message', ({ i }) => heard.push(i))
  sup.on('exit', ({ code }) => heard.push(`exit ${code}`))
  await sup.start()
  const pid = sup.pid
  // The JS thread reads nothing while this runs: the worker writes, exits and is reaped, and
  // the 100 ms drain after its exit passes several times over.
  const deadline = Date.now() + 20_000
  while (pidAlive(pid) && Date.now() < deadline) {
    // Busy on purpose.
  }
  assert.ok(!pidAlive(pid), 'the worker exited while JavaScript was busy')
  const busyUntil = Date.now() + 500
  while (Date.now() < busyUntil) {
    // Busy on purpose.
  }
  await waitFor(() => heard.includes('exit 0'), { timeout: 10_000, what: "the worker's 'exit'" })
  assert.deepEqual(heard, [...Array.from({ length: COUNT }, (_, k) => k + 1), 'exit 0'])
})
