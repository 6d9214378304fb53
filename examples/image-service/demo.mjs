// The image-service demo, start to finish: start the service on 127.0.0.1 at a free port with
// a pool of workers, then, printing every response and every pool event as it happens:
//   1. upload four images at once — they are worked on in parallel, one per worker;
//   2. upload a corrupt JPEG together with a good image, and two more as soon as it has been
//      answered — it crashes the worker that took it and gets a 502; the good ones are served
//      by the other worker, and the crashed slot restarts;
//   3. upload four images at once again — the new worker serves beside the others;
//   4. fire a burst of uploads at once — the bounded queue fills and the rest get 503 with
//      Retry-After, at once;
//   5. upload a decompression bomb (bomb.mjs: 32 KiB of PNG, 1 GiB of pixels), and another
//      image as soon as it has been answered — the worker that takes it dies by its 1 GiB
//      memory limit (502, with its last words), the pool replaces it, the next upload is
//      served, and this process's RSS stays small: the gigabyte was never here;
// then print the pool's stats (with what each slot's last exited worker used) and stop cleanly.
//
//   npm run demo                     (from the repository root; installs what is missing first)
//   npm run demo -- --workers 4      a pool of 4 workers (default 2)
//   npm run demo -- --keep           (or KEEP=1) leaves the service running for a browser
//
// The scenario is exported (runDemo, problems, ...) so the test suite runs exactly this.
import { realpathSync } from 'node:fs'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import sharp from 'sharp'
import { startImageService, workersFlag, QUEUE_PER_WORKER } from './server.mjs'
import { decompressionBomb, BOMB_DECODED_BYTES, BOMB_SIDE } from './bomb.mjs'

/** The longest side of a thumbnail (worker.cjs makes them). */
export const THUMBNAIL_SIZE = 128

/** Width × height a `width` × `height` image's thumbnail has: the longest side 128, never enlarged. */
export function thumbnailSize(width, height) {
  if (width <= THUMBNAIL_SIZE && height <= THUMBNAIL_SIZE) return { width, height }
  return width >= height
    ? { width: THUMBNAIL_SIZE, height: Math.max(1, Math.round((height * THUMBNAIL_SIZE) / width)) }
    : { width: Math.max(1, Math.round((width * THUMBNAIL_SIZE) / height)), height: THUMBNAIL_SIZE }
}

/** Raw RGB(A) pixels made by `colour(x, y) → [r, g, b(, a)]`. */
function pixels(width, height, channels, colour) {
  const data = Buffer.alloc(width * height * channels)
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const c = colour(x / (width - 1), y / (height - 1))
      data.set(c, (y * width + x) * channels)
    }
  }
  return sharp(data, { raw: { width, height, channels } })
}

/**
 * The uploads: images generated with sharp (nothing from the network) and one corrupt JPEG — a real JPEG's headers (SOI, JFIF, tables, frame and scan headers) followed by
 * bytes no decoder accepts.
 */
export async function makeUploads() {
  const sunset = await pixels(640, 480, 3, (u, v) => [255 * (1 - v * 0.6), 120 + 100 * u * (1 - v), 60 + 180 * v]).jpeg({ quality: 85 }).toBuffer()
  const tall = await pixels(300, 900, 4, (u, v) => [40, 120 + 130 * v, 255 * u, 255 * (0.35 + 0.65 * (1 - v))]).png().toBuffer()
  const square = await pixels(1024, 1024, 3, (u, v) => [255 * u, 255 * v, 255 * (1 - Math.hypot(u - 0.5, v - 0.5))]).jpeg({ quality: 80 }).toBuffer()
  const wide = await pixels(1600, 400, 3, (u, v) => [200 * v, 255 * Math.abs(Math.sin(u * Math.PI * 3)), 160]).webp({ quality: 80 }).toBuffer()
  // A photo as phones save them now: AVIF, small to send and slow to decode (about 0.2 s of CPU
  // here), so uploads of it visibly overlap and a burst of them outlasts its own arrival.
  const photo = await pixels(64, 64, 3, (u, v) => [230 - 150 * v, 90 + 120 * u * v, 140 + 100 * Math.cos(u * 3)])
    .resize(2000, 2000, { kernel: 'cubic' })
    .avif({ quality: 50, effort: 0 })
    .toBuffer()
  return [
    { name: 'photo-2000x2000.avif', type: 'image/avif', data: photo, width: 2000, height: 2000, slow: true },
    { name: 'sunset-640x480.jpg', type: 'image/jpeg', data: sunset, width: 640, height: 480 },
    { name: 'tall-300x900.png', type: 'image/png', data: tall, width: 300, height: 900 },
    { name: 'corrupt.jpg', type: 'image/jpeg', data: corruptJpeg(sunset), corrupt: true },
    { name: 'square-1024.jpg', type: 'image/jpeg', data: square, width: 1024, height: 1024 },
    { name: 'wide-1600x400.webp', type: 'image/webp', data: wide, width: 1600, height: 400 },
  ]
}

/** `jpeg`'s bytes up to and including its start-of-scan header, then 4 KiB of garbage. */
export function corruptJpeg(jpeg) {
  let sos = -1
  for (let i = 2; i + 3 < jpeg.length; i++) {
    if (jpeg[i] === 0xff && jpeg[i + 1] === 0xda) {
      sos = i
      break
    }
  }
  if (sos < 0) throw new Error('corruptJpeg: no start-of-scan marker in the JPEG')
  const headerEnd = sos + 2 + jpeg.readUInt16BE(sos + 2)
  const garbage = Buffer.alloc(4096)
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 131 + 7) & 0xff // deterministic
  return Buffer.concat([jpeg.subarray(0, headerEnd), garbage])
}

/**
 * One upload of `upload` to `url`/thumbnails. Returns { label, name, status, ok, start, end,
 * workerPid, workerStart, workerEnd, width, height, format, body, error, retryAfter }, times in
 * ms on the demo's clock (`clock.now()`); a 200's body is checked with sharp (it must decode to
 * an image of the size the headers claim).
 */
async function post(url, upload, label, clock) {
  const start = clock.now()
  const response = await fetch(`${url}/thumbnails?name=${encodeURIComponent(upload.name)}`, {
    method: 'POST',
    headers: { 'Content-Type': upload.type },
    body: upload.data,
    signal: AbortSignal.timeout(60_000),
  })
  const body = Buffer.from(await response.arrayBuffer())
  const result = { label, name: upload.name, status: response.status, ok: response.ok, start, end: clock.now() }
  if (response.ok) {
    const meta = await sharp(body).metadata()
    Object.assign(result, {
      body,
      format: meta.format,
      width: meta.width,
      height: meta.height,
      workerPid: Number(response.headers.get('x-worker-pid')),
      workerStart: clock.fromEpoch(Number(response.headers.get('x-worker-started'))),
      workerEnd: clock.fromEpoch(Number(response.headers.get('x-worker-finished'))),
    })
  } else {
    result.error = JSON.parse(body.toString('utf8')).error
    result.retryAfter = response.headers.get('retry-after')
  }
  return result
}

/**
 * Uploads all of `uploads` at once — or, for those given in `afterFirst`, as soon as the first of
 * `uploads` has been answered; prints each one's start and end (with the worker's pid) as they
 * happen, then a timeline. Resolves with the results, `uploads` then `afterFirst`, each with its
 * `upload`.
 */
async function together(url, uploads, { clock, print, first = 1, afterFirst = [] }) {
  let label = first
  const send = async (upload) => {
    const tag = `#${label++}`
    print(`${clock.stamp()}  → ${tag} POST /thumbnails  ${upload.name} (${upload.type}, ${kb(upload.data.length)})`)
    const r = await post(url, upload, tag, clock)
    if (r.ok) print(`${clock.stamp()}  ← ${tag} 200 ${r.format} ${r.width}×${r.height}, ${kb(r.body.length)}, worker ${r.workerPid}, ${ms(r.end - r.start)}`)
    else print(`${clock.stamp()}  ← ${tag} ${r.status} ${r.error.code}: ${r.error.message}${r.error.reason ? ` [${r.error.reason}]` : ''} (${ms(r.end - r.start)})`)
    return { ...r, upload }
  }
  const sent = uploads.map(send)
  const later = afterFirst.length === 0 ? [] : await Promise.race(sent).then(() => afterFirst.map(send))
  const results = await Promise.all([...sent, ...later])
  timeline(results, print)
  return results
}

/**
 * Each request as a bar on one time scale: ─ while the client waited, █ while a worker worked on
 * it. Bars of different workers stacked over the same columns are uploads served in parallel.
 */
function timeline(results, print, columns = 48) {
  const from = Math.min(...results.map((r) => r.start))
  const to = Math.max(...results.map((r) => r.end))
  const scale = columns / Math.max(to - from, 1)
  const col = (t) => Math.min(columns - 1, Math.max(0, Math.floor((t - from) * scale)))
  const width = Math.max(...results.map((r) => r.name.length))
  print(`           timeline, ${ms(to - from)} across: ─ waiting, █ in a worker`)
  for (const r of results) {
    const bar = Array(columns).fill(' ')
    for (let c = col(r.start); c <= col(r.end); c++) bar[c] = '─'
    if (r.ok) for (let c = col(r.workerStart); c <= col(r.workerEnd); c++) bar[c] = '█'
    const who = r.ok ? `worker ${r.workerPid}` : `${r.status}`
    print(`           ${r.label.padStart(3)} ${r.name.padEnd(width)} |${bar.join('')}| ${who}`)
  }
}

function kb(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`
}

function ms(n) {
  return `${Math.round(n)} ms`
}

/** Resolves with the first 'spawn' of slot `worker` recorded after `events[after]`, waiting for it if need be. */
async function respawnOf(pool, events, worker, after, timeout) {
  const seen = events.slice(after + 1).find((e) => e.name === 'spawn' && e.value.worker === worker)
  if (seen) return seen.value
  const signal = AbortSignal.timeout(timeout)
  for (;;) {
    const [value] = await once(pool, 'spawn', { signal })
    if (value.worker === worker) return value
  }
}

/** Pairs of results worked on at the same time (by the workers' own clocks) by different workers. */
export function overlapping(results) {
  const served = results.filter((r) => r.ok)
  const pairs = []
  for (const [i, a] of served.entries()) {
    for (const b of served.slice(i + 1)) {
      if (a.workerPid !== b.workerPid && a.workerStart < b.workerEnd && b.workerStart < a.workerEnd) pairs.push([a, b])
    }
  }
  return pairs
}

/** Did the run go the way the demo promises? A list of what did not (empty: all good). */
export function problems(run) {
  const { workers, phases, events, crash, bomb } = run
  const found = []
  const checkServed = (phase, results) => {
    for (const r of results) {
      if (r.upload.corrupt) continue
      const want = thumbnailSize(r.upload.width, r.upload.height)
      if (r.status !== 200) found.push(`${phase} ${r.label} ${r.name}: expected 200, got ${r.status} ${r.error?.code}`)
      else if (r.width !== want.width || r.height !== want.height) found.push(`${phase} ${r.label} ${r.name}: thumbnail ${r.width}×${r.height}, expected ${want.width}×${want.height}`)
    }
  }

  checkServed('parallel', phases.parallel)
  if (workers >= 2 && overlapping(phases.parallel).length === 0) found.push('parallel: no two uploads were worked on at the same time by different workers')

  const corrupt = phases.crash.find((r) => r.upload.corrupt)
  if (corrupt.status !== 502 || corrupt.error?.code !== 'ERR_WORKER_EXITED') found.push(`crash: the corrupt upload expected 502 ERR_WORKER_EXITED, got ${corrupt.status} ${corrupt.error?.code}`)
  checkServed('crash', phases.crash)
  const crashes = events.filter((e) => e.name === 'crashed')
  if (crashes.length !== 2) found.push(`expected exactly two crashes (the corrupt JPEG, the bomb), saw ${crashes.length}`)
  if (!crash.respawned) found.push('the crashed worker was not restarted')
  else if (crash.respawned.pid === crash.pid) found.push('the restarted worker has the crashed one’s pid')
  if (workers >= 2) for (const r of phases.crash) if (r.ok && r.workerPid === crash.pid) found.push(`crash ${r.label}: served by the worker that crashed`)

  // Not checked for overlap: a fresh worker is still loading sharp when its first upload comes.
  checkServed('after restart', phases.restarted)
  if (crash.respawned && !phases.restarted.some((r) => r.workerPid === crash.respawned.pid)) found.push('after restart: the restarted worker served nothing')

  const refused = phases.burst.filter((r) => r.status === 503)
  const other = phases.burst.filter((r) => r.status !== 503 && r.status !== 200)
  if (refused.length === 0) found.push('burst: no upload was refused with 503 although the queue was full')
  for (const r of refused) {
    if (r.error?.code !== 'ERR_POOL_QUEUE_FULL' || r.retryAfter === null) found.push(`burst ${r.label}: 503 expected ERR_POOL_QUEUE_FULL with Retry-After, got ${r.error?.code}, Retry-After ${r.retryAfter}`)
  }
  for (const r of other) found.push(`burst ${r.label}: expected 200 or 503, got ${r.status} ${r.error?.code}`)
  checkServed('burst', phases.burst.filter((r) => r.status !== 503))

  const [bombed, ...next] = phases.bomb
  if (bombed.status !== 502 || bombed.error?.code !== 'ERR_WORKER_EXITED' || !bombed.error.reason) found.push(`bomb: expected 502 ERR_WORKER_EXITED with a reason, got ${bombed.status} ${bombed.error?.code}`)
  checkServed('after the bomb', next)
  if (!bomb.crashed) found.push('bomb: no worker crashed on it')
  else if (bomb.crashed.resourceUsage.maxRss > BOMB_DECODED_BYTES / 2) found.push(`bomb: the worker's peak RSS ${mib(bomb.crashed.resourceUsage.maxRss)} is past its limit`)
  if (!bomb.respawned) found.push('bomb: the worker that took it was not replaced')
  if (bomb.hostPeakRss > BOMB_DECODED_BYTES / 2) found.push(`bomb: this process's peak RSS ${mib(bomb.hostPeakRss)} — it held the pixels`)
  return found
}

function mib(bytes) {
  return `${(bytes / 2 ** 20).toFixed(1)} MiB`
}

/**
 * The whole demo: starts the service with `workers` workers, runs the five phases, prints a
 * summary. Returns { url, workers, uploads, phases: { parallel, crash, restarted, burst, bomb },
 * crash: { worker, pid, respawned }, bomb: { upload, crashed, respawned, hostRssBefore,
 * hostRssAfter, hostPeakRss }, events, pids, stats, problems, service }; each result carries its
 * `upload`; `bomb.crashed` is the 'crashed' event of the worker the bomb killed. Unless `keep`, the service is closed (server and pool) before it
 * returns. `print` receives each line of the transcript.
 */
export async function runDemo({ keep = false, print = console.log, workers = 2, serviceOptions = {} } = {}) {
  const t0 = performance.now()
  const clock = {
    now: () => performance.now() - t0,
    fromEpoch: (epochMs) => epochMs - performance.timeOrigin - t0,
    stamp: () => `${((performance.now() - t0) / 1000).toFixed(3).padStart(7)}s`,
  }
  const events = []
  const pids = []
  const service = await startImageService({
    workers,
    ...serviceOptions,
    onEvent(name, value) {
      events.push({ name, value, at: clock.now() })
      if (name === 'spawn') pids.push(value.pid)
      print(`${clock.stamp()}  pool ${name.padEnd(10)} ${JSON.stringify(value)}`)
    },
    onWorkerOutput(stream, chunk, { pid }) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) print(`${clock.stamp()}  worker ${pid} ${stream}: ${line}`)
    },
  })
  try {
    const maxQueue = serviceOptions.maxQueue ?? QUEUE_PER_WORKER * workers
    print(`${clock.stamp()}  listening on ${service.url}, ${workers} workers (pids ${pids.join(', ')}), queue bound ${maxQueue}`)
    const uploads = await makeUploads()
    const good = uploads.filter((u) => !u.corrupt)
    const corrupt = uploads.find((u) => u.corrupt)
    const slow = good.find((u) => u.slow)
    let next = 1
    const run = async (title, batch, afterFirst = []) => {
      print('')
      print(title)
      const results = await together(service.url, batch, { clock, print, first: next, afterFirst })
      next += results.length
      return results
    }

    const phases = {}
    const parallel = workers >= 2 ? `served in parallel by ${workers} workers` : 'served in turn by the one worker'
    phases.parallel = await run(`1. ${good.length} uploads at once, ${parallel}`, good)

    // The corrupt JPEG goes with the slow AVIF, so they are on different workers; the next two
    // uploads go as soon as the corrupt one's 502 is back, while its slot restarts.
    const before = events.length - 1
    phases.crash = await run(
      `2. a corrupt JPEG beside the AVIF: it crashes the worker that took it (502)${workers >= 2 ? '; the other worker goes on serving' : ''}`,
      [corrupt, slow],
      good.filter((u) => !u.slow).slice(0, 2),
    )
    const crashedAt = events.findIndex((e, i) => i > before && e.name === 'crashed')
    const crash = { worker: null, pid: null, respawned: null }
    if (crashedAt >= 0) {
      Object.assign(crash, { worker: events[crashedAt].value.worker, pid: events[crashedAt].value.pid })
      crash.respawned = await respawnOf(service.pool, events, crash.worker, crashedAt, 15_000).catch(() => null)
      print(`${clock.stamp()}  worker slot ${crash.worker}: pid ${crash.pid} crashed, ${crash.respawned ? `pid ${crash.respawned.pid} took its place` : 'not restarted'}`)
    }

    phases.restarted = await run(`3. ${good.length} uploads at once again: the restarted worker serves${workers >= 2 ? ' beside the others' : ''}`, good)

    const burstSize = 3 * (workers + maxQueue)
    print('')
    print(`4. a burst of ${burstSize} uploads at once against ${workers} workers and a queue of ${maxQueue}: what the queue cannot hold is refused at once`)
    const burstStart = clock.now()
    const burst = await Promise.all(Array.from({ length: burstSize }, (_, i) => post(service.url, slow, `#${next + i}`, clock)))
    next += burstSize
    phases.burst = burst.map((r) => ({ ...r, upload: slow }))
    const served = phases.burst.filter((r) => r.ok)
    const refused = phases.burst.filter((r) => r.status === 503)
    const perPid = new Map()
    for (const r of served) perPid.set(r.workerPid, (perPid.get(r.workerPid) ?? 0) + 1)
    const byPid = [...perPid].map(([pid, count]) => `${count} by worker ${pid}`)
    const after = (results) => ms(Math.max(...results.map((r) => r.end)) - burstStart)
    if (refused.length > 0) {
      print(`${clock.stamp()}  ← ${refused.length} × 503 ${refused[0].error.code}, Retry-After: ${refused[0].retryAfter} — refused as they arrived, the last ${after(refused)} into the burst`)
    }
    print(`${clock.stamp()}  ← ${served.length} × 200 (${byPid.join(', ')}), the last ${after(served)} into the burst`)
    for (const r of phases.burst.filter((r) => !r.ok && r.status !== 503)) print(`${clock.stamp()}  ← ${r.label} ${r.status} ${r.error.code}`)

    // Made here, in this process, without ever holding its pixels (see bomb.mjs).
    const bombUpload = { name: `bomb-${BOMB_SIDE}x${BOMB_SIDE}.png`, type: 'image/png', data: await decompressionBomb(), bomb: true }
    const bomb = { upload: bombUpload, crashed: null, respawned: null, hostRssBefore: process.memoryUsage.rss() }
    const beforeBomb = events.length - 1
    phases.bomb = await run(
      `5. a decompression bomb: ${kb(bombUpload.data.length)} of PNG, ${mib(BOMB_DECODED_BYTES)} of pixels. The worker that takes it dies by its 1 GiB memory limit (502); the pool replaces it; the next upload is served`,
      [bombUpload],
      good.filter((u) => !u.slow).slice(0, 1),
    )
    const bombedAt = events.findIndex((e, i) => i > beforeBomb && e.name === 'crashed')
    if (bombedAt >= 0) {
      bomb.crashed = events[bombedAt].value
      const { worker, pid, code, signal, resourceUsage: used } = bomb.crashed
      bomb.respawned = await respawnOf(service.pool, events, worker, bombedAt, 15_000).catch(() => null)
      print(`${clock.stamp()}  worker slot ${worker}: pid ${pid} ${signal ? `killed by ${signal}` : `exited ${code}`} at ${mib(used.maxRss)} peak RSS, ${ms(used.userCpuMs + used.systemCpuMs)} of CPU; ${bomb.respawned ? `pid ${bomb.respawned.pid} took its place` : 'not replaced'}`)
    }
    bomb.hostRssAfter = process.memoryUsage.rss()
    bomb.hostPeakRss = process.resourceUsage().maxRSS * 1024
    print(`${clock.stamp()}  this process (the host): RSS ${mib(bomb.hostRssBefore)} before the bomb, ${mib(bomb.hostRssAfter)} after; its peak over the whole run ${mib(bomb.hostPeakRss)}`)

    const stats = service.pool.stats()
    const result = { url: service.url, workers, uploads, phases, crash, bomb, events, pids, stats, service }
    result.problems = problems(result)

    const all = Object.values(phases).flat()
    print('')
    print('Summary')
    print(`  uploads:   ${all.length} — ${all.filter((r) => r.ok).length} thumbnails, ${refused.length} refused with 503 (queue full), ${all.filter((r) => r.status === 502).length} 502 (the corrupt JPEG, the bomb)`)
    print(`  pool:      ${stats.state}; completed ${stats.completed}, failed ${stats.failed} (queue full ${stats.rejected.queueFull}, worker exited ${stats.rejected.workerExited}); ${stats.crashes} crashes, ${stats.restarts} restarts; latency p50 ${stats.latencyMs.p50?.toFixed(0)} ms, p99 ${stats.latencyMs.p99?.toFixed(0)} ms`)
    for (const w of stats.workers) {
      const last = w.lastExitUsage
      const lastExit = last ? `; its last exited worker peaked at ${mib(last.maxRss)}, ${ms(last.userCpuMs + last.systemCpuMs)} of CPU` : ''
      print(`  worker ${w.worker}:  pid ${w.pid} ${w.state}, served ${w.served}, crashes ${w.crashes}, RSS ${w.rss === null ? '—' : mib(w.rss)}${lastExit}`)
    }
    print(`  pids:      ${pids.join(', ')}`)
    const promised = workers >= 2
      ? 'uploads served in parallel, the corrupt one alone got a 502 while the other workers kept serving, its worker restarted, the burst past the queue got 503 at once, and the bomb cost one worker, not this process'
      : 'the corrupt upload alone got a 502, its worker restarted, the burst past the queue got 503 at once, and the bomb cost one worker, not this process'
    print(`  verdict:   ${result.problems.length === 0 ? `as promised — ${promised}` : 'PROBLEMS: ' + result.problems.join('; ')}`)

    if (!keep) {
      await service.close()
      print(`${clock.stamp()}  stopped: server closed, pool ${service.pool.state}, ${service.pool.size} workers`)
    }
    return result
  } catch (error) {
    await service.close().catch(() => {})
    throw error
  }
}

async function main() {
  let keep, workers
  try {
    const { values } = parseArgs({ options: { workers: { type: 'string' }, keep: { type: 'boolean', default: false } } })
    keep = values.keep || ['1', 'true', 'yes'].includes(process.env.KEEP ?? '')
    workers = workersFlag(values.workers)
  } catch (error) {
    console.error(`${error.message}\nusage: node demo.mjs [--workers N] [--keep]`)
    process.exitCode = 2
    return
  }
  const { problems: found, service, url } = await runDemo({ keep, workers })
  if (!keep) {
    process.exitCode = found.length === 0 ? 0 : 1
    return
  }
  console.log(`\nThe service keeps running: open ${url}/ in a browser (Ctrl-C stops it).`)
  const stop = async (signal) => {
    console.log(`\n${signal}: stopping ...`)
    await service.close()
    console.log(`stopped: pool ${service.pool.state}`)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  main().catch((error) => {
    console.error(error)
    process.exitCode = 1
  })
}
