// resourceUsage on every result: the kernel's accounting of the reaped leader (wait4 in the
// launcher), checked against what real children did — CPU they burned, memory they touched.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect, runProcess, spawn } from 'tethered'
import { outcome } from './helpers.mjs'

const MiB = 1 << 20

/** A Node program that spins until it has used `ms` of user CPU time by its own measure. */
const burn = (ms) => `const start = process.cpuUsage().user
  while (process.cpuUsage().user - start < ${ms * 1000}) {}
  console.log(process.cpuUsage().user / 1000)`

/** A Node program that writes to every page of a `mib` MiB Buffer, then exits. */
const touch = (mib) => `const b = Buffer.allocUnsafe(${mib * MiB}); for (let i = 0; i < b.length; i += 4096) b[i] = 1`

function assertShape(usage) {
  assert.deepEqual(Object.keys(usage).sort(), ['maxRss', 'systemCpuMs', 'userCpuMs'])
  for (const value of Object.values(usage)) assert.ok(Number.isFinite(value) && value >= 0, `${value}`)
}

test('a child that burns ~200 ms of CPU reports that user time', async () => {
  const r = await spawnCollect(process.execPath, ['-e', burn(200)])
  assert.equal(r.exitCode, 0, r.stderr)
  assertShape(r.resourceUsage)
  const measuredByChild = Number(r.stdout)
  const { userCpuMs } = r.resourceUsage
  // Node's own start-up adds to the 200 ms; the machine is shared, so the bound is generous.
  assert.ok(userCpuMs >= 150 && userCpuMs <= 1000, `userCpuMs ${userCpuMs}`)
  assert.ok(Math.abs(userCpuMs - measuredByChild) < 100, `kernel ${userCpuMs} vs child ${measuredByChild}`)
})

test('a child that touches 100 MiB reports maxRss of at least 100 MiB; a small one does not', async () => {
  const big = await runProcess(process.execPath, ['-e', touch(100)])
  assert.equal(big.ok, true, big.stderr)
  assert.ok(big.resourceUsage.maxRss >= 100 * MiB, `maxRss ${big.resourceUsage.maxRss}`)
  const small = await runProcess('true')
  assert.ok(small.resourceUsage.maxRss < 100 * MiB, `maxRss ${small.resourceUsage.maxRss}`)
  assert.ok(small.resourceUsage.maxRss > 0)
})

test('a streamed child has resourceUsage on exited', async () => {
  const child = spawn(process.execPath, ['-e', touch(64)], { stdio: 'ignore' })
  const exit = await child.exited
  assert.equal(exit.exitCode, 0)
  assertShape(exit.resourceUsage)
  assert.ok(exit.resourceUsage.maxRss >= 64 * MiB, `maxRss ${exit.resourceUsage.maxRss}`)
  assert.equal(exit.limit, null)
})

test('a killed child still reports its usage; a timeout too', async () => {
  // The child burns 100 ms of CPU by its own clock, then idles until the timeout kills it: how
  // much CPU a fixed wall-clock busy loop gets depends on the machine's load; this does not.
  const burn = 'const t = process.cpuUsage(); while (process.cpuUsage(t).user < 100_000); setInterval(() => {}, 1e6)'
  const r = await spawnCollect(process.execPath, ['-e', burn], { timeout: 3_000 })
  assert.equal(r.timedOut, true)
  assertShape(r.resourceUsage)
  assert.ok(r.resourceUsage.userCpuMs + r.resourceUsage.systemCpuMs > 50, JSON.stringify(r.resourceUsage))
})

test('a maxBuffer rejection carries the usage of the killed child', async () => {
  const o = await outcome(spawnCollect('yes', [], { maxBuffer: 1000 }))
  assert.equal(o.error.code, 'ERR_MAX_BUFFER')
  assertShape(o.error.resourceUsage)
  assert.equal(o.error.limit, null)
})

test('runProcess: usage when a process ran, null when none did', async () => {
  const ran = await runProcess('sh', ['-c', 'exit 3'])
  assert.equal(ran.code, 3)
  assertShape(ran.resourceUsage)
  assert.equal(ran.limit, null)
  const missing = await runProcess('tethered-no-such-command-xyz')
  assert.equal(missing.code, 127)
  assert.equal(missing.resourceUsage, null)
  assert.equal(missing.limit, null)
})
