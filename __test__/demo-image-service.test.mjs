// The image-service demo (examples/image-service), run exactly as `npm run demo` runs it: real
// Express, real sharp, real worker processes in a Pool over real Node IPC channels. Its
// dependencies are installed first when missing (quick and silent when they are there).
//
// 1. The scenario, with 2 workers: uploads fired together are worked on at the same time by
//    different workers (by the workers' own clocks); the corrupt JPEG gets a 502
//    ERR_WORKER_EXITED naming the worker and why it died, while the upload sent with it and the
//    two sent right after its 502 are served by the other worker; exactly that slot restarts, with a new pid that then serves; a
//    burst past the queue gets 503 ERR_POOL_QUEUE_FULL with Retry-After; a decompression bomb
//    (32 KiB of PNG, 1 GiB of pixels) kills the worker that takes it by its 1 GiB memory
//    limit — 502 with the reason, the slot replaced, the next upload served, and the test
//    process's own peak RSS far below the gigabyte; GET /workers is pool.stats() and agrees
//    with all of it; after close no process of it is left.
// 2. The status page in headless Chromium shows one row per worker (pid, state, served,
//    crashes, RSS) and the queue, as GET /workers says.
//
// Determinism on a busy machine: the demo's AVIF upload takes a worker a few hundred ms of CPU
// and is the first of each batch, so the uploads fired with it overlap; the burst sends 3 × what
// the pool admits (workers + queue) of it, and the first that many are always admitted.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { delimiter, join } from 'node:path'
import { accessSync, constants } from 'node:fs'
import { spawnCollect } from 'tethered'
import { ensureDemoDeps, DEMO_DIR } from '../examples/image-service/ensure-deps.mjs'
import { BOMB_DECODED_BYTES, BOMB_SIDE } from '../examples/image-service/bomb.mjs'
import { pidAlive, processesWithMarker, waitFor, tempDir, killGroup, withoutUsage } from './helpers.mjs'

let demo // examples/image-service/demo.mjs
let server // examples/image-service/server.mjs
let sharp

before(async () => {
  ensureDemoDeps()
  demo = await import('../examples/image-service/demo.mjs')
  server = await import('../examples/image-service/server.mjs')
  sharp = createRequire(join(DEMO_DIR, 'package.json'))('sharp')
}, { timeout: 600_000 })

/**
 * Runs the demo quietly and leaves the service running; its transcript becomes the test's
 * diagnostics. Always cleaned up.
 */
async function runDemo(t) {
  const lines = []
  const run = await demo.runDemo({ keep: true, print: (line) => lines.push(line) })
  t.after(async () => {
    for (const line of lines) t.diagnostic(line)
    await run.service.close().catch(() => {})
    for (const pid of run.pids) killGroup(pid)
  })
  return run
}

async function getWorkers(url) {
  const response = await fetch(`${url}/workers`)
  assert.equal(response.status, 200)
  assert.equal(response.headers.get('cache-control'), 'no-store')
  return response.json()
}

/** GET /workers once every worker's RSS was sampled (the pool samples it every second). */
function workersWithRss(url) {
  return waitFor(
    async () => {
      const stats = await getWorkers(url)
      return stats.workers.every((w) => typeof w.rss === 'number') && stats
    },
    { timeout: 5_000, interval: 100, what: 'every worker to have an RSS sample' },
  )
}

async function assertThumbnail(r, label) {
  assert.equal(r.status, 200, `${label}: ${JSON.stringify(r.error)}`)
  // The body is a real image, checked here again with sharp, of the size the demo promises.
  const meta = await sharp(r.body).metadata()
  assert.equal(meta.format, 'png', label)
  assert.deepEqual({ width: meta.width, height: meta.height }, demo.thumbnailSize(r.upload.width, r.upload.height), label)
  const stats = await sharp(r.body).stats()
  assert.ok(stats.channels.some((c) => c.max > c.min), `${label}: the thumbnail is not blank`)
}

test('image-service demo on a Pool: parallel uploads, a 502 for the corrupt JPEG while the other worker serves, one restart, 503 past the queue, a bomb that costs one worker, /workers, nothing left', { timeout: 90_000 }, async (t) => {
  const run = await runDemo(t)
  const { phases, events, crash, bomb, service, workers } = run
  assert.equal(workers, 2, 'two workers by default')
  assert.deepEqual(run.problems, [])
  const maxQueue = server.QUEUE_PER_WORKER * workers

  // Both slots spawned first, with distinct pids.
  const first = events.slice(0, 2)
  assert.deepEqual(first.map((e) => e.name), ['spawn', 'spawn'])
  assert.deepEqual(first.map((e) => e.value.worker).sort(), [0, 1])
  const startPids = first.map((e) => e.value.pid)
  assert.notEqual(startPids[0], startPids[1])

  // 1. Served in parallel: every thumbnail right, both workers used, and at least two uploads
  // worked on at the same time by different workers, by the workers' own clocks.
  for (const r of phases.parallel) await assertThumbnail(r, `parallel ${r.label}`)
  assert.deepEqual(new Set(phases.parallel.map((r) => r.workerPid)), new Set(startPids))
  const [[a, b]] = demo.overlapping(phases.parallel)
  assert.ok(a.workerStart < b.workerEnd && b.workerStart < a.workerEnd && a.workerPid !== b.workerPid)

  // 2. The corrupt upload: 502 with the worker's pid, exit code and last stderr line.
  const corrupt = phases.crash.find((r) => r.upload.corrupt)
  assert.equal(corrupt.status, 502, JSON.stringify(corrupt.error))
  assert.equal(corrupt.body, undefined)
  assert.equal(corrupt.error.code, 'ERR_WORKER_EXITED')
  assert.match(corrupt.error.message, /crashed/)
  assert.ok(startPids.includes(crash.pid), `the crashed worker ${crash.pid} was one of the first two`)
  assert.equal(corrupt.error.pid, crash.pid)
  assert.equal(corrupt.error.exitCode, 1)
  assert.equal(corrupt.error.signal, null)
  assert.match(corrupt.error.reason, new RegExp(`^worker ${crash.pid}: cannot decode corrupt\\.jpg`))
  // The upload sent with it and the two sent once its 502 was back are all served, none by the
  // worker that crashed.
  const beside = phases.crash.filter((r) => !r.upload.corrupt)
  assert.equal(beside.length, 3)
  for (const r of beside) {
    await assertThumbnail(r, `crash ${r.label}`)
    assert.notEqual(r.workerPid, crash.pid, `crash ${r.label}`)
  }

  // Exactly one crash, of that slot; it restarts after the base delay with a new pid; the other
  // slot never stopped.
  // Up to the bomb (phase 5), which takes one more worker.
  const bombedAt = events.findIndex((e) => e.value === bomb.crashed)
  assert.ok(bombedAt > 0, 'the bomb crashed a worker')
  const beforeBomb = events.slice(0, bombedAt)
  const names = beforeBomb.map((e) => e.name)
  assert.equal(names.filter((n) => n === 'crashed').length, 1, `events: ${names}`)
  assert.equal(names.filter((n) => n === 'restarting').length, 1, `events: ${names}`)
  const slotEvents = beforeBomb.filter((e) => e.value?.worker === crash.worker).map((e) => [e.name, e.value])
  assert.deepEqual(slotEvents.slice(1, 5).map(([name, value]) => [name, name === 'exit' || name === 'crashed' ? withoutUsage(value) : value]), [
    ['exit', { worker: crash.worker, pid: crash.pid, code: 1, signal: null, limit: null }],
    ['crashed', { worker: crash.worker, pid: crash.pid, code: 1, signal: null, limit: null, restartCount: 0 }],
    ['restarting', { worker: crash.worker, delay: 500, attempt: 1 }],
    ['spawn', { worker: crash.worker, pid: crash.respawned.pid }],
  ])
  // What the crashed worker used: a Node process with sharp loaded, which decoded a few images.
  const crashUsage = slotEvents[2][1].resourceUsage
  assert.deepEqual(slotEvents[1][1].resourceUsage, crashUsage)
  assert.ok(crashUsage.maxRss > 20 * 2 ** 20 && crashUsage.maxRss < 2 ** 30, `maxRss ${crashUsage.maxRss}`)
  assert.ok(crashUsage.userCpuMs > 0 && crashUsage.systemCpuMs >= 0, JSON.stringify(crashUsage))
  assert.ok(!startPids.includes(crash.respawned.pid), 'the restarted worker is a new process')
  const survivor = startPids.find((pid) => pid !== crash.pid)
  assert.equal(beforeBomb.filter((e) => e.value?.pid === survivor).length, 1, 'the other worker only spawned: it kept running')

  // 3. After the restart, the new worker serves beside the old one.
  for (const r of phases.restarted) await assertThumbnail(r, `restarted ${r.label}`)
  assert.ok(phases.restarted.some((r) => r.workerPid === crash.respawned.pid), 'the restarted worker served')
  for (const r of phases.restarted) assert.ok([survivor, crash.respawned.pid].includes(r.workerPid), `restarted ${r.label}: pid ${r.workerPid}`)

  // 4. The burst: the first workers + maxQueue are always admitted (and served); the rest that
  // found the queue full got 503 with Retry-After.
  assert.equal(phases.burst.length, 3 * (workers + maxQueue))
  const refused = phases.burst.filter((r) => r.status === 503)
  const served = phases.burst.filter((r) => r.status === 200)
  assert.equal(refused.length + served.length, phases.burst.length, `statuses: ${phases.burst.map((r) => r.status)}`)
  assert.ok(refused.length > 0, 'some of the burst is refused')
  assert.ok(served.length >= workers + maxQueue, `${served.length} served, at least ${workers + maxQueue} admitted`)
  for (const r of refused) {
    assert.equal(r.retryAfter, '1', r.label)
    assert.equal(r.error.code, 'ERR_POOL_QUEUE_FULL', r.label)
  }
  await assertThumbnail(served[0], `burst ${served[0].label}`)

  // 5. The bomb: a few tens of KiB whose header promises 16384² RGBA pixels, interlaced (so
  // they must all be decoded at once) — 1 GiB, the worker's whole memory limit, on top of what it holds. sharp's default
  // pixel limit refuses it even in this process, which is why the worker lifts it and relies on
  // its rlimits instead.
  const bombed = phases.bomb[0]
  assert.ok(bombed.upload.data.length < 64 * 1024, `the bomb is ${bombed.upload.data.length} bytes`)
  await assert.rejects(sharp(bombed.upload.data).metadata(), /pixel limit/)
  const meta = await sharp(bombed.upload.data, { limitInputPixels: false }).metadata()
  assert.deepEqual([meta.format, meta.width, meta.height, meta.channels, meta.isProgressive], ['png', BOMB_SIDE, BOMB_SIDE, 4, true])
  assert.equal(meta.width * meta.height * meta.channels, BOMB_DECODED_BYTES)
  assert.ok(BOMB_DECODED_BYTES >= 1024 * 2 ** 20)
  // The worker that took it could not get the memory and died: 502 with its last words.
  assert.equal(bombed.status, 502, JSON.stringify(bombed.error))
  assert.equal(bombed.error.code, 'ERR_WORKER_EXITED')
  assert.equal(bombed.error.pid, bomb.crashed.pid)
  assert.match(bombed.error.reason, new RegExp(`^worker ${bomb.crashed.pid}: cannot decode ${bombed.upload.name}.*out of memory`))
  // Its 'crashed' event says what it used: well under the gigabyte; no `limit` is claimed for
  // memory (the kernel sends no signal for it).
  assert.equal(bomb.crashed.limit, null)
  assert.ok(bomb.crashed.resourceUsage.maxRss < 512 * 2 ** 20, `the bombed worker's maxRss ${bomb.crashed.resourceUsage.maxRss}`)
  // The slot got a new worker; the upload sent once the 502 was back was served.
  assert.ok(bomb.respawned && bomb.respawned.pid !== bomb.crashed.pid, 'the bombed worker was replaced')
  for (const r of phases.bomb.slice(1)) await assertThumbnail(r, `after the bomb ${r.label}`)
  // This process made the bomb and sent it, and never held its pixels.
  assert.ok(bomb.hostPeakRss < BOMB_DECODED_BYTES / 2, `this process peaked at ${bomb.hostPeakRss} bytes`)

  // GET /workers is pool.stats(), and agrees with all of the above.
  const stats = await workersWithRss(service.url)
  assert.deepEqual(Object.keys(stats).sort(), ['completed', 'crashes', 'failed', 'inFlight', 'latencyMs', 'queued', 'recycles', 'rejected', 'restarts', 'state', 'workers'])
  assert.deepEqual(Object.keys(stats.rejected).sort(), ['aborted', 'closed', 'exhausted', 'queueFull', 'queueTimeout', 'timeout', 'workerError', 'workerExited'])
  const all = Object.values(phases).flat()
  const ok = all.filter((r) => r.ok).length
  assert.equal(stats.state, 'running')
  assert.equal(stats.queued, 0)
  assert.equal(stats.inFlight, 0)
  assert.equal(stats.completed, ok)
  assert.equal(stats.failed, refused.length + 2)
  assert.deepEqual(stats.rejected, { queueFull: refused.length, queueTimeout: 0, timeout: 0, aborted: 0, workerExited: 2, workerError: 0, exhausted: 0, closed: 0 })
  assert.equal(stats.crashes, 2)
  assert.equal(stats.restarts, 2)
  assert.equal(stats.recycles, 0)
  assert.ok(stats.latencyMs.p50 > 0 && stats.latencyMs.p99 >= stats.latencyMs.p50, JSON.stringify(stats.latencyMs))
  assert.deepEqual(stats.workers.map((w) => w.worker), [0, 1])
  // Each slot's process now, its crashes, and what its last exited process used.
  const slots = [0, 1].map((worker) => ({ pid: startPids[first.findIndex((e) => e.value.worker === worker)], crashes: 0, lastExitUsage: null }))
  for (const { worker, respawned, usage } of [
    { worker: crash.worker, respawned: crash.respawned, usage: crashUsage },
    { worker: bomb.crashed.worker, respawned: bomb.respawned, usage: bomb.crashed.resourceUsage },
  ]) {
    Object.assign(slots[worker], { pid: respawned.pid, crashes: slots[worker].crashes + 1, lastExitUsage: usage })
  }
  for (const w of stats.workers) {
    assert.deepEqual(Object.keys(w).sort(), ['crashes', 'inFlight', 'lastExitUsage', 'pid', 'restartCount', 'rss', 'served', 'state', 'uptimeMs', 'worker'])
    assert.equal(w.pid, slots[w.worker].pid)
    assert.equal(w.state, 'ready')
    assert.equal(w.inFlight, 0)
    assert.equal(w.crashes, slots[w.worker].crashes)
    assert.deepEqual(w.lastExitUsage, slots[w.worker].lastExitUsage)
    assert.ok(w.rss > 10 * 2 ** 20 && w.rss < 2 ** 30, `worker ${w.worker} RSS ${w.rss}`)
    assert.ok(w.uptimeMs > 0)
  }
  // `served` counts the current process's answers: the survivor's since the start, the new one's since its spawn.
  const byPid = (pid) => all.filter((r) => r.ok && r.workerPid === pid).length
  for (const w of stats.workers) assert.equal(w.served, byPid(w.pid), `worker ${w.worker}`)

  // Closed: the server, then the pool (both workers leave cleanly), and nothing is left.
  await service.close()
  assert.equal(service.pool.state, 'closed')
  assert.equal(service.pool.size, 0)
  assert.equal(service.server.listening, false)
  const exits = events.filter((e) => e.name === 'exit').slice(-2).map((e) => e.value)
  assert.deepEqual(exits.map((e) => [e.pid, e.code, e.signal]).sort(), slots.map((slot) => slot.pid).sort().map((pid) => [pid, 0, null]))
  await waitFor(() => run.pids.every((pid) => !pidAlive(pid)), { timeout: 5_000, what: `worker pids ${run.pids} to be gone` })
  assert.deepEqual(processesWithMarker(server.WORKER_PATH), [], 'no worker process left')
})

/** The chromium binary on PATH, or null. */
function findChromium() {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const path = join(dir, name)
      try {
        accessSync(path, constants.X_OK)
        return path
      } catch {}
    }
  }
  return null
}

/** The text of the element with id `id` in `html` (the page's values are plain text). */
function textOf(html, id) {
  const match = new RegExp(`<[a-z]+ id="${id}"[^>]*>([^<]*)<`).exec(html)
  return match ? match[1] : null
}

test('image-service demo: the status page in headless Chromium shows one row per worker and the queue', { timeout: 60_000 }, async (t) => {
  const chromium = findChromium()
  if (!chromium) {
    const reason = 'chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it when missing)'
    t.skip(reason)
    return
  }
  const run = await runDemo(t)
  const { service, pids } = run
  await workersWithRss(service.url)

  const profile = tempDir()
  t.after(() => profile.remove())
  // Run with tethered itself: a hung browser is killed with its whole process group.
  const browser = await spawnCollect(
    chromium,
    [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disable-breakpad',
      `--user-data-dir=${profile.dir}`,
      // Lets the page's own fetch('/workers') run and fill the page in before the DOM is dumped.
      '--virtual-time-budget=3000',
      '--dump-dom',
      `${service.url}/`,
    ],
    // HOME too: chromium's crash handler and caches stay in the temporary profile.
    { timeout: 45_000, maxBuffer: 16 * 1024 * 1024, env: { HOME: profile.dir } },
  )
  const stderrTail = browser.stderr.split('\n').slice(-15).join('\n')
  assert.equal(browser.timedOut, false, `chromium timed out\n${stderrTail}`)
  assert.equal(browser.exitCode, 0, `chromium failed\n${stderrTail}`)
  const html = browser.stdout

  // The script replaced the placeholders with what GET /workers says; the pool is idle, so it
  // says now what it said to the page.
  assert.match(html, /id="workers" data-loaded="true"/, `the page never loaded /workers:\n${html.slice(0, 2000)}`)
  const stats = service.pool.stats()
  assert.equal((html.match(/<tr id="worker-\d+"/g) ?? []).length, 2, 'one row per worker')
  for (const w of stats.workers) {
    const cell = (field) => textOf(html, `worker-${w.worker}-${field}`)
    assert.equal(cell('pid'), String(w.pid))
    assert.equal(cell('state'), 'ready')
    assert.equal(cell('inFlight'), '0')
    assert.equal(cell('served'), String(w.served))
    assert.equal(cell('crashes'), String(w.crashes))
    assert.match(cell('rss'), /^\d+\.\d MiB$/)
    assert.match(cell('uptime'), /^\d+\.\d s$/)
    // What the slot's last exited worker used; a slot that never lost one shows a dash.
    const last = w.lastExitUsage
    assert.equal(cell('lastMaxRss'), last === null ? '—' : `${(last.maxRss / 2 ** 20).toFixed(1)} MiB`)
    assert.equal(cell('lastCpu'), last === null ? '—' : `${(last.userCpuMs + last.systemCpuMs).toFixed(0)} ms`)
  }
  // The bombed slot and the corrupt JPEG's slot lost a worker each.
  assert.ok(stats.workers.some((w) => w.lastExitUsage !== null))
  assert.equal(textOf(html, 'state'), 'running')
  assert.equal(textOf(html, 'queued'), '0')
  assert.equal(textOf(html, 'inFlight'), '0')
  assert.equal(textOf(html, 'totals'), `${stats.completed} / ${stats.failed}`)
  assert.equal(textOf(html, 'refused'), `${stats.rejected.queueFull} / 0`)
  assert.equal(textOf(html, 'crashes'), '2 / 2 / 0')

  await service.close()
  await waitFor(() => pids.every((pid) => !pidAlive(pid)), { timeout: 5_000, what: `worker pids ${pids} to be gone` })
  // No browser process (they all carry the profile directory in their argv) is left either.
  await waitFor(() => processesWithMarker(profile.dir).length === 0, { timeout: 10_000, what: 'chromium processes to be gone' })
})
