// `npm run bench`: every benchmark in turn, each against child_process (and execa where it
// applies) in the same run, then bench/results.svg — spawn latency against the memory the Node
// process holds, tethered vs child_process — drawn from bench/results-memory.json.
//
//   node bench/all.mjs           full run (~13-15 minutes on 2 cores)
//   node bench/all.mjs --quick   smoke run: every script with its --quick flag where it has one
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const quick = process.argv.includes('--quick')
const steps = [
  ['spawn throughput, event-loop delay, collect 256 MiB', 'spawn.mjs', quick ? ['--quick'] : []],
  ['spawn latency against parent memory (0 and 1 GiB)', 'spawn-memory.mjs', ['--mib', '1024', ...(quick ? ['--quick'] : [])]],
  ['spawn latency against parent memory (0 and 2 GiB)', 'spawn-memory.mjs', quick ? ['--quick'] : []],
  ['streaming 1 GiB', 'stream.mjs', quick ? ['--runs', '1', '--bytes', '268435456'] : []],
  ['IPC round trips', 'ipc.mjs', quick ? ['1'] : []],
  ['Pool against workerpool and a fork() pool', 'pool.mjs', quick ? ['--quick'] : []],
]

const memoryRuns = []
for (const [title, script, args] of steps) {
  console.log(`\n######## ${title}: node bench/${script} ${args.join(' ')}\n`)
  const run = spawnSync(process.execPath, [join(here, script), ...args], { stdio: 'inherit' })
  if (run.status !== 0) {
    console.error(`bench/${script} failed (status ${run.status}, signal ${run.signal})`)
    process.exit(1)
  }
  if (script === 'spawn-memory.mjs') {
    memoryRuns.push(JSON.parse(readFileSync(join(here, 'results-memory.json'), 'utf8')))
  }
}

// Median spawn latency per contender and MiB held, over every memory run.
const points = new Map()
for (const result of memoryRuns) {
  for (const samples of Object.values(result.raw)) {
    const latencies = samples.flatMap((s) => s.latencies)
    const [contender, mib] = [samples[0].contender, samples[0].mib]
    const sorted = latencies.sort((a, b) => a - b)
    const series = points.get(contender) ?? new Map()
    series.set(mib, sorted[Math.floor(sorted.length / 2)])
    points.set(contender, series)
  }
}
writeFileSync(join(here, 'results.svg'), chart(points))
console.log(`\nWrote ${join(here, 'results.svg')}`)

function chart(series) {
  const width = 640
  const height = 360
  const left = 70
  const bottom = 300
  const top = 40
  const right = 560
  const all = [...series.values()].flatMap((m) => [...m.entries()])
  const maxMib = Math.max(...all.map(([mib]) => mib), 1)
  const maxMs = Math.max(...all.map(([, ms]) => ms), 1)
  // Log scale: tethered's ~1 ms and child_process's ~100 ms both stay readable.
  const logMax = Math.log10(maxMs * 2)
  const logMin = Math.log10(0.1)
  const x = (mib) => left + ((right - left) * mib) / maxMib
  const y = (ms) => bottom - ((bottom - top) * (Math.log10(ms) - logMin)) / (logMax - logMin)
  const colors = { tethered: '#1b7f3b', 'child_process.spawn': '#b5361d' }
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="22" text-anchor="middle" font-size="14">Median spawn latency of /bin/true vs Buffers held by the Node process (log scale)</text>`,
    `<line x1="${left}" y1="${bottom}" x2="${right}" y2="${bottom}" stroke="black"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${bottom}" stroke="black"/>`,
    `<text x="${(left + right) / 2}" y="${bottom + 40}" text-anchor="middle">MiB of filled Buffers held</text>`,
    `<text x="18" y="${(top + bottom) / 2}" text-anchor="middle" transform="rotate(-90 18 ${(top + bottom) / 2})">ms per spawn</text>`,
  ]
  for (const ms of [0.1, 1, 10, 100, 1000].filter((v) => Math.log10(v) <= logMax)) {
    parts.push(`<line x1="${left}" y1="${y(ms)}" x2="${right}" y2="${y(ms)}" stroke="#ddd"/>`)
    parts.push(`<text x="${left - 6}" y="${y(ms) + 4}" text-anchor="end">${ms}</text>`)
  }
  const mibs = [...new Set(all.map(([mib]) => mib))].sort((a, b) => a - b)
  for (const mib of mibs) parts.push(`<text x="${x(mib)}" y="${bottom + 18}" text-anchor="middle">${mib}</text>`)
  let legend = 0
  for (const [contender, values] of series) {
    const color = colors[contender] ?? '#333'
    const sorted = [...values.entries()].sort((a, b) => a[0] - b[0])
    parts.push(`<polyline fill="none" stroke="${color}" stroke-width="2" points="${sorted.map(([m, ms]) => `${x(m)},${y(ms)}`).join(' ')}"/>`)
    for (const [m, ms] of sorted) {
      parts.push(`<circle cx="${x(m)}" cy="${y(ms)}" r="4" fill="${color}"/>`)
      // tethered's labels go below its line, child_process's above, so they never overlap at 0.
      const dy = contender === 'tethered' ? 18 : -8
      parts.push(`<text x="${x(m) + 6}" y="${y(ms) + dy}" fill="${color}">${ms.toFixed(ms < 10 ? 2 : 0)} ms</text>`)
    }
    parts.push(`<text x="${left + 12}" y="${top + 14 + legend * 16}" fill="${color}">● ${contender}</text>`)
    legend++
  }
  parts.push('</svg>')
  return parts.join('\n') + '\n'
}
