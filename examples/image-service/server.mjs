// The image service: an Express 5 app whose thumbnails are made by a sharp worker process that
// tethered's Supervisor keeps alive. A worker that crashes on a corrupt upload is restarted with
// backoff; the upload it was working on gets a 502 — never a 200 without a thumbnail — and the
// next upload is served by the new worker.
//
//   POST /thumbnails   raw image body (Content-Type: image/*) → 200 image/png, a 128 px thumbnail
//   GET  /workers      the supervised worker as JSON (pid, state, restartCount, uptime, ...)
//   GET  /             a small page showing the same, refreshed every second
import { readFileSync } from 'node:fs'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import express from 'express'
// In your own app: `import { Supervisor } from 'tethered'`. The demo loads the package from the
// repository it lives in (see README.md, "The image-service demo").
import { Supervisor } from '../../index.mjs'

export const WORKER_PATH = fileURLToPath(new URL('./worker.cjs', import.meta.url))
const PAGE = readFileSync(new URL('./index.html', import.meta.url), 'utf8')

/** The Supervisor's events the service records and hands to `onEvent`. */
export const SUPERVISOR_EVENTS = ['spawn', 'exit', 'crashed', 'restarting', 'exhausted', 'unresponsive', 'error']

/** How a failed request() becomes an HTTP answer. */
const FAILURES = {
  ERR_WORKER_EXITED: [502, 'The image worker crashed while making this thumbnail (it is being restarted); the upload was not processed.'],
  ERR_TIMEOUT: [504, 'The image worker did not answer in time; the upload was not processed.'],
  ERR_IPC_CHANNEL_CLOSED: [503, 'No image worker is running right now; try again shortly.'],
  ERR_WORKER_REQUEST_FAILED: [500, 'The image worker could not make a thumbnail.'],
}

/**
 * Starts the service on `host`:`port` (port 0: a free one) with one supervised worker.
 * Resolves once it listens and the worker runs, with `{ url, server, supervisor, status(),
 * close() }`. `onEvent(name, value)` sees every supervisor event as it happens; `onWorkerOutput`
 * every chunk the worker writes to stdout/stderr.
 */
export async function startImageService({
  host = '127.0.0.1',
  port = 0,
  onEvent = () => {},
  onWorkerOutput = (stream, chunk) => process[stream].write(chunk),
  supervisorOptions = {},
  requestTimeout = 30_000,
  waitForWorker = 10_000,
} = {}) {
  const supervisor = new Supervisor({
    modulePath: WORKER_PATH,
    restartDelay: 500, // 500 ms, then 1 s, 2 s, ... up to maxRestartDelay
    maxRestartDelay: 10_000,
    maxRestarts: 5,
    healthCheckInterval: 5_000,
    healthCheckTimeout: 5_000,
    stopTimeout: 5_000,
    stdio: 'pipe',
    ...supervisorOptions,
  })

  // Totals since the service started; the supervisor's own restartCount counts consecutive
  // crashes and goes back to 0 as soon as a new worker answers anything.
  const stats = { spawnedAt: null, restarts: 0, crashes: 0, lastCrash: null, served: 0, failed: 0 }
  supervisor.on('spawn', () => (stats.spawnedAt = Date.now()))
  supervisor.on('exit', () => (stats.spawnedAt = null))
  supervisor.on('restarting', () => (stats.restarts += 1))
  supervisor.on('crashed', ({ code, signal }) => {
    stats.crashes += 1
    stats.lastCrash = { code, signal, at: new Date().toISOString() }
  })
  for (const name of SUPERVISOR_EVENTS) supervisor.on(name, (value) => onEvent(name, value))
  supervisor.on('stdout', (chunk) => onWorkerOutput('stdout', chunk))
  supervisor.on('stderr', (chunk) => onWorkerOutput('stderr', chunk))

  function status() {
    const pid = supervisor.pid
    return {
      pid,
      state: supervisor.state,
      connected: supervisor.connected,
      restartCount: supervisor.restartCount,
      restarts: stats.restarts,
      crashes: stats.crashes,
      uptime: pid !== null && stats.spawnedAt !== null ? (Date.now() - stats.spawnedAt) / 1000 : 0,
      lastCrash: stats.lastCrash,
      served: stats.served,
      failed: stats.failed,
    }
  }

  /** Waits (bounded) for a connected worker while one is being started or restarted. */
  async function workerReady() {
    const deadline = Date.now() + waitForWorker
    while (!supervisor.connected) {
      const state = supervisor.state
      if (state !== 'starting' && state !== 'restarting' && state !== 'running') return false
      const left = deadline - Date.now()
      if (left <= 0) return false
      // 'spawn' or 'exhausted', whichever first; a short poll covers a running worker whose
      // channel is not up yet.
      const signal = AbortSignal.timeout(Math.min(left, 250))
      await Promise.race([once(supervisor, 'spawn', { signal }), once(supervisor, 'exhausted', { signal })]).catch(() => {})
    }
    return true
  }

  const app = express()
  app.disable('x-powered-by')

  app.get('/', (req, res) => {
    res.type('html').send(PAGE)
  })

  app.get('/workers', (req, res) => {
    res.set('Cache-Control', 'no-store').json(status())
  })

  app.post('/thumbnails', express.raw({ type: 'image/*', limit: '20mb' }), async (req, res) => {
    if (!Buffer.isBuffer(req.body) || req.body.length === 0) {
      res.status(415).json({ error: { code: 'ERR_NO_IMAGE', message: 'Send the image as the request body, with an image/* Content-Type.' } })
      return
    }
    const name = typeof req.query.name === 'string' ? req.query.name : undefined
    if (!(await workerReady())) {
      stats.failed += 1
      const [status, message] = FAILURES.ERR_IPC_CHANNEL_CLOSED
      res.status(status).set('Retry-After', '1').json({ error: { code: 'ERR_IPC_CHANNEL_CLOSED', message } })
      return
    }
    try {
      const result = await supervisor.request({ image: req.body.toString('base64'), name }, { timeout: requestTimeout })
      const thumbnail = Buffer.from(result.thumbnail, 'base64')
      stats.served += 1
      res
        .status(200)
        .type(`image/${result.format}`)
        .set({
          'X-Thumbnail-Width': String(result.width),
          'X-Thumbnail-Height': String(result.height),
          'X-Worker-Pid': String(result.pid),
        })
        .send(thumbnail)
    } catch (error) {
      stats.failed += 1
      const [status, message] = FAILURES[error.code] ?? [500, 'The thumbnail could not be made.']
      if (status === 503) res.set('Retry-After', '1')
      res.status(status).json({ error: { code: error.code ?? 'ERR_INTERNAL', message, detail: error.message } })
    }
  })

  // Body-parser errors (too large, malformed) as JSON instead of Express's HTML page.
  app.use((error, req, res, next) => {
    if (res.headersSent) return next(error)
    const status = Number.isInteger(error.status) ? error.status : 500
    res.status(status).json({ error: { code: error.type ?? 'ERR_INTERNAL', message: error.message } })
  })

  await supervisor.start()
  let server
  try {
    server = app.listen(port, host)
    await once(server, 'listening')
  } catch (error) {
    await supervisor.stop()
    throw error
  }
  const { address, port: actualPort } = server.address()
  const url = `http://${address}:${actualPort}`

  let closing = null
  /** Stops taking connections, waits for the open ones, then stops the worker. Idempotent. */
  function close() {
    closing ??= (async () => {
      const closed = new Promise((resolve) => server.close(resolve))
      server.closeIdleConnections()
      // A client that keeps a connection busy does not hold the shutdown up for long.
      const force = setTimeout(() => server.closeAllConnections(), 5_000)
      await closed
      clearTimeout(force)
      await supervisor.stop()
    })()
    return closing
  }

  return { url, server, supervisor, status, close }
}
