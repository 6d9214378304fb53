// The image-service demo, start to finish: start the service on 127.0.0.1 at a free port,
// upload a few images generated with sharp and one corrupt JPEG, print every response and every
// supervisor event as it happens, print a summary, stop cleanly.
//
//   npm run demo                     (from the repository root; installs what is missing first)
//   npm run demo -- --keep           (or KEEP=1) leaves the service running for a browser
//
// The scenario is exported (runDemo, runScenario, ...) so the test suite runs exactly this.
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import sharp from 'sharp'
import { startImageService } from './server.mjs'

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
 * The uploads, in order: images generated with sharp (nothing from the network) and one
 * corrupt JPEG — a real JPEG's headers (SOI, JFIF, tables, frame and scan headers) followed by
 * bytes no decoder accepts.
 */
export async function makeUploads() {
  const sunset = await pixels(640, 480, 3, (u, v) => [255 * (1 - v * 0.6), 120 + 100 * u * (1 - v), 60 + 180 * v]).jpeg({ quality: 85 }).toBuffer()
  const tall = await pixels(300, 900, 4, (u, v) => [40, 120 + 130 * v, 255 * u, 255 * (0.35 + 0.65 * (1 - v))]).png().toBuffer()
  const square = await pixels(1024, 1024, 3, (u, v) => [255 * u, 255 * v, 255 * (1 - Math.hypot(u - 0.5, v - 0.5))]).jpeg({ quality: 80 }).toBuffer()
  const wide = await pixels(1600, 400, 3, (u, v) => [200 * v, 255 * Math.abs(Math.sin(u * Math.PI * 3)), 160]).webp({ quality: 80 }).toBuffer()
  return [
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
 * Uploads each of `uploads` to `url`/thumbnails in turn and returns what came back:
 * { name, status, ok, bytes, width, height, format, workerPid, error, ms }. A 200 is checked
 * with sharp (the body must decode to an image of the size the headers claim).
 */
export async function runScenario(url, uploads, { print = console.log } = {}) {
  const results = []
  for (const upload of uploads) {
    const started = performance.now()
    print(`→ POST /thumbnails  ${upload.name} (${upload.type}, ${kb(upload.data.length)})`)
    const response = await fetch(`${url}/thumbnails?name=${encodeURIComponent(upload.name)}`, {
      method: 'POST',
      headers: { 'Content-Type': upload.type },
      body: upload.data,
      signal: AbortSignal.timeout(60_000),
    })
    const body = Buffer.from(await response.arrayBuffer())
    const result = { name: upload.name, status: response.status, ok: response.ok, ms: Math.round(performance.now() - started) }
    if (response.ok) {
      const meta = await sharp(body).metadata()
      Object.assign(result, {
        bytes: body.length,
        body,
        format: meta.format,
        width: meta.width,
        height: meta.height,
        workerPid: Number(response.headers.get('x-worker-pid')),
      })
      print(`← ${result.status} ${result.format} thumbnail ${result.width}×${result.height}, ${kb(result.bytes)}, worker ${result.workerPid}, ${result.ms} ms`)
    } else {
      result.error = JSON.parse(body.toString('utf8')).error
      print(`← ${result.status} ${result.error.code}: ${result.error.message} (${result.ms} ms)`)
    }
    results.push(result)
  }
  return results
}

function kb(bytes) {
  return bytes < 1024 ? `${bytes} B` : `${(bytes / 1024).toFixed(1)} KiB`
}

/** Did the run go the way the demo promises? A list of what did not (empty: all good). */
export function problems(uploads, results, events) {
  const found = []
  uploads.forEach((upload, i) => {
    const r = results[i]
    if (upload.corrupt) {
      if (r.status !== 502 || r.error?.code !== 'ERR_WORKER_EXITED') found.push(`${upload.name}: expected 502 ERR_WORKER_EXITED, got ${r.status}`)
    } else {
      const want = thumbnailSize(upload.width, upload.height)
      if (r.status !== 200) found.push(`${upload.name}: expected 200, got ${r.status}`)
      else if (r.width !== want.width || r.height !== want.height) found.push(`${upload.name}: thumbnail ${r.width}×${r.height}, expected ${want.width}×${want.height}`)
    }
  })
  const restarts = events.filter((e) => e.name === 'restarting').length
  if (restarts !== uploads.filter((u) => u.corrupt).length) found.push(`expected one restart per corrupt upload, saw ${restarts}`)
  return found
}

/**
 * The whole demo: starts the service, runs the scenario, prints a summary. Returns
 * { url, uploads, results, events, pids, problems, service }; unless `keep`, the service is
 * closed (server and worker) before it returns. `print` receives each line of the transcript.
 */
export async function runDemo({ keep = false, print = console.log, serviceOptions = {} } = {}) {
  const t0 = performance.now()
  const stamp = () => `${((performance.now() - t0) / 1000).toFixed(3).padStart(7)}s`
  const events = []
  const pids = []
  const service = await startImageService({
    ...serviceOptions,
    onEvent(name, value) {
      events.push({ name, value, at: performance.now() - t0 })
      if (name === 'spawn') pids.push(value.pid)
      print(`${stamp()}  supervisor ${name.padEnd(10)} ${JSON.stringify(value)}`)
    },
    onWorkerOutput(stream, chunk) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) print(`${stamp()}  worker ${stream}: ${line}`)
    },
  })
  let results
  try {
    print(`${stamp()}  listening on ${service.url} (worker pid ${service.supervisor.pid})`)
    const uploads = await makeUploads()
    const timed = (line) => print(`${stamp()}  ${line}`)
    results = await runScenario(service.url, uploads, { print: timed })
    const found = problems(uploads, results, events)
    const status = service.status()

    print('')
    print('Summary')
    print(`  uploads:   ${results.length} — ${results.filter((r) => r.ok).length} thumbnails, ${results.filter((r) => !r.ok).map((r) => `${r.status} for ${r.name}`).join(', ') || 'no failures'}`)
    print(`  worker:    pid ${pids.join(' → ')}; ${status.crashes} crash, ${status.restarts} restart; now ${status.state}, restartCount ${status.restartCount}`)
    print(`  verdict:   ${found.length === 0 ? 'as promised — the corrupt upload got a 502, never a 200 without a thumbnail, and the next upload was served' : 'PROBLEMS: ' + found.join('; ')}`)

    if (!keep) {
      await service.close()
      print(`${stamp()}  stopped: server closed, supervisor ${service.supervisor.state}, worker pid ${service.supervisor.pid ?? 'none'}`)
    }
    return { url: service.url, uploads, results, events, pids, problems: found, service }
  } catch (error) {
    await service.close().catch(() => {})
    throw error
  }
}

async function main() {
  const keep = process.argv.includes('--keep') || ['1', 'true', 'yes'].includes(process.env.KEEP ?? '')
  const { problems: found, service, url } = await runDemo({ keep })
  if (!keep) {
    process.exitCode = found.length === 0 ? 0 : 1
    return
  }
  console.log(`\nThe service keeps running: open ${url}/ in a browser (Ctrl-C stops it).`)
  const stop = async (signal) => {
    console.log(`\n${signal}: stopping ...`)
    await service.close()
    console.log(`stopped: supervisor ${service.supervisor.state}`)
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
