// Spawn cost against the memory the Node process holds: tethered against child_process.spawn,
// in one run.
//
//   node bench/spawn-memory.mjs            full run (~2 minutes on 2 busy cores, at most ~3.5)
//   node bench/spawn-memory.mjs --quick    smoke run (~15 s, numbers not meaningful)
//   node bench/spawn-memory.mjs --mib 1024 hold 1 GiB instead of 2 GiB in the "big" processes
//   NAPI_RS_NATIVE_LIBRARY_PATH=/path/to/release.node node bench/spawn-memory.mjs
//     measure another build (its `tethered-launcher` must sit next to that .node file)
//
// Why: child_process.spawn forks the Node process, and a fork copies the page tables of every
// resident page outside V8's heap (which is MADV_DONTFORK), so each spawn costs ~40-50 ms more per
// GiB of Buffers held, all of it on the event-loop thread. tethered forks from its small launcher
// process instead, so its cost should not move with the size of the Node process.
//
// Each (contender × memory) measurement runs in a fresh Node process (`--child <contender>
// <MiB> <config json>`) that first fills <MiB> one-MiB Buffers (filled with 1s, so every page is
// resident) and keeps them referenced. In that process:
//   1. the first spawn (for tethered it starts the launcher) and a short warm-up;
//   2. an idle event-loop baseline: 1 s of `monitorEventLoopDelay({ resolution: 1 })` doing
//      nothing, to show how much delay the busy machine alone adds;
//   3. latency: N sequential spawns of /bin/true, each timed on its own (ms);
//   4. a storm: 2000 spawns at concurrency 32 with the event-loop delay histogram on
//      (resolution 1 ms), stopped early after a time budget (child_process at 2 GiB blocks the
//      loop ~80-100 ms per spawn, so it gets ~100-130 spawns and only a handful of histogram
//      samples, each seconds long: its p99 there is in effect its max). The event-loop thread's
//      CPU time and run-queue wait (/proc/self/task/<pid>/schedstat) are recorded too, to tell
//      the contender's own work on the loop from a machine too busy to run it.
// The values the histogram records are whole timer intervals, so an idle loop reads ~1.1 ms
// at resolution 1: "p99 ≤ 2 ms" leaves about 1 ms for the spawns' own work on the loop.
//
// Everything runs in 3 rounds (1 with --quick), in a different order each round, so slow drift in the machine's
// load does not favour one contender. Raw numbers go to bench/results-memory.json.

import * as childProcess from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg } from 'node:os'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'

import {
  MiB,
  describeNativeAddon,
  fmt,
  markdownTable,
  measureOps,
  nowMs,
  percentile,
  procStatusBytes,
  summarize,
  runJsonChild,
} from './lib.mjs'

const require = createRequire(import.meta.url)
const THIS_FILE = fileURLToPath(import.meta.url)
const RESULTS_FILE = fileURLToPath(new URL('./results-memory.json', import.meta.url))
const CONTENDERS = ['tethered', 'child_process.spawn']
const CONCURRENCY = 32

// ---------------------------------------------------------------------------------------------
// Contenders: spawn /bin/true and wait for it, rejecting on a non-zero exit

function loadSpawner(name) {
  if (name === 'tethered') {
    const tethered = require('../index.js')
    return async () => {
      const r = await tethered.spawnCollect('/bin/true')
      if (r.exitCode !== 0) throw new Error(`tethered: /bin/true exited ${r.exitCode}/${r.signal}`)
    }
  }
  if (name === 'child_process.spawn') {
    // The same work tethered does: stdin ignored, stdout and stderr piped and read to the end,
    // done at 'close' (exit reaped and both pipes at EOF).
    return () =>
      new Promise((resolve, reject) => {
        const child = childProcess.spawn('/bin/true', [], { stdio: ['ignore', 'pipe', 'pipe'] })
        child.stdout.resume()
        child.stderr.resume()
        child.on('error', reject)
        child.on('close', (code, signal) =>
          code === 0 ? resolve() : reject(new Error(`spawn: /bin/true exited ${code}/${signal}`)),
        )
      })
  }
  throw new Error(`unknown contender ${name}`)
}

// ---------------------------------------------------------------------------------------------
// --child: one (contender × memory) measurement in this fresh process, JSON on stdout

/** `mib` one-MiB Buffers filled with 1s, so their pages are resident (not lazily zero). */
function holdBuffers(mib) {
  const held = []
  for (let i = 0; i < mib; i++) held.push(Buffer.alloc(MiB, 1))
  return held
}

async function idleLoopDelay(ms) {
  const histogram = monitorEventLoopDelay({ resolution: 1 })
  histogram.enable()
  await sleep(ms)
  histogram.disable()
  return { p50: histogram.percentile(50) / 1e6, p99: histogram.percentile(99) / 1e6, max: histogram.max / 1e6 }
}

/** The event-loop thread's CPU time and time spent runnable but waiting for a CPU (ms). */
function mainThreadSched() {
  try {
    const [cpuNs, waitNs] = readFileSync(`/proc/self/task/${process.pid}/schedstat`, 'utf8').trim().split(/\s+/).map(Number)
    return { cpuMs: cpuNs / 1e6, runqueueWaitMs: waitNs / 1e6 }
  } catch {
    return null
  }
}

/**
 * `spawn` wrapped to add up the time each call keeps the event loop busy before it returns its
 * promise (the synchronous part of the call) into `totals.syncMs`.
 */
function timedSync(spawn, totals) {
  return () => {
    const start = nowMs()
    const pending = spawn()
    totals.syncMs += nowMs() - start
    return pending
  }
}

async function childRun(name, mib, cfg) {
  const rssBefore = procStatusBytes('VmRSS')
  const allocStart = nowMs()
  const held = holdBuffers(mib)
  const allocMs = nowMs() - allocStart
  const rssHeld = procStatusBytes('VmRSS')
  const spawn = loadSpawner(name)
  const loadAtStart = loadavg()[0]

  let t = nowMs()
  await spawn()
  const firstSpawnMs = nowMs() - t
  for (let i = 0; i < cfg.warmup; i++) await spawn()

  const idleLoop = await idleLoopDelay(cfg.idleMs)

  const latencies = []
  const latencyStart = nowMs()
  for (let i = 0; i < cfg.latencyCount && nowMs() - latencyStart < cfg.latencyBudgetMs; i++) {
    t = nowMs()
    await spawn()
    latencies.push(nowMs() - t)
  }
  const latencyElapsedMs = nowMs() - latencyStart

  let storm = null
  if (cfg.stormTotal > 0) {
    const totals = { syncMs: 0 }
    const before = mainThreadSched()
    storm = await measureOps(timedSync(spawn, totals), {
      total: cfg.stormTotal,
      concurrency: CONCURRENCY,
      trackLoop: true,
      loopResolution: 1,
      budgetMs: cfg.stormBudgetMs,
    })
    const after = mainThreadSched()
    storm.syncUsPerCall = (totals.syncMs * 1000) / storm.done
    storm.mainThread = before &&
      after && { cpuMs: after.cpuMs - before.cpuMs, runqueueWaitMs: after.runqueueWaitMs - before.runqueueWaitMs }
  }

  return {
    contender: name,
    mib,
    heldBuffers: held.length,
    rssBefore,
    rssHeld,
    allocMs,
    firstSpawnMs,
    idleLoop,
    latencies,
    latencyElapsedMs,
    sequentialOpsPerSec: (latencies.length * 1000) / latencyElapsedMs,
    storm,
    loadAtStart,
    loadAtEnd: loadavg()[0],
  }
}

async function measureInChild(name, mib, cfg) {
  const args = [THIS_FILE, '--child', name, String(mib), JSON.stringify(cfg)]
  const result = await runJsonChild(args, { timeout: 240_000 })
  return result.error ? { contender: name, mib, error: result.error } : result
}

// ---------------------------------------------------------------------------------------------
// Main run

function parseArgs(argv) {
  const quick = argv.includes('--quick')
  const mibAt = argv.indexOf('--mib')
  const bigMib = mibAt >= 0 ? Number(argv[mibAt + 1]) : 2048
  if (!Number.isSafeInteger(bigMib) || bigMib <= 0) throw new Error(`bad --mib ${argv[mibAt + 1]}`)
  // Per (contender × memory) settings; child_process with Buffers held gets fewer spawns, as
  // each blocks the loop for ~40 ms per GiB.
  const common = quick
    ? { warmup: 5, idleMs: 300, latencyCount: 40, latencyBudgetMs: 5_000, stormTotal: 200, stormBudgetMs: 3_000 }
    : { warmup: 20, idleMs: 1_000, latencyCount: 200, latencyBudgetMs: 15_000, stormTotal: 2000, stormBudgetMs: 20_000 }
  const slow = quick
    ? { ...common, warmup: 2, latencyCount: 5, stormBudgetMs: 3_000 }
    : { ...common, warmup: 3, latencyCount: 30, latencyBudgetMs: 8_000, stormBudgetMs: 12_000 }
  return {
    quick,
    rounds: quick ? 1 : 3,
    memories: [0, bigMib],
    settings: (contender, mib) => (contender === 'child_process.spawn' && mib > 0 ? slow : common),
    // Once this much time has passed, remaining rounds are skipped.
    totalBudgetSec: quick ? 60 : 190,
  }
}

const key = (contender, mib) => `${contender} @ ${mib} MiB`

function gitCommit() {
  try {
    return childProcess
      .execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
        cwd: new URL('..', import.meta.url),
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      })
      .trim()
  } catch {
    return null
  }
}

function median(values) {
  return summarize(values).median
}

function summarizeRuns(runs) {
  const ok = runs.filter((r) => !r.error)
  const latencies = ok.flatMap((r) => r.latencies)
  const storms = ok.filter((r) => r.storm)
  // A storm whose every tick outlasted the budget may end before the histogram's second sample.
  const sampled = storms.filter((r) => r.storm.loopDelay.samples > 0)
  return {
    runs: ok.length,
    errors: runs.filter((r) => r.error).map((r) => r.error),
    latency: { ...summarize(latencies), p90: percentile(latencies, 90), p99: percentile(latencies, 99) },
    roundMedians: ok.map((r) => median(r.latencies)),
    sequentialOpsPerSec: median(ok.map((r) => r.sequentialOpsPerSec)),
    firstSpawnMs: median(ok.map((r) => r.firstSpawnMs)),
    rssHeldMiB: median(ok.map((r) => r.rssHeld / MiB)),
    idleLoopP99: median(ok.map((r) => r.idleLoop.p99)),
    stormOpsPerSec: median(storms.map((r) => r.storm.opsPerSec)),
    stormDone: storms.map((r) => r.storm.done),
    loopP50: median(sampled.map((r) => r.storm.loopDelay.p50)),
    loopP99: median(sampled.map((r) => r.storm.loopDelay.p99)),
    loopP99s: sampled.map((r) => r.storm.loopDelay.p99),
    loopMax: sampled.length ? Math.max(...sampled.map((r) => r.storm.loopDelay.max)) : null,
    loopSamples: storms.map((r) => r.storm.loopDelay.samples),
    syncUsPerCall: median(storms.map((r) => r.storm.syncUsPerCall)),
    mainCpuMsPerSpawn: median(storms.filter((r) => r.storm.mainThread).map((r) => r.storm.mainThread.cpuMs / r.storm.done)),
    mainWaitShare: median(storms.filter((r) => r.storm.mainThread).map((r) => r.storm.mainThread.runqueueWaitMs / r.storm.elapsedMs)),
  }
}

function div(a, b) {
  return a === null || b === null || !Number.isFinite(a) || !Number.isFinite(b) || b === 0 ? null : a / b
}

async function main(argv) {
  const config = parseArgs(argv)
  const [small, big] = config.memories
  const lines = []
  const log = (line = '') => {
    lines.push(line)
    console.log(line)
  }
  const started = nowMs()
  const meta = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model ?? null,
    commit: gitCommit(),
    addon: describeNativeAddon(),
    quick: config.quick,
    rounds: config.rounds,
    memories: config.memories,
    settings: Object.fromEntries(
      CONTENDERS.flatMap((c) => config.memories.map((m) => [key(c, m), config.settings(c, m)])),
    ),
    loadAtStart: loadavg(),
  }
  log(`# tethered spawn vs memory held${config.quick ? ' (--quick: smoke run, numbers not meaningful)' : ''}`)
  log(`Node ${meta.node}, ${meta.cpus} CPU(s) ${meta.cpuModel ?? ''}, commit ${meta.commit ?? '?'}`)
  log(`Native addon: ${meta.addon.path} (${fmt((meta.addon.size ?? NaN) / MiB, 1)} MiB)`)
  log(`Load average at start: ${meta.loadAtStart.map((l) => l.toFixed(2)).join(' ')}`)
  const busy = meta.loadAtStart[0] > meta.cpus * 0.5
  if (busy) {
    log(`WARNING: load average ${meta.loadAtStart[0].toFixed(2)} on ${meta.cpus} CPU(s): other work competes for`)
    log('  the CPUs; latencies and loop delays come out higher and noisier than on a quiet machine.')
  }
  if (meta.addon.debugBuild) {
    log('WARNING: the native addon is a DEBUG build; build a release one first (npm run build).')
  }

  const configs = config.memories.flatMap((mib) => CONTENDERS.map((contender) => ({ contender, mib })))
  const raw = Object.fromEntries(configs.map((c) => [key(c.contender, c.mib), []]))
  log(`\n## Runs: ${config.rounds} round(s), each (contender × memory) in a fresh Node process\n`)
  for (let round = 0; round < config.rounds; round++) {
    const elapsedSec = (nowMs() - started) / 1000
    if (round > 0 && elapsedSec + elapsedSec / round > config.totalBudgetSec) {
      log(`  (stopping after ${round} round(s): another would pass the ${config.totalBudgetSec} s budget)`)
      break
    }
    const order = round % 2 ? [...configs].reverse() : configs
    for (const { contender, mib } of order) {
      const cfg = config.settings(contender, mib)
      const r = await measureInChild(contender, mib, cfg)
      raw[key(contender, mib)].push(r)
      if (r.error) {
        log(`  round ${round + 1}  ${key(contender, mib).padEnd(32)} FAILED: ${r.error}`)
        continue
      }
      const lat = summarize(r.latencies)
      const storm = r.storm
      log(
        `  round ${round + 1}  ${key(contender, mib).padEnd(32)} RSS ${fmt(r.rssHeld / MiB).padStart(5)} MiB  ` +
          `first ${fmt(r.firstSpawnMs, 2).padStart(6)} ms  ` +
          `latency med ${fmt(lat.median, 2).padStart(6)} ms (n ${lat.n})  ` +
          `storm ${fmt(storm.opsPerSec).padStart(5)} ops/s (${storm.done} spawns)  ` +
          `loop p99 ${storm.loopDelay.samples ? fmt(storm.loopDelay.p99, 2) : '–'} ms (${storm.loopDelay.samples} samples; idle ${fmt(r.idleLoop.p99, 2)})  ` +
          `load ${r.loadAtStart.toFixed(2)}→${r.loadAtEnd.toFixed(2)}`,
      )
    }
  }

  const summaries = Object.fromEntries(Object.entries(raw).map(([k, runs]) => [k, summarizeRuns(runs)]))
  const s = (contender, mib) => summaries[key(contender, mib)]
  const T = 'tethered'
  const CP = 'child_process.spawn'

  log(`\n## Spawn latency of /bin/true, sequential (ms; all rounds pooled)\n`)
  const latencyRows = configs.map(({ contender, mib }) => {
    const x = s(contender, mib)
    return [
      contender,
      fmt(mib),
      fmt(x.rssHeldMiB),
      fmt(x.latency.median, 2),
      fmt(x.latency.min, 2),
      fmt(x.latency.max, 2),
      fmt(x.latency.p90, 2),
      String(x.latency.n),
      x.roundMedians.map((v) => fmt(v, 2)).join(', '),
      fmt(x.sequentialOpsPerSec),
      fmt(x.firstSpawnMs, 2),
    ]
  })
  log(
    markdownTable(
      ['contender', 'Buffers MiB', 'RSS MiB', 'median', 'min', 'max', 'p90', 'n', 'round medians', 'seq ops/s', 'first spawn'],
      latencyRows,
      [1, 2, 3, 4, 5, 6, 7, 9, 10],
    ),
  )

  log(`\n## Event-loop delay during ${config.quick ? 200 : 2000} spawns at concurrency ${CONCURRENCY} (monitorEventLoopDelay, resolution 1 ms)\n`)
  const loopRows = configs.map(({ contender, mib }) => {
    const x = s(contender, mib)
    return [
      contender,
      fmt(mib),
      x.stormDone.join(', '),
      fmt(x.stormOpsPerSec),
      fmt(x.loopP50, 2),
      fmt(x.loopP99, 2),
      x.loopP99s.map((v) => fmt(v, 2)).join(', '),
      fmt(x.loopMax, 1),
      fmt(x.idleLoopP99, 2),
      fmt(x.syncUsPerCall),
      fmt(x.mainCpuMsPerSpawn * 1000),
      `${fmt(x.mainWaitShare * 100)}%`,
    ]
  })
  log(
    markdownTable(
      ['contender', 'Buffers MiB', 'spawns done', 'ops/s', 'loop p50', 'loop p99', 'p99 per round', 'loop max', 'idle p99', 'sync µs/call', 'loop CPU µs/spawn', 'loop waiting for CPU'],
      loopRows,
      [1, 3, 4, 5, 7, 8, 9, 10, 11],
    ),
  )
  log('  (ms; "spawns done" < total means the time budget stopped the storm; "idle p99" is the same')
  log('   histogram over 1 s of doing nothing in that process: the floor this machine allows;')
  log('   "sync µs/call": time each call holds the loop before returning its promise; "loop CPU')
  log('   µs/spawn": CPU time of the event-loop thread per spawn (calls, callbacks, GC); "loop waiting')
  log('   for CPU": share of the storm the event-loop thread was runnable but had no CPU, from')
  log('   /proc/self/task/<pid>/schedstat — a busy machine shows up here, not as the addon\'s work)')

  const ratios = {
    tetheredBigVsSmall: div(s(T, big).latency.median, s(T, small).latency.median),
    cpBigVsTetheredBig: div(s(CP, big).latency.median, s(T, big).latency.median),
    cpSmallVsTetheredSmall: div(s(CP, small).latency.median, s(T, small).latency.median),
    seqOpsTetheredVsCpSmall: div(s(T, small).sequentialOpsPerSec, s(CP, small).sequentialOpsPerSec),
    cpBigVsCpSmall: div(s(CP, big).latency.median, s(CP, small).latency.median),
    cpMsPerGiB: div(s(CP, big).latency.median - s(CP, small).latency.median, big / 1024),
  }
  log('\n## Ratios (of medians)\n')
  log(`  tethered @ ${big} MiB / tethered @ ${small} MiB:               ${fmt(ratios.tetheredBigVsSmall, 2)}×`)
  log(`  child_process @ ${big} MiB / tethered @ ${big} MiB:         ${fmt(ratios.cpBigVsTetheredBig, 1)}×`)
  log(`  child_process @ ${small} MiB / tethered @ ${small} MiB (latency):  ${fmt(ratios.cpSmallVsTetheredSmall, 2)}×`)
  log(`  tethered / child_process @ ${small} MiB (sequential ops/s): ${fmt(ratios.seqOpsTetheredVsCpSmall, 2)}×`)
  log(`  child_process @ ${big} MiB / @ ${small} MiB:                  ${fmt(ratios.cpBigVsCpSmall, 1)}×` +
    `  (+${fmt(ratios.cpMsPerGiB, 1)} ms per GiB held)`)

  const tLoop = [s(T, small).loopP99, s(T, big).loopP99]
  const targets = [
    {
      target: `tethered @ ${big} MiB within 1.2× of tethered @ ${small} MiB (median latency)`,
      measured: `${fmt(ratios.tetheredBigVsSmall, 2)}× (${fmt(s(T, big).latency.median, 3)} vs ${fmt(s(T, small).latency.median, 3)} ms)`,
      met: ratios.tetheredBigVsSmall !== null && ratios.tetheredBigVsSmall <= 1.2,
    },
    {
      target: `tethered ≥ 50× faster than child_process @ ${big} MiB (median latency)`,
      measured: `${fmt(ratios.cpBigVsTetheredBig, 1)}× (${fmt(s(CP, big).latency.median, 2)} vs ${fmt(s(T, big).latency.median, 3)} ms)`,
      met: ratios.cpBigVsTetheredBig !== null && ratios.cpBigVsTetheredBig >= 50,
    },
    {
      target: `sequential spawn ≥ 3× child_process with no Buffers (median latency)`,
      measured: `${fmt(ratios.cpSmallVsTetheredSmall, 2)}× (ops/s: ${fmt(ratios.seqOpsTetheredVsCpSmall, 2)}×)`,
      met: ratios.cpSmallVsTetheredSmall !== null && ratios.cpSmallVsTetheredSmall >= 3,
    },
    {
      target: `tethered event-loop p99 ≤ 2 ms during the storm, at ${small} and ${big} MiB`,
      measured: `${fmt(tLoop[0], 2)} / ${fmt(tLoop[1], 2)} ms (child_process: ${fmt(s(CP, small).loopP99, 1)} / ${fmt(s(CP, big).loopP99, 1)} ms)`,
      met: tLoop.every((v) => v !== null && v <= 2),
    },
  ]
  const caveat = config.quick ? ' (not judged meaningfully in --quick mode)' : ''
  log(`\n## Targets${caveat}\n`)
  for (const t of targets) log(`  ${t.met ? 'MET    ' : 'NOT MET'}  ${t.target}: ${t.measured}`)

  const failures = Object.entries(summaries).flatMap(([k, x]) => x.errors.map((e) => `${k}: ${e}`))
  if (failures.length) {
    log('\n## Failures\n')
    for (const f of failures) log(`  ${f}`)
  }
  const totalSec = (nowMs() - started) / 1000
  const loadAtEnd = loadavg()
  log(`\nTotal time ${fmt(totalSec, 1)} s, load average at start ${meta.loadAtStart.map((l) => l.toFixed(2)).join(' ')}, ` +
    `at the end ${loadAtEnd.map((l) => l.toFixed(2)).join(' ')} (${meta.cpus} CPUs)`)
  log('(Other work on the machine makes these numbers noisy: compare contenders within one run.)')

  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify({ meta: { ...meta, totalSec, loadAtEnd }, raw, summaries, ratios, targets, output: lines }, null, 2)}\n`,
  )
  log(`Raw results written to ${RESULTS_FILE}`)
}

// `node bench/spawn-memory.mjs | head` closes our stdout early: stop quietly instead of crashing.
process.stdout.on('error', (err) => process.exit(err.code === 'EPIPE' ? 0 : 1))

const argv = process.argv.slice(2)
try {
  if (argv[0] === '--child') {
    const result = await childRun(argv[1], Number(argv[2]), JSON.parse(argv[3]))
    process.stdout.write(`${JSON.stringify(result)}\n`)
  } else {
    await main(argv)
  }
  process.exit(0)
} catch (err) {
  console.error(err?.stack ?? err)
  process.exit(1)
}
