// The image service: an Express 5 app whose thumbnails are made by a pool of sharp worker
// processes run by tethered's Pool — by default two, one per core of a small machine. Uploads
// are served in parallel, one per worker; more wait in a short, bounded queue; past it the
// service answers 503 at once instead of letting a backlog grow. A worker that crashes on a
// corrupt upload takes only that upload down (502); the others keep serving while its slot
// restarts with backoff.
//
//   POST /thumbnails   raw image body (Content-Type: image/*) → 200 image/png, a 128 px thumbnail
//   GET  /workers      pool.stats(): the queue, the totals, one row per worker
//   GET  /bomb.png     a decompression bomb (bomb.mjs) for the page's button to upload
//   GET  /             a page showing the same, live
//
//   node examples/image-service/server.mjs [--workers N] [--port P] [--host H]
import { readFileSync, realpathSync } from 'node:fs'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import express from 'express'
// In your own app: `import { Pool } from 'tethered'`. The demo loads the package from the
// repository it lives in (see README.md, "The image-service demo").
import { Pool } from '../../index.mjs'
import { decompressionBomb } from './bomb.mjs'

export const WORKER_PATH = fileURLToPath(new URL('./worker.cjs', import.meta.url))
const PAGE = readFileSync(new URL('./index.html', import.meta.url), 'utf8')

/** The Pool's events the service hands to `onEvent`; each concerning one worker carries {worker, pid}. */
export const POOL_EVENTS = ['spawn', 'exit', 'crashed', 'restarting', 'unresponsive', 'recycle', 'exhausted', 'error']

/** Uploads that may wait for a worker, per worker: a client waits behind at most this many others each. */
export const QUEUE_PER_WORKER = 4

/** Seconds a client told 503 should wait before trying again. */
const RETRY_AFTER = '1'

/**
 * How a rejected pool.request() becomes an HTTP answer: [status, message, retryable]. A request
 * that never reached a worker (queue full, or it waited too long for one) is the service being
 * busy: 503 with Retry-After. One a worker took and did not answer in time is a gateway timeout:
 * 504. A worker that died under it: 502.
 */
const FAILURES = {
  ERR_POOL_QUEUE_FULL: [503, 'Every image worker is busy and the queue is full; try again shortly.', true],
  ERR_POOL_QUEUE_TIMEOUT: [503, 'No image worker became free in time; try again shortly.', true],
  ERR_WORKER_EXITED: [502, 'The image worker crashed while making this thumbnail (it is being restarted); the upload was not processed.', false],
  ERR_TIMEOUT: [504, 'The image worker did not answer in time; the upload was not processed.', false],
  ERR_POOL_EXHAUSTED: [503, 'The image workers kept crashing and were stopped; thumbnails are unavailable until the service restarts.', false],
  ERR_POOL_CLOSED: [503, 'The service is shutting down.', false],
  ERR_WORKER_REQUEST_FAILED: [500, 'The image worker could not make a thumbnail.', false],
}

/** The JSON error body for a rejected request; for a crash, what the operator needs to see why. */
function failure(error) {
  const [status, message, retryable] = FAILURES[error.code] ?? [500, 'The thumbnail could not be made.', false]
  const body = { code: error.code ?? 'ERR_INTERNAL', message }
  if (error.code === 'ERR_WORKER_EXITED') {
    // The worker's own last words (stdio: 'pipe' keeps them): here, which file it could not
    // decode. A public service would log these rather than send them to the client.
    const lastLine = (error.stderrTail ?? '').trimEnd().split('\n').at(-1)
    Object.assign(body, { pid: error.pid, exitCode: error.exitCode, signal: error.signal, reason: lastLine || null })
  }
  return { status, body, retryable }
}

/**
 * Starts the service on `host`:`port` (port 0: a free one) with a pool of `workers` thumbnail
 * workers. Resolves once it listens and the workers are spawned, with `{ url, server, pool,
 * close() }`. `onEvent(name, value)` sees every pool event as it happens; `onWorkerOutput(stream,
 * chunk, { worker, pid })` every chunk a worker writes to stdout/stderr.
 */
export async function startImageService({
  host = '127.0.0.1',
  port = 0,
  workers = 2,
  maxQueue = QUEUE_PER_WORKER * workers,
  onEvent = () => {},
  onWorkerOutput = (stream, chunk) => process[stream].write(chunk),
  poolOptions = {},
} = {}) {
  const pool = new Pool({
    modulePath: WORKER_PATH,
    // Node's v8 serializer on the channel, as fork({ serialization: 'advanced' }): the upload
    // and its thumbnail cross as Buffers, not as base64 text a third larger.
    serialization: 'advanced',
    size: workers,
    maxQueue,
    queueTimeout: 10_000, // an upload waits at most 10 s for a free worker
    requestTimeout: 30_000, // and a worker has 30 s to make its thumbnail
    restartDelay: 500, // a crashed slot restarts after 500 ms, then 1 s, 2 s, ... up to maxRestartDelay
    maxRestartDelay: 10_000,
    maxRestarts: 10, // more crashes than this within a minute: the pool gives up ('exhausted')
    restartWindow: 60_000,
    maxMemory: 512 * 1024 * 1024, // a worker whose process group grows past this is replaced gracefully
    // What one upload may cost: a worker's heap and private memory stop at 1 GiB (its
    // allocations fail past it: a decompression bomb kills that worker, not the host), and 30 s
    // of CPU end a decoder that loops (SIGXCPU). Not less: Node 24 and later need about 600 MiB
    // of it to start (V8's code range counts).
    limits: { memory: 1024 * 1024 * 1024, cpuTime: 30 },
    healthCheckInterval: 5_000,
    healthCheckTimeout: 5_000,
    stopTimeout: 5_000,
    stdio: 'pipe',
    ...poolOptions,
  })
  for (const name of POOL_EVENTS) pool.on(name, (value) => onEvent(name, value))
  pool.on('stdout', (chunk, from) => onWorkerOutput('stdout', chunk, from))
  pool.on('stderr', (chunk, from) => onWorkerOutput('stderr', chunk, from))

  const app = express()
  app.disable('x-powered-by')

  app.get('/', (req, res) => {
    res.type('html').send(PAGE)
  })

  app.get('/workers', (req, res) => {
    res.set('Cache-Control', 'no-store').json(pool.stats())
  })

  let bomb
  app.get('/bomb.png', async (req, res) => {
    bomb ??= decompressionBomb()
    res.type('png').send(await bomb)
  })

  app.post('/thumbnails', express.raw({ type: 'image/*', limit: '20mb' }), async (req, res) => {
    if (!Buffer.isBuffer(req.body) || req.body.length === 0) {
      res.status(415).json({ error: { code: 'ERR_NO_IMAGE', message: 'Send the image as the request body, with an image/* Content-Type.' } })
      return
    }
    const name = typeof req.query.name === 'string' ? req.query.name : undefined
    // A client that goes away takes its upload out of the queue (no worker touched), or has
    // the worker told to cancel it.
    const gone = new AbortController()
    res.on('close', () => {
      if (!res.writableFinished) gone.abort()
    })
    try {
      const result = await pool.request({ image: req.body, name }, { signal: gone.signal })
      res
        .status(200)
        .type(`image/${result.format}`)
        .set({
          'X-Thumbnail-Width': String(result.width),
          'X-Thumbnail-Height': String(result.height),
          'X-Worker-Pid': String(result.pid),
          // When the worker began and finished this thumbnail (ms since the epoch).
          'X-Worker-Started': result.started.toFixed(1),
          'X-Worker-Finished': result.finished.toFixed(1),
        })
        .send(result.thumbnail)
    } catch (error) {
      if (error.code === 'ABORT_ERR') return // nobody is listening
      const { status, body, retryable } = failure(error)
      if (retryable) res.set('Retry-After', RETRY_AFTER)
      res.status(status).json({ error: body })
    }
  })

  // Body-parser errors (too large, malformed) as JSON instead of Express's HTML page.
  app.use((error, req, res, next) => {
    if (res.headersSent) return next(error)
    const status = Number.isInteger(error.status) ? error.status : 500
    res.status(status).json({ error: { code: error.type ?? 'ERR_INTERNAL', message: error.message } })
  })

  await pool.start()
  let server
  try {
    server = app.listen(port, host)
    await once(server, 'listening')
  } catch (error) {
    await pool.close({ drain: false })
    throw error
  }
  const { address, port: actualPort } = server.address()
  const url = `http://${address}:${actualPort}`

  let closing = null
  /** Stops taking connections, lets the uploads under way finish, then stops the workers. Idempotent. */
  function close() {
    closing ??= (async () => {
      const closed = new Promise((resolve) => server.close(resolve))
      server.closeIdleConnections()
      // A client that keeps a connection busy does not hold the shutdown up for long.
      const force = setTimeout(() => server.closeAllConnections(), 5_000)
      await closed
      clearTimeout(force)
      await pool.close()
    })()
    return closing
  }

  return { url, server, pool, close }
}

/** `--workers N` as given to server.mjs or demo.mjs (default 2); throws a usage message when invalid. */
export function workersFlag(value) {
  if (value === undefined) return 2
  const workers = Number(value)
  if (!Number.isSafeInteger(workers) || workers < 1) throw new Error(`--workers takes a whole number of at least 1, not ${JSON.stringify(value)}`)
  return workers
}

async function main() {
  let values, workers
  try {
    ;({ values } = parseArgs({
      options: { workers: { type: 'string' }, port: { type: 'string', default: '3000' }, host: { type: 'string', default: '127.0.0.1' } },
    }))
    workers = workersFlag(values.workers)
  } catch (error) {
    console.error(`${error.message}\nusage: node server.mjs [--workers N] [--port P] [--host H]`)
    process.exitCode = 2
    return
  }
  const service = await startImageService({
    host: values.host,
    port: Number(values.port),
    workers,
    onEvent: (name, value) => console.log(`pool ${name} ${JSON.stringify(value)}`),
  })
  console.log(`image service on ${service.url}/ with ${service.pool.size} workers (Ctrl-C stops it)`)
  const stop = async (signal) => {
    console.log(`${signal}: stopping ...`)
    await service.close()
    console.log(`stopped: pool ${service.pool.state}`)
  }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  main().catch((error) => {
    console.error(error.message)
    process.exitCode = 1
  })
}
