// Streaming throughput: `head -c 1073741824 /dev/zero` streamed to a counting consumer, tethered's
// spawn() against child_process.spawn, in one run.
//
//   node bench/stream.mjs [--runs 7] [--bytes 1073741824]
//
// On a shared machine the numbers move with the other load: compare the two in one run (they
// alternate), look at the medians, and at the Node CPU time per GiB, which moves less.
//
// Each measurement runs in a fresh Node process (so one run's heap does not inflate the next
// run's RSS), alternating the two implementations. Peak RSS growth is the kernel's high-water
// mark (VmHWM, reset through /proc/self/clear_refs before the run) minus the RSS at the start.
// Build the addon in release mode first: `npm run build`.
import { spawn as cpSpawn, execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { createRequire } from 'node:module'

const MiB = 1024 * 1024
const args = process.argv.slice(2)
const option = (name, fallback) => {
  const i = args.indexOf(`--${name}`)
  return i === -1 ? fallback : args[i + 1]
}

function rssKiB(field) {
  const status = readFileSync('/proc/self/status', 'utf8')
  return Number(status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))[1])
}

function resetPeak() {
  try {
    writeFileSync('/proc/self/clear_refs', '5')
    return true
  } catch {
    return false
  }
}

async function measure(impl, bytes) {
  const require = createRequire(import.meta.url)
  const spawn = impl === 'tethered' ? require('../index.js').spawn : cpSpawn
  // Warm up the implementation (loading the addon, first spawn) outside the measurement.
  await new Promise((resolve) => spawn('true').on('exit', resolve))
  globalThis.gc?.()
  const peakResettable = resetPeak()
  const before = rssKiB('VmRSS')
  let sampledPeak = before
  const sampler = setInterval(() => {
    sampledPeak = Math.max(sampledPeak, rssKiB('VmRSS'))
  }, 20)
  const cpuBefore = process.cpuUsage()
  const start = process.hrtime.bigint()
  const child = spawn('head', ['-c', String(bytes), '/dev/zero'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let count = 0
  let chunks = 0
  child.stdout.on('data', (chunk) => {
    count += chunk.length
    chunks++
  })
  await new Promise((resolve, reject) => {
    child.stdout.on('end', resolve)
    child.stdout.on('error', reject)
  })
  const seconds = Number(process.hrtime.bigint() - start) / 1e9
  const cpu = process.cpuUsage(cpuBefore)
  clearInterval(sampler)
  if (count !== bytes) throw new Error(`${impl}: counted ${count} of ${bytes} bytes`)
  const peak = peakResettable ? rssKiB('VmHWM') : Math.max(sampledPeak, rssKiB('VmRSS'))
  return {
    impl,
    mbPerSec: bytes / 1e6 / seconds,
    rssGrowthMiB: (peak - before) / 1024,
    avgChunkKiB: bytes / chunks / 1024,
    // CPU time of this Node process (all threads) per GiB: less sensitive to a busy machine.
    cpuSecPerGiB: (cpu.user + cpu.system) / 1e6 / (bytes / (1024 * MiB)),
  }
}

if (args[0] === '--worker') {
  const result = await measure(args[1], Number(args[2]))
  process.stdout.write(JSON.stringify(result))
} else {
  const runs = Number(option('runs', 7))
  const bytes = Number(option('bytes', 1024 * MiB))
  const self = fileURLToPath(import.meta.url)
  const results = { child_process: [], tethered: [] }
  for (let i = 0; i < runs; i++) {
    for (const impl of ['child_process', 'tethered']) {
      const out = execFileSync(process.execPath, ['--expose-gc', self, '--worker', impl, String(bytes)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      results[impl].push(JSON.parse(out))
    }
  }
  const stats = (values) => {
    const sorted = [...values].sort((a, b) => a - b)
    return { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted.at(-1) }
  }
  const fmt = (s, digits = 0) => `${s.min.toFixed(digits)} / ${s.median.toFixed(digits)} / ${s.max.toFixed(digits)}`
  console.log(`head -c ${bytes} /dev/zero → counting consumer, ${runs} runs each (min / median / max)`)
  const summary = {}
  for (const impl of ['child_process', 'tethered']) {
    const speed = stats(results[impl].map((r) => r.mbPerSec))
    const rss = stats(results[impl].map((r) => r.rssGrowthMiB))
    const chunk = stats(results[impl].map((r) => r.avgChunkKiB))
    const cpu = stats(results[impl].map((r) => r.cpuSecPerGiB))
    summary[impl] = { speed, rss }
    console.log(
      `${impl.padEnd(14)} ${fmt(speed)} MB/s   peak RSS growth ${fmt(rss, 1)} MiB   ` +
        `Node CPU ${fmt(cpu, 2)} s/GiB   avg chunk ${chunk.median.toFixed(0)} KiB`,
    )
  }
  const ratio = summary.tethered.speed.median / summary.child_process.speed.median
  console.log(`tethered / child_process (median MB/s): ${ratio.toFixed(2)}×`)
}
