// Small measuring helpers shared by the benchmarks in this directory. Nothing here knows about
// tethered: timing, a worker pool, statistics, memory readings from /proc and table printing.

import { execFile } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

export const MiB = 1024 * 1024

/** Milliseconds since an arbitrary origin, sub-millisecond resolution. */
export function nowMs() {
  return Number(process.hrtime.bigint()) / 1e6
}

/**
 * Runs `task(i)` for i in [0, total) with at most `concurrency` calls in flight. Rejects with the
 * first failure (tasks already in flight still finish, no new ones start). With `stopAt` (a
 * `nowMs()` time), no new call starts after that moment. Resolves with the number of calls made.
 */
export async function pool(total, concurrency, task, { stopAt = Infinity } = {}) {
  let next = 0
  let failed = null
  async function worker() {
    while (failed === null && next < total && nowMs() < stopAt) {
      const i = next++
      try {
        await task(i)
      } catch (err) {
        failed ??= err
      }
    }
  }
  const workers = []
  for (let w = 0; w < Math.min(concurrency, total); w++) workers.push(worker())
  await Promise.all(workers)
  if (failed !== null) throw failed
  return next
}

/**
 * Times `total` calls of `task` at the given concurrency (1 = sequential) and returns
 * `{ opsPerSec, elapsedMs, done, loopDelay }`. `loopDelay` holds the event-loop delay
 * percentiles (ms) seen while the calls ran, when `trackLoop` is set, sampled every
 * `loopResolution` ms. With `budgetMs`, no new call starts once that much time has passed, so
 * `done` (the calls made) may be less than `total`.
 */
export async function measureOps(task, { total, concurrency = 1, trackLoop = false, loopResolution = 5, budgetMs = Infinity }) {
  const histogram = trackLoop ? monitorEventLoopDelay({ resolution: loopResolution }) : null
  histogram?.enable()
  const start = nowMs()
  const done = await pool(total, concurrency, task, { stopAt: start + budgetMs })
  const elapsedMs = nowMs() - start
  histogram?.disable()
  const loopDelay = histogram && {
    p50: histogram.percentile(50) / 1e6,
    p99: histogram.percentile(99) / 1e6,
    max: histogram.max / 1e6,
    samples: histogram.count,
  }
  return { opsPerSec: (done * 1000) / elapsedMs, elapsedMs, done, loopDelay }
}

/** `{ n, min, median, max }` of a list of numbers (empty list → nulls). */
export function summarize(values) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  const n = sorted.length
  if (n === 0) return { n, min: null, median: null, max: null }
  const mid = Math.floor(n / 2)
  const median = n % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
  return { n, min: sorted[0], median, max: sorted[n - 1] }
}

/** The `p`-th percentile (0–100, nearest rank) of a list of numbers, or null when it is empty. */
export function percentile(values, p) {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b)
  if (sorted.length === 0) return null
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]
}

/** Runs a full garbage collection a few times when Node was started with --expose-gc. */
export function forceGc() {
  if (typeof globalThis.gc !== 'function') return false
  for (let i = 0; i < 3; i++) globalThis.gc()
  return true
}

/** A field of /proc/self/status in bytes (VmRSS, VmHWM, ...), or null when unreadable. */
export function procStatusBytes(field) {
  try {
    const status = readFileSync('/proc/self/status', 'utf8')
    const match = status.match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'))
    return match ? Number(match[1]) * 1024 : null
  } catch {
    return null
  }
}

/**
 * Resets this process's peak RSS (VmHWM) to its current RSS (Linux ≥ 4.0: writing 5 to
 * /proc/self/clear_refs). Returns false when the kernel refused.
 */
export function resetPeakRss() {
  try {
    writeFileSync('/proc/self/clear_refs', '5')
    return true
  } catch {
    return false
  }
}

/** Formats a number with a fixed number of significant-looking decimals; null → '–'. */
export function fmt(value, decimals = 0) {
  if (value === null || value === undefined || !Number.isFinite(value)) return '–'
  return value.toLocaleString('en-US', {
    minimumFractionDigits: decimals,
    maximumFractionDigits: decimals,
  })
}

/** `min / median / max` of a summary, formatted. */
export function fmtSpread(summary, decimals = 0) {
  return `${fmt(summary.min, decimals)} / ${fmt(summary.median, decimals)} / ${fmt(summary.max, decimals)}`
}

/** A GitHub-flavoured markdown table; numeric-looking columns are right-aligned. */
export function markdownTable(headers, rows, rightAligned = []) {
  const cells = [headers, ...rows].map((row) => row.map((cell) => String(cell)))
  const widths = headers.map((_, c) => Math.max(3, ...cells.map((row) => row[c].length)))
  const line = (row) =>
    `| ${row
      .map((cell, c) => (rightAligned.includes(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join(' | ')} |`
  const rule = `|${widths
    .map((w, c) => (rightAligned.includes(c) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2)))
    .join('|')}|`
  return [line(cells[0]), rule, ...cells.slice(1).map(line)].join('\n')
}

/**
 * Which native addon `../index.js` loads (the napi loader honours NAPI_RS_NATIVE_LIBRARY_PATH)
 * and whether it carries DWARF debug info, i.e. is a debug build whose numbers mean little.
 */
export function describeNativeAddon() {
  const path =
    process.env.NAPI_RS_NATIVE_LIBRARY_PATH ||
    fileURLToPath(new URL('../tethered.linux-x64-gnu.node', import.meta.url))
  try {
    const bytes = readFileSync(path)
    return { path, size: bytes.length, debugBuild: elfSectionNames(bytes).includes('.debug_info') }
  } catch (err) {
    return { path, size: null, debugBuild: null, error: err.message }
  }
}

/** Section names of a little-endian ELF64 file ([] when it is not one). */
function elfSectionNames(bytes) {
  if (bytes.length < 64 || bytes.readUInt32BE(0) !== 0x7f454c46 || bytes[4] !== 2 || bytes[5] !== 1) return []
  const shoff = Number(bytes.readBigUInt64LE(0x28))
  const shentsize = bytes.readUInt16LE(0x3a)
  const shnum = bytes.readUInt16LE(0x3c)
  const shstrndx = bytes.readUInt16LE(0x3e)
  if (shoff === 0 || shoff + shnum * shentsize > bytes.length || shstrndx >= shnum) return []
  const header = (i) => shoff + i * shentsize
  const strtab = Number(bytes.readBigUInt64LE(header(shstrndx) + 0x18))
  const names = []
  for (let i = 0; i < shnum; i++) {
    const start = strtab + bytes.readUInt32LE(header(i))
    const end = bytes.indexOf(0, start)
    if (end > start) names.push(bytes.toString('latin1', start, end))
  }
  return names
}

// The measuring child in flight, killed if this process exits early (EPIPE, error, Ctrl-C).
let runningChild = null
process.on('exit', () => {
  if (runningChild && runningChild.exitCode === null && runningChild.signalCode === null) runningChild.kill('SIGKILL')
})

/**
 * Runs `node <args>` (a measurement in a fresh process) and returns the JSON its last stdout
 * line holds, or `{ error }` with the tail of its stderr.
 */
export async function runJsonChild(args, { timeout }) {
  try {
    const pending = promisify(execFile)(process.execPath, args, { timeout, killSignal: 'SIGKILL', maxBuffer: 64 * MiB })
    runningChild = pending.child
    const { stdout } = await pending
    const lines = stdout.trim().split('\n')
    return JSON.parse(lines[lines.length - 1])
  } catch (err) {
    return { error: (err.stderr || err.message || String(err)).trim().split('\n').slice(-3).join(' ') }
  } finally {
    runningChild = null
  }
}
