// What Supervisor and Pool workers report when they end: 'exit' and 'crashed' carry the
// kernel's `resourceUsage` of the worker (and `limit` where its signal says one ended it), a
// Pool keeps each slot's last one in stats(), and Pool workers run under `limits` — a worker
// that passes its memory limit dies, its request gets ERR_WORKER_EXITED and the slot gets a new
// worker; one that passes its CPU limit is a crash with `limit: 'cpuTime'`. Real Node workers
// (fixtures/worker-burn.js), real rlimits.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { supervise, nextEvent as nextSupervisorEvent } from './supervisor-helpers.mjs'
import { makePool, recorded } from './pool-helpers.mjs'
import { NODE_MEMORY_LIMIT } from './helpers.mjs'

const MiB = 2 ** 20

/** Fast restarts, so the tests that wait for a replacement stay quick. */
const QUICK = { restartDelay: 50, stopTimeout: 2_000 }

/** A worker that burned `burnedMs` of CPU itself (Node's start-up comes on top) reports it. */
function assertPlausibleUsage(usage, burnedMs) {
  assert.ok(usage, 'no resourceUsage')
  const cpu = usage.userCpuMs + usage.systemCpuMs
  // At least most of what it burned (the kernel's accounting ticks), and not several times it.
  assert.ok(cpu >= burnedMs * 0.8 && cpu < burnedMs + 3_000, `CPU used: ${cpu} ms`)
  assert.ok(usage.userCpuMs >= burnedMs * 0.5, `user CPU: ${usage.userCpuMs} ms`)
  // A Node process holds tens of MiB resident, not a few KiB and not gigabytes.
  assert.ok(usage.maxRss > 20 * MiB && usage.maxRss < 1024 * MiB, `maxRss ${usage.maxRss}`)
}

test('Supervisor: a worker that burns CPU then crashes reports what it used on exit and crashed', async (t) => {
  const { sup } = supervise(t, 'worker-burn.js', QUICK)
  await sup.start()
  const exit = nextSupervisorEvent(sup, 'exit', 20_000)
  const crashed = nextSupervisorEvent(sup, 'crashed', 20_000)
  await assert.rejects(sup.request({ op: 'burn', ms: 400 }), { code: 'ERR_WORKER_EXITED' })
  const [exited, crash] = await Promise.all([exit, crashed])
  assert.equal(crash.code, 3)
  assert.equal(crash.signal, null)
  assert.equal(crash.limit, null)
  assertPlausibleUsage(crash.resourceUsage, 400)
  assert.deepEqual(exited.resourceUsage, crash.resourceUsage)
  assert.equal(exited.limit, null)
})

test('Pool: a worker that burns CPU then crashes reports it, and its slot keeps it in stats()', async (t) => {
  const { pool, events } = makePool(t, { size: 1, ...QUICK }, 'worker-burn.js')
  await pool.start()
  assert.equal(pool.stats().workers[0].lastExitUsage, null, 'nothing exited yet')
  await assert.rejects(pool.request({ op: 'burn', ms: 400 }), { code: 'ERR_WORKER_EXITED', exitCode: 3 })
  const [crash] = await recorded(events, 'crashed')
  const [exit] = await recorded(events, 'exit')
  assert.equal(crash.code, 3)
  assert.equal(crash.limit, null)
  assertPlausibleUsage(crash.resourceUsage, 400)
  assert.deepEqual(exit.resourceUsage, crash.resourceUsage)
  assert.deepEqual(pool.stats().workers[0].lastExitUsage, crash.resourceUsage)
})

test('Pool: a worker under limits.memory that allocates past it dies; its request gets ERR_WORKER_EXITED and the slot a new worker', async (t) => {
  const { pool, events } = makePool(t, { size: 1, limits: { memory: NODE_MEMORY_LIMIT }, stdio: 'pipe', ...QUICK }, 'worker-burn.js')
  await pool.start()
  // Under the limit it works: Node and its IPC channel start and serve in it.
  const before = await pool.request({ op: 'hog', mib: 32 })
  const past = NODE_MEMORY_LIMIT / MiB + 256
  const error = await pool.request({ op: 'hog', mib: past }).then(
    () => assert.fail(`a worker kept ${past} MiB under a ${NODE_MEMORY_LIMIT / MiB} MiB limit`),
    (error) => error,
  )
  assert.equal(error.code, 'ERR_WORKER_EXITED')
  assert.equal(error.pid, before.pid)
  // V8 cannot commit its heap and aborts (or exits); whichever, it is a crash, and no limit is
  // claimed for memory.
  assert.ok(error.signal !== null || error.exitCode !== 0, `${error.exitCode} ${error.signal}`)
  const [crash] = await recorded(events, 'crashed')
  assert.equal(crash.pid, before.pid)
  assert.equal(crash.limit, null)
  assert.ok(crash.resourceUsage.maxRss < NODE_MEMORY_LIMIT + 144 * MiB, `maxRss ${crash.resourceUsage.maxRss}`)
  const after = await pool.request({ op: 'echo', value: 'replaced' })
  assert.notEqual(after.pid, before.pid)
  assert.equal(after.value, 'replaced')
})

test('Pool: a worker under limits.cpuTime that spins crashes with limit cpuTime, and is replaced', async (t) => {
  const { pool, events } = makePool(t, { size: 1, limits: { cpuTime: 1 }, ...QUICK }, 'worker-burn.js')
  await pool.start()
  const error = await pool.request({ op: 'spin' }).then(
    () => assert.fail('the spin answered'),
    (error) => error,
  )
  assert.equal(error.code, 'ERR_WORKER_EXITED')
  assert.equal(error.signal, 'SIGXCPU')
  const [crash] = await recorded(events, 'crashed')
  assert.equal(crash.signal, 'SIGXCPU')
  assert.equal(crash.limit, 'cpuTime')
  const cpu = crash.resourceUsage.userCpuMs + crash.resourceUsage.systemCpuMs
  // The kernel's accounting on a busy virtual machine can read a little under the second.
  assert.ok(cpu >= 500 && cpu < 3_000, `CPU used: ${cpu} ms`)
  const [exit] = await recorded(events, 'exit')
  assert.equal(exit.limit, 'cpuTime')
  const after = await pool.request({ op: 'echo', value: 'next' })
  assert.equal(after.value, 'next')
  assert.notEqual(after.pid, crash.pid)
})
