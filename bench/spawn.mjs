// Spawn and collect benchmark: tethered against child_process and execa, in one run.
//
//   node bench/spawn.mjs            full run (~2 minutes on 2 cores)
//   node bench/spawn.mjs --quick    smoke run (a few seconds)
//   NAPI_RS_NATIVE_LIBRARY_PATH=/path/to/release.node node bench/spawn.mjs   measure another build
//
// 1. Spawn throughput of /bin/true, sequential and at concurrency 32, all in this process; and
//    in each round the limit row: bench/spawn-limit, a Rust loop that posix_spawns /bin/true and
//    waits (sequentially, then 32 in flight), built here with `cargo build --release -p
//    spawn-limit`. tethered is reported as a percentage of it. Beside it, `launcher-floor` (same
//    crate) drives tethered's own launcher from a plain Rust client, without Node: the launcher's
//    share of the gap to the limit, apart from the addon's.
// 2. Collecting a large stdout (`head -c N /dev/zero`) as a Buffer. Each measurement runs in a
//    fresh Node process (`--collect-one <contender> <bytes>`), so the peak RSS it reports belongs
//    to that contender alone: VmHWM after the run minus VmRSS before it (after a forced GC and a
//    reset of VmHWM), divided by the output size.
// 3. What per-child limits cost: tethered spawning /bin/true with every `limits` key set (and
//    noNewPrivileges) against none, sequentially, alternating in rounds; the cost ratio of medians.
// 1b. How long the streaming `spawn()` call itself holds the event loop (it waits for the
//    launcher's answer so that `pid` is set when it returns): each call timed during a storm of
//    the concurrent count at concurrency 32; its p99 is held to ≤ 1 ms.
// 4. A markdown table of medians with ratios to child_process.spawn, target checks, and the raw
//    numbers in bench/results.json.

import * as childProcess from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, loadavg } from 'node:os'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

import {
  MiB,
  describeNativeAddon,
  fmt,
  fmtSpread,
  forceGc,
  markdownTable,
  measureOps,
  nowMs,
  procStatusBytes,
  resetPeakRss,
  summarize,
  runJsonChild,
} from './lib.mjs'

const require = createRequire(import.meta.url)
const execFileP = promisify(childProcess.execFile)
const THIS_FILE = fileURLToPath(import.meta.url)
const RESULTS_FILE = fileURLToPath(new URL('./results.json', import.meta.url))
const BASELINE = 'child_process.spawn'
const BIG_MAX_BUFFER = 2 ** 31 // for the contenders that need a finite maxBuffer
const LIMIT = 'limit (posix_spawn loop)'
const LIMIT_TARGET = 0.75 // tethered's rate as a fraction of the limit's

// ---------------------------------------------------------------------------------------------
// Contenders

/** Spawn-and-wait of /bin/true, one function per contender. Each rejects on a non-zero exit. */
async function loadSpawners() {
  const tethered = require('../index.js')
  const { execa } = await import('execa')
  return {
    tethered: async () => {
      const r = await tethered.spawnCollect('/bin/true')
      if (r.exitCode !== 0) throw new Error(`tethered: /bin/true exited ${r.exitCode}/${r.signal}`)
    },
    // The same work tethered does: stdin ignored, stdout and stderr piped and read to the end.
    'child_process.spawn': () =>
      new Promise((resolve, reject) => {
        const child = childProcess.spawn('/bin/true', [], { stdio: ['ignore', 'pipe', 'pipe'] })
        child.stdout.resume()
        child.stderr.resume()
        child.on('error', reject)
        child.on('close', (code, signal) =>
          code === 0 ? resolve() : reject(new Error(`spawn: /bin/true exited ${code}/${signal}`)),
        )
      }),
    'child_process.execFile': () => execFileP('/bin/true'),
    execa: () => execa('/bin/true'),
  }
}

/**
 * Collect-as-Buffer of `head -c <bytes> /dev/zero`, one loader per contender (loaded lazily so
 * a collect child process imports only what it measures). Each returns the collected bytes.
 */
const collectors = {
  tethered: async () => {
    const tethered = require('../index.js')
    return async (bytes) => {
      const r = await tethered.spawnCollect('head', ['-c', String(bytes), '/dev/zero'], {
        encoding: 'buffer',
        maxBuffer: Infinity,
        timeout: 0,
      })
      if (r.exitCode !== 0) throw new Error(`tethered: head exited ${r.exitCode}/${r.signal}`)
      return r.stdout
    }
  },
  'child_process.spawn': async () => (bytes) =>
    new Promise((resolve, reject) => {
      const child = childProcess.spawn('head', ['-c', String(bytes), '/dev/zero'], {
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      const chunks = []
      let length = 0
      child.stdout.on('data', (chunk) => {
        chunks.push(chunk)
        length += chunk.length
      })
      child.stderr.resume()
      child.on('error', reject)
      child.on('close', (code, signal) =>
        code === 0
          ? resolve(Buffer.concat(chunks, length))
          : reject(new Error(`spawn: head exited ${code}/${signal}`)),
      )
    }),
  'child_process.execFile': async () => async (bytes) => {
    const { stdout } = await execFileP('head', ['-c', String(bytes), '/dev/zero'], {
      encoding: 'buffer',
      maxBuffer: BIG_MAX_BUFFER,
    })
    return stdout
  },
  execa: async () => {
    const { execa } = await import('execa')
    return async (bytes) => {
      // execa 9: encoding 'buffer' resolves stdout as a Uint8Array.
      const { stdout } = await execa('head', ['-c', String(bytes), '/dev/zero'], {
        encoding: 'buffer',
        maxBuffer: BIG_MAX_BUFFER,
        stripFinalNewline: false,
      })
      return stdout
    }
  },
}

const CONTENDERS = ['tethered', 'child_process.spawn', 'child_process.execFile', 'execa']

/** Builds bench/spawn-limit (release) and returns the path of its executable. */
function buildSpawnLimit() {
  const args = ['build', '--release', '-p', 'spawn-limit', '--message-format=json-render-diagnostics']
  const output = childProcess.execFileSync('cargo', args, {
    cwd: new URL('..', import.meta.url),
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * MiB,
  })
  const built = output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line))
    .filter((m) => m.reason === 'compiler-artifact' && m.executable)
  const executable = (name) => built.find((m) => m.target.name === name)?.executable
  if (!executable('spawn-limit') || !executable('launcher-floor')) throw new Error('cargo built no spawn-limit / launcher-floor executable')
  return { limit: executable('spawn-limit'), launcherFloor: executable('launcher-floor') }
}

/** The launcher binary beside the addon (what tethered runs). */
const LAUNCHER_BINARY = fileURLToPath(new URL('../tethered-launcher', import.meta.url))

/**
 * One run of the limit loop: `{ sequential, concurrent }` in ops/s, and `launcher`: tethered's
 * launcher driven sequentially by a plain Rust client, without Node (bench/spawn-limit/src/bin).
 */
async function runSpawnLimit(binaries, config) {
  const { stdout } = await execFileP(binaries.limit, [String(config.seq), String(config.conc), String(config.concurrency)])
  const floor = await execFileP(binaries.launcherFloor, [LAUNCHER_BINARY, String(config.seq)])
  return { ...JSON.parse(stdout), launcher: JSON.parse(floor.stdout).sequential }
}

// ---------------------------------------------------------------------------------------------
// --collect-one: one measurement in this (fresh) process, JSON on stdout

async function collectOne(name, bytes) {
  if (!collectors[name]) throw new Error(`unknown contender ${name}`)
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`bad byte count ${bytes}`)
  const collect = await collectors[name]()
  // Warm-up: load every code path once with a small output, then measure from a quiet heap.
  await collect(4 * MiB)
  const gcForced = forceGc()
  const baselineRss = procStatusBytes('VmRSS')
  const peakReset = resetPeakRss()
  const start = nowMs()
  const output = await collect(bytes)
  const elapsedMs = nowMs() - start
  const peakRss = procStatusBytes('VmHWM')
  if (output.length !== bytes) throw new Error(`${name} collected ${output.length} bytes, not ${bytes}`)
  if (output[0] !== 0 || output[bytes - 1] !== 0) throw new Error(`${name} collected wrong bytes`)
  process.stdout.write(
    `${JSON.stringify({
      contender: name,
      bytes,
      elapsedMs,
      mbPerSec: bytes / 1e6 / (elapsedMs / 1000),
      baselineRss,
      peakRss,
      peakGrowth: peakRss - baselineRss,
      peakGrowthRatio: (peakRss - baselineRss) / bytes,
      gcForced,
      peakReset,
    })}\n`,
  )
}

async function collectInChild(name, bytes) {
  const result = await runJsonChild(['--expose-gc', THIS_FILE, '--collect-one', name, String(bytes)], { timeout: 120_000 })
  return result.error ? { contender: name, bytes, error: result.error } : result
}

// ---------------------------------------------------------------------------------------------
// Main run

function parseArgs(argv) {
  const quick = argv.includes('--quick')
  return quick
    ? { quick, rounds: 1, seq: 100, conc: 200, concurrency: 32, warmup: 20, collectBytes: 32 * MiB, collectReps: 1, spawnBudgetSec: 60 }
    : { quick, rounds: 3, seq: 1000, conc: 2000, concurrency: 32, warmup: 100, collectBytes: 256 * MiB, collectReps: 3, spawnBudgetSec: 120 }
}

/** The contenders in a different order each round, so slow drift does not favour one. */
function rotated(list, by) {
  const k = by % list.length
  return [...list.slice(k), ...list.slice(0, k)]
}

function gitCommit() {
  try {
    const head = childProcess.execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: new URL('..', import.meta.url),
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    return head.trim()
  } catch {
    return null
  }
}

async function runSpawnBenchmarks(config, log) {
  const spawners = await loadSpawners()
  const raw = Object.fromEntries(CONTENDERS.map((c) => [c, { sequential: [], concurrent: [], loopP99: [], errors: [] }]))
  raw[LIMIT] = { sequential: [], concurrent: [], launcher: [], errors: [] }
  let limitBinaries = null
  try {
    limitBinaries = buildSpawnLimit()
  } catch (err) {
    raw[LIMIT].errors.push(`build: ${err.message}`)
    log(`  ${LIMIT}: could not be built (${err.message}); no limit row in this run`)
  }

  log(`\n## 1. Spawn /bin/true: ${config.seq} sequential, ${config.conc} at concurrency ${config.concurrency}, ${config.rounds} round(s)\n`)
  // child_process forks this process, so its cost grows with this process's memory: show it.
  log(`  this process: RSS ${fmt(process.memoryUsage.rss() / MiB)} MiB before the spawn runs`)
  for (const name of CONTENDERS) {
    try {
      await measureOps(spawners[name], { total: config.warmup, concurrency: 1 })
      await measureOps(spawners[name], { total: config.warmup, concurrency: config.concurrency })
    } catch (err) {
      raw[name].errors.push(`warm-up: ${err.message}`)
    }
  }
  const sectionStart = nowMs()
  for (let round = 0; round < config.rounds; round++) {
    // On a loaded machine a round can take much longer; stop early rather than run for ever.
    const elapsedSec = (nowMs() - sectionStart) / 1000
    if (round > 0 && elapsedSec + elapsedSec / round > config.spawnBudgetSec) {
      log(`  (stopping after ${round} round(s): another would pass the ${config.spawnBudgetSec} s budget of this section)`)
      break
    }
    log(`  -- round ${round + 1}, load average ${loadavg()[0].toFixed(2)}`)
    for (const name of rotated(limitBinaries ? [...CONTENDERS, LIMIT] : CONTENDERS, round)) {
      if (name === LIMIT) {
        try {
          const limit = await runSpawnLimit(limitBinaries, config)
          raw[LIMIT].sequential.push(limit.sequential)
          raw[LIMIT].concurrent.push(limit.concurrent)
          raw[LIMIT].launcher.push(limit.launcher)
          log(
            `  round ${round + 1}  ${name.padEnd(24)} seq ${fmt(limit.sequential).padStart(6)} ops/s   ` +
              `c${config.concurrency} ${fmt(limit.concurrent).padStart(6)} ops/s   launcher alone seq ${fmt(limit.launcher).padStart(6)} ops/s`,
          )
        } catch (err) {
          raw[LIMIT].errors.push(err.message)
          log(`  round ${round + 1}  ${name.padEnd(24)} FAILED: ${err.message}`)
        }
        continue
      }
      forceGc()
      try {
        const seq = await measureOps(spawners[name], { total: config.seq, concurrency: 1 })
        forceGc()
        const conc = await measureOps(spawners[name], {
          total: config.conc,
          concurrency: config.concurrency,
          trackLoop: true,
        })
        raw[name].sequential.push(seq.opsPerSec)
        raw[name].concurrent.push(conc.opsPerSec)
        raw[name].loopP99.push(conc.loopDelay.p99)
        log(
          `  round ${round + 1}  ${name.padEnd(24)} seq ${fmt(seq.opsPerSec).padStart(6)} ops/s   ` +
            `c${config.concurrency} ${fmt(conc.opsPerSec).padStart(6)} ops/s   loop p99 ${fmt(conc.loopDelay.p99, 1)} ms`,
        )
      } catch (err) {
        raw[name].errors.push(err.message)
        log(`  round ${round + 1}  ${name.padEnd(24)} FAILED: ${err.message}`)
      }
    }
  }
  return raw
}

/** Percentile `p` (0–100) of an already sorted list. */
const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]

/**
 * Times each `spawn()` call (tethered's streaming one, which returns with `pid` set) during a
 * storm of `config.conc` spawns of /bin/true at `config.concurrency` in flight, per round; the
 * event-loop delay is tracked too, as for the other storms.
 */
async function runSpawnCallLatency(config, log) {
  const { spawn } = require('../index.js')
  const callMs = []
  const task = async () => {
    const before = process.hrtime.bigint()
    const child = spawn('/bin/true', [], { stdio: 'ignore' })
    callMs.push(Number(process.hrtime.bigint() - before) / 1e6)
    if (child.pid === undefined) throw new Error('spawn(): /bin/true did not start')
    const exit = await child.exited
    if (exit.exitCode !== 0) throw new Error(`spawn(): /bin/true exited ${exit.exitCode}/${exit.signal}`)
  }
  log(`\n## 1b. The spawn() call during ${config.conc} spawns at concurrency ${config.concurrency}, ${config.rounds} round(s)\n`)
  await measureOps(task, { total: config.warmup, concurrency: config.concurrency })
  const rounds = []
  for (let round = 0; round < config.rounds; round++) {
    callMs.length = 0
    forceGc()
    const run = await measureOps(task, { total: config.conc, concurrency: config.concurrency, trackLoop: true })
    const sorted = [...callMs].sort((a, b) => a - b)
    const result = {
      p50: percentile(sorted, 50),
      p99: percentile(sorted, 99),
      max: sorted.at(-1),
      loopP99: run.loopDelay.p99,
      opsPerSec: run.opsPerSec,
    }
    rounds.push(result)
    log(
      `  round ${round + 1}  spawn() call p50 ${fmt(result.p50, 3)} ms  p99 ${fmt(result.p99, 3)} ms  ` +
        `max ${fmt(result.max, 2)} ms   loop p99 ${fmt(result.loopP99, 1)} ms   ${fmt(result.opsPerSec)} ops/s`,
    )
  }
  const p99 = summarize(rounds.map((r) => r.p99))
  log(`\n  spawn() call p99 ${fmtSpread(p99, 3)} ms (goal ≤ 1 ms)`)
  return { rounds, p99 }
}

async function runCollectBenchmarks(config, log) {
  const raw = Object.fromEntries(CONTENDERS.map((c) => [c, { runs: [], errors: [] }]))
  log(
    `\n## 2. Collect ${fmt(config.collectBytes / MiB)} MiB of stdout as a Buffer, ` +
      `${config.collectReps} fresh process(es) per contender\n`,
  )
  for (let rep = 0; rep < config.collectReps; rep++) {
    log(`  -- run ${rep + 1}, load average ${loadavg()[0].toFixed(2)}`)
    for (const name of rotated(CONTENDERS, rep)) {
      const r = await collectInChild(name, config.collectBytes)
      if (r.error) {
        raw[name].errors.push(r.error)
        log(`  run ${rep + 1}  ${name.padEnd(24)} FAILED: ${r.error}`)
        continue
      }
      raw[name].runs.push(r)
      log(
        `  run ${rep + 1}  ${name.padEnd(24)} ${fmt(r.mbPerSec).padStart(6)} MB/s   ` +
          `peak RSS growth ${fmt(r.peakGrowth / MiB)} MiB = ${fmt(r.peakGrowthRatio, 2)}× output` +
          (r.peakReset ? '' : '  (VmHWM could not be reset)'),
      )
    }
  }
  return raw
}

/** Every limit set, at values /bin/true never reaches: what is measured is setting them. */
const EVERY_LIMIT = {
  limits: { memory: 1024 * MiB, cpuTime: 60, openFiles: 1024, fileSize: 1024 * MiB, processes: 1024, coreDump: 0 },
  noNewPrivileges: true,
}

async function runLimitsBenchmark(config, log) {
  const tethered = require('../index.js')
  const spawnWith = (options) => async () => {
    const r = await tethered.spawnCollect('/bin/true', [], options)
    if (r.exitCode !== 0) throw new Error(`tethered: /bin/true exited ${r.exitCode}/${r.signal}`)
  }
  const variants = { 'no limits': spawnWith({}), 'every limit': spawnWith(EVERY_LIMIT) }
  const raw = Object.fromEntries(Object.keys(variants).map((v) => [v, []]))
  const rounds = config.rounds * 2
  log(`\n## 3. tethered spawn of /bin/true with every limit set vs none: ${config.seq} sequential, ${rounds} round(s)\n`)
  for (const run of Object.values(variants)) await measureOps(run, { total: config.warmup, concurrency: 1 })
  for (let round = 0; round < rounds; round++) {
    for (const name of rotated(Object.keys(variants), round)) {
      forceGc()
      const { opsPerSec } = await measureOps(variants[name], { total: config.seq, concurrency: 1 })
      raw[name].push(opsPerSec)
      log(`  round ${round + 1}  ${name.padEnd(12)} ${fmt(opsPerSec).padStart(6)} ops/s`)
    }
  }
  const none = summarize(raw['no limits'])
  const limited = summarize(raw['every limit'])
  // Cost per spawn is the inverse of throughput: > 1 means spawning with limits costs more.
  const costRatio = none.median && limited.median ? none.median / limited.median : null
  log(
    `\n  no limits ${fmtSpread(none)} ops/s | every limit ${fmtSpread(limited)} ops/s | ` +
      `cost with every limit: ${fmt(costRatio, 3)}× (${fmt((costRatio - 1) * 100, 1)} %)`,
  )
  return { raw, none, limited, costRatio }
}

function summarizeAll(spawnRaw, collectRaw) {
  const out = {}
  for (const name of CONTENDERS) {
    out[name] = {
      sequential: summarize(spawnRaw[name].sequential),
      concurrent: summarize(spawnRaw[name].concurrent),
      loopP99: summarize(spawnRaw[name].loopP99),
      collectMbPerSec: summarize(collectRaw[name].runs.map((r) => r.mbPerSec)),
      collectPeakGrowth: summarize(collectRaw[name].runs.map((r) => r.peakGrowthRatio)),
    }
  }
  out[LIMIT] = {
    sequential: summarize(spawnRaw[LIMIT].sequential),
    concurrent: summarize(spawnRaw[LIMIT].concurrent),
    launcher: summarize(spawnRaw[LIMIT].launcher),
  }
  return out
}

const METRICS = [
  { key: 'sequential', label: 'spawn /bin/true, sequential (ops/s)', decimals: 0 },
  { key: 'concurrent', label: 'spawn /bin/true, concurrency 32 (ops/s)', decimals: 0 },
  { key: 'loopP99', label: 'event-loop delay p99 at concurrency 32 (ms)', decimals: 1 },
  { key: 'collectMbPerSec', label: 'collect stdout as Buffer (MB/s)', decimals: 0 },
  { key: 'collectPeakGrowth', label: 'collect: peak RSS growth (× output)', decimals: 2 },
]

function ratio(summaries, name, key) {
  const mine = summaries[name][key].median
  const base = summaries[BASELINE][key].median
  return mine === null || base === null || base === 0 ? null : mine / base
}

/** tethered's median rate as a fraction of the limit loop's (null without a limit row). */
function fractionOfLimit(summaries, key) {
  const mine = summaries.tethered[key].median
  const limit = summaries[LIMIT][key].median
  return mine === null || limit === null ? null : mine / limit
}

function resultTable(summaries, config) {
  const rows = []
  for (const metric of METRICS) {
    // The limit loop only spawns: it has a row for the two spawn rates.
    const names = summaries[LIMIT][metric.key] ? [...CONTENDERS, LIMIT] : CONTENDERS
    for (const name of names) {
      const s = summaries[name][metric.key]
      const label = metric.key.startsWith('collect') ? metric.label.replace('stdout', `${fmt(config.collectBytes / MiB)} MiB`) : metric.label
      rows.push([
        name,
        label,
        fmt(s.median, metric.decimals),
        `${fmt(s.min, metric.decimals)}–${fmt(s.max, metric.decimals)}`,
        name === BASELINE ? '1.00×' : `${fmt(ratio(summaries, name, metric.key), 2)}×`,
      ])
    }
  }
  return markdownTable(['contender', 'metric', 'median', 'min–max', `vs ${BASELINE}`], rows, [2, 3, 4])
}

function checkTargets(summaries, limitsRun, spawnCall) {
  const t = summaries.tethered
  const seqRatio = ratio(summaries, 'tethered', 'sequential')
  const concRatio = ratio(summaries, 'tethered', 'concurrent')
  const collectRatio = ratio(summaries, 'tethered', 'collectMbPerSec')
  const growth = t.collectPeakGrowth.median
  const seqOfLimit = fractionOfLimit(summaries, 'sequential')
  const concOfLimit = fractionOfLimit(summaries, 'concurrent')
  const percent = LIMIT_TARGET * 100
  return [
    { target: `sequential spawn ≥ ${percent} % of the ${LIMIT}`, measured: seqOfLimit, met: seqOfLimit !== null && seqOfLimit >= LIMIT_TARGET },
    { target: `concurrent spawn ≥ ${percent} % of the ${LIMIT}`, measured: concOfLimit, met: concOfLimit !== null && concOfLimit >= LIMIT_TARGET },
    { target: `sequential spawn ≥ 3× ${BASELINE}`, measured: seqRatio, met: seqRatio !== null && seqRatio >= 3 },
    { target: `concurrent spawn ≥ 3.5× ${BASELINE}`, measured: concRatio, met: concRatio !== null && concRatio >= 3.5 },
    { target: `collect (encoding 'buffer') ≥ 2× ${BASELINE}`, measured: collectRatio, met: collectRatio !== null && collectRatio >= 2 },
    { target: 'collect peak RSS growth ≤ 1.2× output', measured: growth, met: growth !== null && growth <= 1.2 },
    {
      target: 'streaming spawn() call p99 ≤ 1 ms during the concurrent storm',
      measured: spawnCall.p99.median,
      met: spawnCall.p99.median !== null && spawnCall.p99.median <= 1,
    },
    {
      target: 'spawn with every limit costs ≤ 1.05× a spawn with none',
      measured: limitsRun.costRatio,
      met: limitsRun.costRatio !== null && limitsRun.costRatio <= 1.05,
    },
  ]
}

async function main(argv) {
  const config = parseArgs(argv)
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
    config,
  }
  log(`# tethered spawn benchmark${config.quick ? ' (--quick: smoke run, numbers not meaningful)' : ''}`)
  log(`Node ${meta.node}, ${meta.cpus} CPU(s) ${meta.cpuModel ?? ''}, commit ${meta.commit ?? '?'}`)
  log(`Native addon: ${meta.addon.path} (${fmt((meta.addon.size ?? NaN) / MiB, 1)} MiB)`)
  meta.loadAtStart = loadavg()[0]
  const busy = meta.loadAtStart > meta.cpus * 0.5
  if (busy) {
    log(`WARNING: load average ${meta.loadAtStart.toFixed(2)} on ${meta.cpus} CPU(s) before starting: other work`)
    log('  competes for the CPUs and slows fork-based spawns most, so ratios come out too favourable.')
  }
  if (meta.addon.debugBuild) {
    log('WARNING: the native addon is a DEBUG build; build a release one first:')
    log('  npx napi build --platform --release --js binding.js --dts binding.d.ts')
  }

  const spawnRaw = await runSpawnBenchmarks(config, log)
  const spawnCall = await runSpawnCallLatency(config, log)
  const collectRaw = await runCollectBenchmarks(config, log)
  const limitsRun = await runLimitsBenchmark(config, log)
  const summaries = summarizeAll(spawnRaw, collectRaw)
  const targets = checkTargets(summaries, limitsRun, spawnCall)

  log('\n## Summary (min / median / max)\n')
  for (const name of CONTENDERS) {
    const s = summaries[name]
    log(
      `  ${name.padEnd(24)} seq ${fmtSpread(s.sequential)} ops/s | c32 ${fmtSpread(s.concurrent)} ops/s | ` +
        `collect ${fmtSpread(s.collectMbPerSec)} MB/s, peak ${fmtSpread(s.collectPeakGrowth, 2)}×`,
    )
  }
  const limit = summaries[LIMIT]
  log(`  ${LIMIT.padEnd(24)} seq ${fmtSpread(limit.sequential)} ops/s | c32 ${fmtSpread(limit.concurrent)} ops/s`)
  // Where the gap to the limit is: in the launcher's round trip, or in the addon's side in Node.
  log(
    `  ${'launcher alone (no Node)'.padEnd(24)} seq ${fmtSpread(limit.launcher)} ops/s = ` +
      `${fmt((limit.launcher.median / limit.sequential.median) * 100)} % of the limit; tethered is ` +
      `${fmt((summaries.tethered.sequential.median / limit.launcher.median) * 100)} % of it`,
  )
  log(
    `  tethered is ${fmt(fractionOfLimit(summaries, 'sequential') * 100)} % of the limit sequentially, ` +
      `${fmt(fractionOfLimit(summaries, 'concurrent') * 100)} % at concurrency ${config.concurrency} (medians)`,
  )
  log('\n## Results (MB = 10^6 bytes; ratios are of medians)\n')
  log(resultTable(summaries, config))
  const caveat = config.quick ? ' (not judged meaningfully in --quick mode)' : busy ? ' (machine was busy: re-run on a quiet one)' : ''
  log(`\n## Targets${caveat}\n`)
  for (const t of targets) {
    const shown = t.target.includes('RSS')
      ? `${fmt(t.measured, 2)}× output`
      : t.target.includes('call p99')
        ? `${fmt(t.measured, 3)} ms`
      : t.target.includes(LIMIT)
        ? `${fmt(t.measured * 100)} %`
        : `${fmt(t.measured, t.target.includes('limit') ? 3 : 2)}×`
    log(`  ${t.met ? 'MET    ' : 'NOT MET'}  tethered ${t.target}: ${shown}`)
  }
  const failures = [
    ...CONTENDERS.flatMap((c) => [...spawnRaw[c].errors, ...collectRaw[c].errors].map((e) => `${c}: ${e}`)),
    ...spawnRaw[LIMIT].errors.map((e) => `${LIMIT}: ${e}`),
  ]
  if (failures.length) {
    log('\n## Failures\n')
    for (const f of failures) log(`  ${f}`)
  }
  const totalSec = (nowMs() - started) / 1000
  log(`\nTotal time ${fmt(totalSec, 1)} s, load average at the end ${loadavg().map((l) => l.toFixed(2)).join(' ')}`)
  log('(Other work on the machine makes these numbers noisy: compare contenders within one run.)')

  writeFileSync(
    RESULTS_FILE,
    `${JSON.stringify({ meta: { ...meta, totalSec }, spawn: spawnRaw, spawnCall, collect: collectRaw, limits: limitsRun, summaries, targets }, null, 2)}\n`,
  )
  log(`Raw results written to ${RESULTS_FILE}`)
}

// `node bench/spawn.mjs | head` closes our stdout early: stop quietly instead of crashing.
process.stdout.on('error', (err) => process.exit(err.code === 'EPIPE' ? 0 : 1))

const argv = process.argv.slice(2)
try {
  if (argv[0] === '--collect-one') {
    await collectOne(argv[1], Number(argv[2]))
  } else {
    await main(argv)
  }
  process.exit(0)
} catch (err) {
  console.error(err?.stack ?? err)
  process.exit(1)
}
