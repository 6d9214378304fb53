// The image-service demo (examples/image-service), run exactly as `npm run demo` runs it: real
// Express, real sharp, a real worker process supervised over a real Node IPC channel. Its
// dependencies are installed first when missing (quick and silent when they are there).
//
// 1. The scenario: generated images come back as thumbnails of the right size, the corrupt JPEG
//    gets a 502 ERR_WORKER_EXITED (never a 200 without a thumbnail), the worker is restarted
//    exactly once with a new pid, the next upload is served by it, and after the demo stops no
//    process of it is left.
// 2. The status page in headless Chromium shows the worker's pid and its restart count.
import { test, before } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { delimiter, join } from 'node:path'
import { accessSync, constants } from 'node:fs'
import { spawnCollect } from 'tethered'
import { ensureDemoDeps, DEMO_DIR } from '../examples/image-service/ensure-deps.mjs'
import { pidAlive, processesWithMarker, waitFor, tempDir, killGroup } from './helpers.mjs'

let demo // examples/image-service/demo.mjs
let sharp
let workerPath

before(async () => {
  ensureDemoDeps()
  demo = await import('../examples/image-service/demo.mjs')
  ;({ WORKER_PATH: workerPath } = await import('../examples/image-service/server.mjs'))
  sharp = createRequire(join(DEMO_DIR, 'package.json'))('sharp')
}, { timeout: 600_000 })

/** Runs the demo quietly; its transcript becomes the test's diagnostics. Always cleaned up. */
async function runDemo(t, options = {}) {
  const lines = []
  const run = await demo.runDemo({ ...options, print: (line) => lines.push(line) })
  t.after(async () => {
    for (const line of lines) t.diagnostic(line)
    await run.service.close().catch(() => {})
    for (const pid of run.pids) killGroup(pid)
  })
  return run
}

test('image-service demo: thumbnails, a 502 for the corrupt JPEG, one restart, the next upload served, nothing left', { timeout: 60_000 }, async (t) => {
  const run = await runDemo(t)
  const { uploads, results, events, pids, service } = run

  assert.equal(results.length, uploads.length)
  const corruptAt = uploads.findIndex((u) => u.corrupt)
  assert.ok(corruptAt > 0 && corruptAt < uploads.length - 1, 'the corrupt upload comes between good ones')

  // Exactly one restart: two spawns, the second a new pid, one crash before it.
  const names = events.map((e) => e.name)
  assert.equal(names.filter((n) => n === 'restarting').length, 1, `events: ${names}`)
  assert.equal(names.filter((n) => n === 'crashed').length, 1, `events: ${names}`)
  assert.equal(pids.length, 2, `spawns: ${pids}`)
  assert.notEqual(pids[1], pids[0])
  assert.deepEqual(names, ['spawn', 'exit', 'crashed', 'restarting', 'spawn', 'exit'])
  assert.deepEqual(events.find((e) => e.name === 'crashed').value, { code: 1, signal: null, restartCount: 0 })
  assert.deepEqual(events.find((e) => e.name === 'restarting').value, { delay: 500, attempt: 1 })
  assert.deepEqual(events.at(-1).value, { code: 0, signal: null }, 'the last worker left cleanly when the demo stopped')

  for (const [i, upload] of uploads.entries()) {
    const r = results[i]
    if (upload.corrupt) {
      assert.equal(r.status, 502, `${upload.name}: ${JSON.stringify(r.error)}`)
      assert.equal(r.error.code, 'ERR_WORKER_EXITED')
      assert.match(r.error.message, /crashed/)
      assert.equal(r.body, undefined)
      continue
    }
    assert.equal(r.status, 200, `${upload.name}: ${JSON.stringify(r.error)}`)
    // The body is a real image, checked here again with sharp, of the size the demo promises.
    const meta = await sharp(r.body).metadata()
    const want = demo.thumbnailSize(upload.width, upload.height)
    assert.equal(meta.format, 'png', upload.name)
    assert.deepEqual({ width: meta.width, height: meta.height }, want, upload.name)
    assert.ok(Math.max(meta.width, meta.height) === 128, `${upload.name}: longest side 128`)
    const stats = await sharp(r.body).stats()
    assert.ok(stats.channels.some((c) => c.max > c.min), `${upload.name}: the thumbnail is not blank`)
    // Served by the first worker before the crash, by its replacement after.
    assert.equal(r.workerPid, i < corruptAt ? pids[0] : pids[1], upload.name)
  }
  assert.equal(results[corruptAt + 1].status, 200, 'the upload right after the crash is served')
  assert.deepEqual(run.problems, [])

  // Stopped cleanly, and no process of the demo is left.
  assert.equal(service.supervisor.state, 'stopped')
  assert.equal(service.supervisor.pid, null)
  assert.equal(service.server.listening, false)
  await waitFor(() => pids.every((pid) => !pidAlive(pid)), { timeout: 5_000, what: `worker pids ${pids} to be gone` })
  assert.deepEqual(processesWithMarker(workerPath), [], 'no worker process left')
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

test('image-service demo: the status page in headless Chromium shows the worker pid and its restart count', { timeout: 60_000 }, async (t) => {
  const chromium = findChromium()
  if (!chromium) {
    const reason = 'chromium is not installed (Debian: apt-get install -y chromium; .ci/run installs it when missing)'
    t.skip(reason)
    return
  }
  const run = await runDemo(t, { keep: true })
  const { service, pids } = run
  assert.equal(service.supervisor.pid, pids[1], 'the restarted worker is running')

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

  // The script replaced the placeholders with what GET /workers says.
  assert.match(html, /id="worker" data-loaded="true"/, `the page never loaded /workers:\n${html.slice(0, 2000)}`)
  assert.equal(textOf(html, 'pid'), String(service.supervisor.pid))
  assert.equal(textOf(html, 'state'), 'running')
  assert.equal(textOf(html, 'restarts'), '1')
  assert.equal(textOf(html, 'crashes'), '1')
  assert.equal(textOf(html, 'restartCount'), String(service.supervisor.restartCount))
  assert.match(textOf(html, 'lastCrash'), /^exit code 1 at /)
  assert.equal(textOf(html, 'served'), '4 / 1')

  await service.close()
  await waitFor(() => pids.every((pid) => !pidAlive(pid)), { timeout: 5_000, what: `worker pids ${pids} to be gone` })
  // No browser process (they all carry the profile directory in their argv) is left either.
  await waitFor(() => processesWithMarker(profile.dir).length === 0, { timeout: 10_000, what: 'chromium processes to be gone' })
})
