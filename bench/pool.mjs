// Pool benchmark: tethered's Pool against workerpool (`workerType: 'process'`) and a hand-written
// child_process.fork() pool, 2 workers each, in one run.
//
//   node bench/pool.mjs            full run (~5 minutes on 2 cores; the peers' overload drain is most of it)
//   node bench/pool.mjs --quick    smoke run (under a minute, numbers not meaningful)
//   NAPI_RS_NATIVE_LIBRARY_PATH=/path/to/release.node node bench/pool.mjs   measure another build
//
// The contenders:
//   tethered    new Pool({ size: 2, concurrency }) — a bounded queue in the parent, at most
//               `concurrency` requests on a worker at once
//   workerpool  the best-known process pool, maxWorkers 2; one task on a worker at a time, an
//               unbounded queue in the parent
//   fork pool   what people write by hand: 2 forked workers, every request sent at once (round
//               robin, an id each, the answer resolves the promise of that id); nothing bounds it,
//               and a dead worker is forked again — but the ids it held are never answered
//
// The scenarios, each measurement in a fresh Node process (`--measure <scenario> <contender>`), so
// that no pool's workers, garbage or crashed state leak into another's numbers:
//   echo      small requests, 64 in flight (closed loop), requests/s
//   cpu 1 ms  requests that spin the CPU for 1 ms, 64 in flight, requests/s (the CPUs are the limit)
//   recovery  1 ms requests, 64 in flight; after a baseline, one worker is SIGKILLed every 200 ms;
//             requests/s kept, and requests failed (rejected) and lost (never settled). A client
//             gives up waiting after LANE_PATIENCE_MS and sends its next request, so a lost request
//             costs that wait and not the whole run; the wait is long, so that a request that is
//             merely slow (both workers restarting on a busy machine) is not doubled by its client.
//   overload  requests of 20 ms each fired at once (one synchronous loop of calls): the parent's
//             RSS growth (peak minus before), the p99 time from the call to the rejection of
//             rejected requests (a rejection is seen only once the loop has ended, so the loop's
//             length is printed beside it), the time until every request has settled.
// Then tables of medians with ratios, the goals met or missed, raw numbers in bench/results-pool.json.

import { fork } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'

import {
  MiB,
  describeNativeAddon,
  fmt,
  fmtSpread,
  forceGc,
  markdownTable,
  measureOps,
  nowMs,
  percentile,
  procStatusBytes,
  resetPeakRss,
  runJsonChild,
  summarize,
} from './lib.mjs'

const require = createRequire(import.meta.url)
const THIS_FILE = fileURLToPath(import.meta.url)
const RESULTS_FILE = fileURLToPath(new URL('./results-pool.json', import.meta.url))
const fixture = (name) => fileURLToPath(new URL(`./fixtures/${name}`, import.meta.url))

const WORKERS = 2
const IN_FLIGHT = 64
const KILL_EVERY_MS = 200
const LANE_PATIENCE_MS = 5_000
const SETTLE_GRACE_MS = 3_000
const ECHO = { spinMs: 0, payload: { type: 'job', id: 42, text: 'hello, worker' } }
const cpuWork = (spinMs) => ({ spinMs, payload: null })

// ---------------------------------------------------------------------------------------------
// Contenders: each opens to `{ request(body), pids(), close() }`; `pids()` lists the live worker
// pid of each slot (null while it has none), for the recovery scenario to kill.

const CONTENDERS = {
  'tethered c1': (scenario) => openTethered({ concurrency: 1 }, scenario),
  'tethered c32': (scenario) => openTethered({ concurrency: 32 }, scenario),
  workerpool: openWorkerpool,
  'fork pool': openForkPool,
}

async function openTethered(options, scenario) {
  const { Pool } = require('../index.js')
  const pool = new Pool({
    modulePath: fixture('pool-tethered-worker.js'),
    size: WORKERS,
    ...options,
    // 40 kills in 8 s would exhaust the default restart intensity (10 in 60 s) — that guard works,
    // but it is not what this scenario measures; and a slot restarts at once, as the peers' do.
    ...(scenario === 'recovery' ? { maxRestarts: 1_000, restartDelay: 0 } : {}),
  })
  await pool.start()
  return {
    request: (body) => pool.request(body),
    pids: () => pool.stats().workers.map((w) => w.pid ?? null),
    close: () => pool.close({ drain: false }),
  }
}

async function openWorkerpool() {
  const workerpool = require('workerpool')
  const pool = workerpool.pool(fixture('pool-workerpool-worker.js'), { maxWorkers: WORKERS, workerType: 'process' })
  return {
    request: (body) => pool.exec('serve', [body]),
    // workerpool has no public pid list; each of its WorkerHandlers holds its ChildProcess.
    pids: () => pool.workers.map((handler) => handler.worker?.pid ?? null),
    close: () => pool.terminate(true),
  }
}

async function openForkPool() {
  const pending = new Map()
  let nextId = 1
  let turn = 0
  let closing = false
  const spawnSlot = (slot) => {
    const child = fork(fixture('pool-fork-worker.js'), { serialization: 'json' })
    child.on('message', ({ id, result }) => {
      pending.get(id)?.(result)
      pending.delete(id)
    })
    // A send to a worker that died a moment ago: that request is lost like the ones it held.
    child.on('error', () => {})
    child.on('exit', () => {
      if (!closing) children[slot] = spawnSlot(slot)
    })
    return child
  }
  const children = []
  for (let slot = 0; slot < WORKERS; slot++) children.push(spawnSlot(slot))
  await Promise.all(children.map((child) => new Promise((resolve) => child.once('spawn', resolve))))
  const alive = (child) => child.exitCode === null && child.signalCode === null
  return {
    request: (body) =>
      new Promise((resolve) => {
        const id = nextId++
        pending.set(id, resolve)
        children[turn++ % WORKERS].send({ id, body })
      }),
    pids: () => children.map((child) => (alive(child) ? child.pid : null)),
    close: async () => {
      closing = true
      await Promise.all(
        children.filter(alive).map((child) => new Promise((resolve) => child.once('exit', resolve).kill('SIGKILL'))),
      )
    },
  }
}

// ---------------------------------------------------------------------------------------------
// --measure: one (scenario × contender) measurement in this fresh process, JSON on stdout

async function measureThroughput(peer, body, cfg) {
  const task = () => peer.request(body)
  await measureOps(task, { total: cfg.warmup, concurrency: IN_FLIGHT })
  const { opsPerSec, done, elapsedMs } = await measureOps(task, { total: Infinity, concurrency: IN_FLIGHT, budgetMs: cfg.budgetMs })
  return { opsPerSec, done, elapsedMs }
}

/** Resolves with the promise's settlement, or with undefined after `ms` — clearing its timer. */
function waitAtMost(promise, ms) {
  let timer
  const timeout = new Promise((resolve) => (timer = setTimeout(resolve, ms)))
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

async function measureRecovery(peer, cfg) {
  const body = cpuWork(1)
  await measureOps(() => peer.request(body), { total: cfg.warmup, concurrency: IN_FLIGHT })
  const resolvedAt = []
  let failed = 0
  let open = 0
  const firstError = new Map()
  const track = (promise) => {
    open++
    return Promise.resolve(promise).then(
      () => {
        open--
        resolvedAt.push(nowMs())
      },
      (err) => {
        open--
        failed++
        const key = err?.code ?? err?.name ?? 'Error'
        if (!firstError.has(key)) firstError.set(key, String(err?.message ?? err).split('\n')[0])
      },
    )
  }
  const start = nowMs()
  const killFrom = start + cfg.recovery.baselineMs
  const stopAt = killFrom + cfg.recovery.killMs
  const lane = async () => {
    while (nowMs() < stopAt) await waitAtMost(track(peer.request(body)), LANE_PATIENCE_MS)
  }
  let kills = 0
  let tick = 0
  let killer = null
  const startKilling = setTimeout(() => {
    killer = setInterval(() => {
      // Lanes may still wait on lost requests after the window; the kills end with it.
      if (nowMs() >= stopAt) return clearInterval(killer)
      const pids = peer.pids()
      // Slots in turn; when this one has no process (it is restarting), the next live one.
      const order = pids.map((_, i) => pids[(tick + i) % pids.length])
      tick++
      const pid = order.find((p) => Number.isInteger(p) && p > 0)
      if (pid === undefined) return
      try {
        process.kill(pid, 'SIGKILL')
        kills++
      } catch {
        // Exited meanwhile: not a kill of ours.
      }
    }, KILL_EVERY_MS)
  }, cfg.recovery.baselineMs)
  await Promise.all(Array.from({ length: IN_FLIGHT }, lane))
  clearTimeout(startKilling)
  clearInterval(killer)
  const graceEnd = nowMs() + SETTLE_GRACE_MS
  while (open > 0 && nowMs() < graceEnd) await new Promise((resolve) => setTimeout(resolve, 20))
  const resolvedIn = (from, to) => resolvedAt.filter((t) => t >= from && t < to).length
  const baselineRate = (resolvedIn(start, killFrom) * 1000) / cfg.recovery.baselineMs
  const underKillsRate = (resolvedIn(killFrom, stopAt) * 1000) / cfg.recovery.killMs
  return {
    baselineRate,
    underKillsRate,
    kept: underKillsRate / baselineRate,
    kills,
    resolved: resolvedAt.length,
    failed,
    lost: open,
    errors: Object.fromEntries(firstError),
  }
}

async function measureOverload(peer, cfg) {
  const body = cpuWork(20)
  await measureOps(() => peer.request(ECHO), { total: 100, concurrency: WORKERS * 2 })
  forceGc()
  const rssBefore = procStatusBytes('VmRSS')
  const peakReset = resetPeakRss()
  const rejectMs = []
  const rejectedBy = {}
  let resolved = 0
  let lastSettled = 0
  const settlements = []
  const fired = nowMs()
  // One synchronous loop makes every call, so no callback can run before it ends. A rejection
  // whose handler runs before a microtask queued after the loop was already decided when its
  // call returned (a promise rejected later needs I/O, a timer or more ticks): its
  // time-to-reject is the call's own duration. Any other counts from its call to its handler.
  let loopDone = false
  for (let i = 0; i < cfg.overload; i++) {
    const called = nowMs()
    const promise = Promise.resolve(peer.request(body))
    const callMs = nowMs() - called
    settlements.push(
      promise.then(
        () => {
          resolved++
          lastSettled = nowMs()
        },
        (err) => {
          lastSettled = nowMs()
          rejectMs.push(loopDone ? lastSettled - called : callMs)
          const code = err?.code ?? err?.name ?? 'Error'
          rejectedBy[code] = (rejectedBy[code] ?? 0) + 1
        },
      ),
    )
  }
  queueMicrotask(() => (loopDone = true))
  const firedMs = nowMs() - fired
  const allSettled = Promise.all(settlements)
  let settled = false
  allSettled.then(() => (settled = true))
  await waitAtMost(allSettled, cfg.overloadCapMs)
  return {
    requests: cfg.overload,
    resolved,
    rejected: rejectMs.length,
    rejectedBy,
    unsettled: cfg.overload - resolved - rejectMs.length,
    rejectP50Ms: percentile(rejectMs, 50),
    rejectP99Ms: percentile(rejectMs, 99),
    settleAllMs: settled ? lastSettled - fired : null,
    firedMs,
    rssGrowthMiB: peakReset && rssBefore !== null ? (procStatusBytes('VmHWM') - rssBefore) / MiB : null,
  }
}

async function measureOne(scenario, name, cfg) {
  const peer = await CONTENDERS[name](scenario)
  let result
  if (scenario === 'echo') result = await measureThroughput(peer, ECHO, cfg)
  else if (scenario === 'cpu') result = await measureThroughput(peer, cpuWork(1), cfg)
  else if (scenario === 'recovery') result = await measureRecovery(peer, cfg)
  else if (scenario === 'overload') result = await measureOverload(peer, cfg)
  else throw new Error(`unknown scenario ${scenario}`)
  await waitAtMost(peer.close(), 10_000)
  return { scenario, contender: name, ...result }
}

// ---------------------------------------------------------------------------------------------
// Main run

function parseArgs(argv) {
  const quick = argv.includes('--quick')
  return quick
    ? { quick, runs: 1, warmup: 200, budgetMs: 1_000, recovery: { baselineMs: 1_000, killMs: 2_000 }, overload: 500, overloadCapMs: 60_000 }
    : { quick, runs: 3, warmup: 1_000, budgetMs: 3_000, recovery: { baselineMs: 2_000, killMs: 8_000 }, overload: 5_000, overloadCapMs: 180_000 }
}

/** The contenders in a different order each round, so slow drift does not favour one. */
function rotated(list, by) {
  const k = by % list.length
  return [...list.slice(k), ...list.slice(0, k)]
}

async function measureInChild(scenario, name, cfg) {
  const args = ['--expose-gc', THIS_FILE, '--measure', scenario, name, JSON.stringify(cfg)]
  const result = await runJsonChild(args, { timeout: cfg.overloadCapMs + 60_000 })
  return result.error ? { scenario, contender: name, error: result.error } : result
}

const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : null)
const fmtRatio = (r) => (r === null ? '–' : `${fmt(r, 2)}×`)

function goals(medians, recovery, overload) {
  const t = overload['tethered c1']
  const r = recovery['tethered c1']
  const echoC1 = ratio(medians.echo['tethered c1'], medians.echo.workerpool)
  const echoC32 = ratio(medians.echo['tethered c32'], medians.echo['fork pool'])
  const cpu = ratio(medians.cpu['tethered c1'], medians.cpu['fork pool'])
  return [
    { goal: 'echo, concurrency 1: ≥ 1.5× workerpool', measured: fmtRatio(echoC1), met: echoC1 !== null && echoC1 >= 1.5 },
    { goal: 'echo, concurrency 32: ≥ 0.8× fork pool', measured: fmtRatio(echoC32), met: echoC32 !== null && echoC32 >= 0.8 },
    { goal: '1 ms CPU, concurrency 1: within 5 % of fork pool', measured: fmtRatio(cpu), met: cpu !== null && cpu >= 0.95 },
    { goal: 'recovery: 0 requests lost', measured: `${fmt(r?.lost)} lost`, met: r?.lost === 0 },
    {
      goal: 'overload: parent RSS grows < 32 MiB',
      measured: `${fmt(t?.rssGrowthMiB, 1)} MiB`,
      met: Number.isFinite(t?.rssGrowthMiB) && t.rssGrowthMiB < 32,
    },
    {
      goal: 'overload: p99 time-to-reject ≤ 5 ms',
      measured: `${fmt(t?.rejectP99Ms, 2)} ms`,
      met: Number.isFinite(t?.rejectP99Ms) && t.rejectP99Ms <= 5,
    },
  ]
}

async function main(argv) {
  const cfg = parseArgs(argv)
  const started = nowMs()
  const addon = describeNativeAddon()
  console.log(`# tethered Pool benchmark${cfg.quick ? ' (--quick: smoke run, numbers not meaningful)' : ''}`)
  console.log(`Node ${process.version}, ${cpus().length} CPU(s) ${cpus()[0]?.model ?? ''}, ${WORKERS} workers per pool`)
  console.log(`Native addon: ${addon.path}`)
  const loadAtStart = loadavg()[0]
  if (loadAtStart > cpus().length * 0.5) {
    console.log(`WARNING: load average ${loadAtStart.toFixed(2)} before starting: other work competes for the CPUs.`)
  }
  if (addon.debugBuild) console.log('WARNING: the native addon is a DEBUG build; build a release one first: npm run build')

  const names = Object.keys(CONTENDERS)
  const raw = []
  const run = async (scenario, name) => {
    const result = await measureInChild(scenario, name, cfg)
    raw.push(result)
    const shown = result.error ? `FAILED ${result.error}` : JSON.stringify(result)
    console.log(`  ${scenario} ${name}: ${shown}`)
    return result
  }
  const medians = {}
  const spreads = {}
  for (const scenario of ['echo', 'cpu']) {
    console.log(`\n## ${scenario}: ${cfg.runs} run(s) of ${cfg.budgetMs} ms each, ${IN_FLIGHT} in flight`)
    const samples = Object.fromEntries(names.map((name) => [name, []]))
    for (let round = 0; round < cfg.runs; round++) {
      for (const name of rotated(names, round)) samples[name].push((await run(scenario, name)).opsPerSec)
    }
    spreads[scenario] = Object.fromEntries(names.map((name) => [name, summarize(samples[name])]))
    medians[scenario] = Object.fromEntries(names.map((name) => [name, spreads[scenario][name].median]))
  }
  // Recovery and overload: the pool as a service would run it (concurrency 1) against the peers.
  const services = ['tethered c1', 'workerpool', 'fork pool']
  const recovery = {}
  console.log(`\n## recovery: a worker SIGKILLed every ${KILL_EVERY_MS} ms for ${cfg.recovery.killMs} ms`)
  for (const name of services) recovery[name] = await run('recovery', name)
  const overload = {}
  console.log(`\n## overload: ${fmt(cfg.overload)} requests of 20 ms fired at once`)
  for (const name of services) overload[name] = await run('overload', name)

  console.log(`\n## Throughput (requests/s, min / median / max of ${cfg.runs}; ratios of medians)\n`)
  const rows = names.map((name) => [
    name,
    fmtSpread(spreads.echo[name]),
    fmtRatio(ratio(medians.echo[name], medians.echo.workerpool)),
    fmtRatio(ratio(medians.echo[name], medians.echo['fork pool'])),
    fmtSpread(spreads.cpu[name]),
    fmtRatio(ratio(medians.cpu[name], medians.cpu['fork pool'])),
  ])
  console.log(
    markdownTable(['contender', 'echo req/s', 'vs workerpool', 'vs fork pool', '1 ms CPU req/s', 'vs fork pool'], rows, [1, 2, 3, 4, 5]),
  )
  console.log(`\n## Recovery (1 ms requests, ${IN_FLIGHT} in flight, concurrency 1 for tethered)\n`)
  console.log(
    markdownTable(
      ['contender', 'req/s before', 'req/s under kills', 'kept', 'kills', 'failed', 'lost'],
      services.map((name) => {
        const r = recovery[name]
        return [name, fmt(r.baselineRate), fmt(r.underKillsRate), `${fmt(r.kept * 100)} %`, fmt(r.kills), fmt(r.failed), fmt(r.lost)]
      }),
      [1, 2, 3, 4, 5, 6],
    ),
  )
  console.log(`\n## Overload (${fmt(cfg.overload)} × 20 ms fired at once; tethered with the default maxQueue)\n`)
  console.log(
    markdownTable(
      ['contender', 'parent RSS growth', 'calls took', 'resolved', 'rejected', 'p99 time-to-reject', 'all settled after', 'never settled'],
      services.map((name) => {
        const o = overload[name]
        return [
          name,
          `${fmt(o.rssGrowthMiB, 1)} MiB`,
          `${fmt(o.firedMs)} ms`,
          fmt(o.resolved),
          fmt(o.rejected),
          o.rejected ? `${fmt(o.rejectP99Ms, 2)} ms` : '–',
          o.settleAllMs === null || o.settleAllMs === undefined ? 'not yet' : `${fmt(o.settleAllMs / 1000, 2)} s`,
          fmt(o.unsettled),
        ]
      }),
      [1, 2, 3, 4, 5, 6, 7],
    ),
  )
  console.log('("calls took": the synchronous loop making every call. A rejection already decided when its call returned counts the call\'s own duration; see measureOverload.)')
  const judged = goals(medians, recovery, overload)
  console.log(`\n## Goals${cfg.quick ? ' (not judged meaningfully in --quick mode)' : ''}\n`)
  console.log(
    markdownTable(
      ['goal', 'measured', ''],
      judged.map((g) => [g.goal, g.measured, g.met ? 'met' : 'MISSED']),
      [1],
    ),
  )
  const failures = raw.filter((r) => r.error)
  if (failures.length) {
    console.log('\n## Failures\n')
    for (const f of failures) console.log(`  ${f.scenario} ${f.contender}: ${f.error}`)
  }
  const totalSec = (nowMs() - started) / 1000
  console.log(`\nTotal time ${fmt(totalSec, 1)} s, load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  console.log('(Other work on the machine makes these numbers noisy: compare contenders within one run.)')
  const meta = { date: new Date().toISOString(), node: process.version, cpus: cpus().length, addon, loadAtStart, totalSec, cfg }
  writeFileSync(RESULTS_FILE, `${JSON.stringify({ meta, raw, medians, goals: judged }, null, 2)}\n`)
  console.log(`Raw results written to ${RESULTS_FILE}`)
  return failures.length === 0
}

// `node bench/pool.mjs | head` closes our stdout early: stop quietly instead of crashing.
process.stdout.on('error', (err) => process.exit(err.code === 'EPIPE' ? 0 : 1))

const argv = process.argv.slice(2)
try {
  if (argv[0] === '--measure') {
    console.log(JSON.stringify(await measureOne(argv[1], argv[2], JSON.parse(argv[3]))))
    process.exit(0)
  }
  process.exit((await main(argv)) ? 0 : 1)
} catch (err) {
  console.error(err?.stack ?? err)
  process.exit(1)
}
