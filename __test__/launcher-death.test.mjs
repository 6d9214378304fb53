// The launcher's own death (issue 13): what a SIGKILLed launcher must not leave behind in this
// process (fds, tasks), nor outside it (process groups re-parented to init), what calls in
// flight report, how often the addon may start a launcher that dies at once, and that a
// deliberate daemon is the user's even when the launcher dies.
//
// Every test kills this process's launcher; node:test runs them one after another, and test
// files run in processes of their own, so no other file's calls are hit.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readFileSync, readdirSync, writeFileSync, chmodSync, existsSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { spawnCollect, runProcess, spawn as spawnChild } from 'tethered'
import {
  uniqueMarker,
  processesNamed,
  killMarked,
  waitFor,
  settlesWithin,
  procStat,
  sameProcessAlive,
  pidAlive,
  launchersOf,
  countOpenFds,
  sleep,
  tempDir,
} from './helpers.mjs'

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')

/** This process's one live launcher, started by a first call if need be; its procStat. */
async function currentLauncher() {
  await spawnCollect('true')
  const launchers = launchersOf()
  assert.equal(launchers.length, 1, `exactly one live launcher under this process: ${launchers}`)
  return procStat(launchers[0])
}

/** SIGKILLs `launcher` and waits until it is dead (a zombie or reaped). */
async function killLauncher(launcher) {
  process.kill(launcher.pid, 'SIGKILL')
  await waitFor(() => !sameProcessAlive(launcher), { timeout: 5_000, what: 'the launcher to die of SIGKILL' })
}

/** Live processes whose environment holds `NAME=value` (only ours are readable anyway). */
function processesWithEnv(name, value) {
  const wanted = `${name}=${value}`
  const found = []
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const pid = Number(entry)
    if (pid === process.pid) continue
    let environ
    try {
      environ = readFileSync(`/proc/${pid}/environ`, 'utf8')
    } catch {
      continue
    }
    if (environ.split('\0').includes(wanted) && pidAlive(pid)) found.push(pid)
  }
  return found
}

function killPids(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
}

test('ten launcher deaths leave no fd behind in this process', { timeout: 120_000 }, async () => {
  await currentLauncher()
  for (let i = 0; i < 5; i++) await spawnCollect('true') // warm-up: the runtime's own fds
  const before = countOpenFds()
  for (let round = 0; round < 10; round++) {
    await killLauncher(await currentLauncher())
    const r = await settlesWithin(spawnCollect('echo', [`round ${round}`]), 10_000, `the call after death ${round}`)
    assert.equal(r.stdout, `round ${round}\n`)
  }
  // The dead launchers' sockets close as their tasks notice the EOF: give them a moment.
  let after
  await waitFor(() => (after = countOpenFds()) <= before + 2, { timeout: 5_000 }).catch(() => {})
  assert.ok(after <= before + 2, `open fds: ${before} before ten launcher deaths, ${after} after`)
})

// `sh -c 'sleep 100 & sleep 100'`: the leader dies of its parent-death signal with the launcher;
// the background sleep is only in the leader's group, which the addon must kill — for every
// group whose pid the launcher reported, even if that reply was still unread when it died.
test('the launcher killed while 64 spawns are in flight: no process of theirs survives', { timeout: 180_000 }, async (t) => {
  const mark = uniqueMarker('death-in-flight')
  t.after(() => killPids(processesWithEnv('TETHERED_DEATH_MARK', mark)))
  const env = { ...process.env, TETHERED_DEATH_MARK: mark }
  for (const delay of [2, 5, 10, 20, 35, 50, 85]) {
    const launcher = await currentLauncher()
    // A call re-sent to the next launcher runs there: its timeout ends it, group and all.
    const calls = []
    for (let i = 0; i < 64; i++) {
      calls.push(spawnCollect('sh', ['-c', 'sleep 100 & sleep 100'], { env, timeout: 2_000 }).then(
        (value) => ({ ok: true, value }),
        (error) => ({ ok: false, error }),
      ))
    }
    await sleep(delay)
    process.kill(launcher.pid, 'SIGKILL')
    const settled = await settlesWithin(Promise.all(calls), 20_000, `the 64 calls (launcher killed after ${delay} ms)`)
    for (const s of settled) {
      if (!s.ok) assert.equal(s.error.code, 'ERR_LAUNCHER_EXITED', `${s.error.code}: ${s.error.message}`)
      else assert.equal(s.value.timedOut, true, `a call that ran to its end: ${JSON.stringify(s.value)}`)
    }
    let left = []
    await waitFor(() => (left = processesWithEnv('TETHERED_DEATH_MARK', mark)).length === 0, { timeout: 3_000 }).catch(() => {})
    const described = left.map((pid) => `${pid} (ppid ${procStat(pid)?.ppid})`)
    killPids(left)
    assert.deepEqual(described, [], `launcher killed ${delay} ms after 64 spawns: these outlived it`)
  }
})

// What the launcher adopted as a subreaper — the background job of a call that already ended, a
// grandchild that called setsid(), the far end of a double fork — is known to no one but the
// launcher. Killed, the launcher hands them to its guardian, which kills them; killed instead,
// the guardian makes the launcher kill them (its parent-death signal). A daemon is spared by both.
for (const victim of ['launcher', 'guardian']) {
  test(`the ${victim} SIGKILLed: what the launcher adopted dies too, a daemon is spared`, { timeout: 60_000 }, async (t) => {
    const mark = uniqueMarker(`death-adopted-${victim}`)
    const daemonMark = `${mark}-daemon`
    t.after(() => killPids([...processesWithEnv('TETHERED_DEATH_MARK', mark), ...processesWithEnv('TETHERED_DEATH_MARK', daemonMark)]))
    const launcher = await currentLauncher()
    const guardian = procStat(launcher.ppid)
    const env = { ...process.env, TETHERED_DEATH_MARK: mark }
    const quiet = '>/dev/null 2>&1 </dev/null'
    for (const line of [`sleep 100 ${quiet} & echo started`, `setsid sleep 100 ${quiet} & echo started`, `(sleep 100 ${quiet} &); echo started`]) {
      const r = await spawnCollect('sh', ['-c', line], { env, timeout: 10_000 })
      assert.equal(r.stdout, 'started\n', line)
    }
    const daemonCall = spawnCollect('sleep', ['100'], { env: { ...process.env, TETHERED_DEATH_MARK: daemonMark }, killOnParentExit: false, timeout: 0 }).catch((e) => e)
    const [daemon] = await waitFor(() => {
      const pids = processesWithEnv('TETHERED_DEATH_MARK', daemonMark)
      return pids.length === 1 && pids
    }, { what: 'the daemon to run' })
    const adopted = await waitFor(() => {
      const pids = processesWithEnv('TETHERED_DEATH_MARK', mark)
      return pids.length === 3 && pids.every((pid) => procStat(pid)?.ppid === launcher.pid) && pids
    }, { what: 'the three leftovers to be adopted by the launcher' })
    assert.equal(adopted.length, 3)

    process.kill(victim === 'launcher' ? launcher.pid : guardian.pid, 'SIGKILL')
    let left = []
    await waitFor(() => (left = processesWithEnv('TETHERED_DEATH_MARK', mark)).length === 0, { timeout: 10_000 }).catch(() => {})
    const described = left.map((pid) => `${pid} (ppid ${procStat(pid)?.ppid}) ${readFileSync(`/proc/${pid}/cmdline`, 'utf8')}`)
    assert.deepEqual(described, [], `the ${victim} was SIGKILLed: these outlived it`)
    await waitFor(() => !sameProcessAlive(launcher) && !sameProcessAlive(guardian), { timeout: 10_000, what: 'the launcher and its guardian to be gone' })
    assert.ok(pidAlive(daemon), 'the daemon still runs')
    assert.equal((await settlesWithin(daemonCall, 10_000, 'the daemon\'s call')).code, 'ERR_LAUNCHER_EXITED')
    killPids([daemon])

    const after = await spawnCollect('echo', ['after'])
    assert.equal(after.stdout, 'after\n', 'the next call starts a new launcher')
  })
}

// spawn() waits for its answer on the JavaScript thread, on the spawn socket: the launcher is
// killed from outside while a burst of them runs. Each child's group must be known (from the
// child's Starting, or the launcher's answer) and killed, whichever reply the death cut off.
test('the launcher killed during a burst of synchronous spawn() calls: no process of theirs survives', { timeout: 120_000 }, async (t) => {
  const mark = uniqueMarker('death-sync')
  t.after(() => killPids(processesWithEnv('TETHERED_DEATH_MARK', mark)))
  const env = { ...process.env, TETHERED_DEATH_MARK: mark }
  for (const delay of [0.01, 0.03, 0.06]) {
    const launcher = await currentLauncher()
    const killer = spawn('sh', ['-c', `sleep ${delay}; kill -9 ${launcher.pid}`], { stdio: 'ignore' })
    const exited = []
    const deadline = Date.now() + 2_000
    while (Date.now() < deadline && sameProcessAlive(launcher)) {
      const child = spawnChild('sh', ['-c', 'sleep 100 & sleep 100'], { env, stdio: 'ignore', timeout: 5_000 })
      exited.push(child.exited.then(() => 'exit', (error) => error.code))
    }
    await new Promise((resolve) => (killer.exitCode !== null ? resolve() : killer.on('exit', resolve)))
    const codes = await settlesWithin(Promise.all(exited), 20_000, `the ${exited.length} spawn() calls`)
    assert.ok(codes.includes('ERR_LAUNCHER_EXITED'), `some call saw the death (${delay * 1000} ms): ${[...new Set(codes)]}`)
    for (const code of codes) assert.ok(code === 'ERR_LAUNCHER_EXITED' || code === 'exit', code)
    let left = []
    await waitFor(() => (left = processesWithEnv('TETHERED_DEATH_MARK', mark)).length === 0, { timeout: 3_000 }).catch(() => {})
    const described = left.map((pid) => `${pid} (ppid ${procStat(pid)?.ppid})`)
    killPids(left)
    assert.deepEqual(described, [], `launcher killed ${delay * 1000} ms into a spawn() burst: these outlived it`)
  }
})

test('runProcess in flight when the launcher dies: ERR_LAUNCHER_EXITED, no exit, and the time it ran', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('death-run')
  t.after(() => killMarked(marker))
  for (let round = 0; round < 3; round++) {
    const launcher = await currentLauncher()
    const started = Date.now()
    const runs = []
    for (let i = 0; i < 8; i++) {
      runs.push(runProcess('bash', ['-c', 'exec -a "$0" sleep 1000', `${marker}-${round}-${i}`], { timeout: 0 }))
    }
    await waitFor(() => processesNamed(`${marker}-${round}-7`).length === 1, { what: 'the runs to start' })
    await sleep(300)
    await killLauncher(launcher)
    const results = await settlesWithin(Promise.all(runs), 10_000, 'the runProcess calls')
    const elapsed = Date.now() - started
    for (const r of results) {
      assert.equal(r.error?.code, 'ERR_LAUNCHER_EXITED', JSON.stringify(r))
      assert.equal(r.ok, false)
      assert.equal(r.code, null)
      assert.equal(r.signal, null)
      assert.ok(r.durationMs >= 300 && r.durationMs <= elapsed + 50, `durationMs ${r.durationMs}, the call took ${elapsed} ms`)
    }
  }
})

test('a killOnParentExit: false daemon is the user\'s: it outlives a launcher SIGKILL', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('death-daemon')
  t.after(() => killMarked(marker))
  const launcher = await currentLauncher()
  const name = `${marker}-daemon`
  const call = spawnCollect('bash', ['-c', 'exec -a "$0" sleep 1000', name], { timeout: 0, killOnParentExit: false }).catch((e) => e)
  const [pid] = await waitFor(() => {
    const pids = processesNamed(name)
    return pids.length === 1 && pids
  }, { what: 'the daemon to run' })
  const daemon = procStat(pid)
  t.after(() => {
    if (sameProcessAlive(daemon)) process.kill(pid, 'SIGKILL')
  })
  await killLauncher(launcher)
  const r = await settlesWithin(call, 10_000, 'the daemon\'s call')
  assert.equal(r.code, 'ERR_LAUNCHER_EXITED', 'nobody can report the daemon\'s exit any more')
  await sleep(500)
  assert.ok(sameProcessAlive(daemon), 'the daemon still runs')
})

// A launcher binary that exits at once, chosen through TETHERED_LAUNCHER_PATH, in a Node
// process of its own: the addon gives up after a few starts instead of forking in a loop,
// calls fail with a launcher error, the process is not kept alive, and after the cool-down a
// call tries once more.
const BROKEN_LAUNCHER_CLIENT = `
import { readFileSync } from 'node:fs'
const { spawnCollect } = await import(process.argv[1])
const codes = async (n) => (await Promise.all(Array.from({ length: n }, () => spawnCollect('true').then(() => 'ok', (e) => e.code))))
const first = [...await codes(10)]
for (let i = 0; i < 10; i++) first.push(...await codes(1))
const countStarts = () => readFileSync(process.env.STARTS_FILE, 'utf8').split('\\n').filter(Boolean).length
const startsBefore = countStarts()
await new Promise((resolve) => setTimeout(resolve, Number(process.env.COOL_DOWN_MS)))
const later = await codes(3)
console.log(JSON.stringify({ first, startsBefore, later, startsAfter: countStarts() }))
`

test('a launcher that dies at once is started a bounded number of times, and calls fail with a launcher error', { timeout: 60_000 }, async (t) => {
  const { dir, remove } = tempDir()
  t.after(remove)
  const broken = join(dir, 'broken-launcher')
  const starts = join(dir, 'starts')
  writeFileSync(starts, '')
  writeFileSync(broken, `#!/bin/sh\necho started >> "$STARTS_FILE"\nexit 1\n`)
  chmodSync(broken, 0o755)
  const node = spawn(process.execPath, ['--input-type=module', '-e', BROKEN_LAUNCHER_CLIENT, pathToFileURL(join(PACKAGE_ROOT, 'index.mjs')).href], {
    env: { ...process.env, TETHERED_LAUNCHER_PATH: broken, STARTS_FILE: starts, COOL_DOWN_MS: '5500' },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.after(() => node.kill('SIGKILL'))
  let out = ''
  let err = ''
  node.stdout.on('data', (d) => (out += d))
  node.stderr.on('data', (d) => (err += d))
  const exited = new Promise((resolve) => node.on('exit', (code, signal) => resolve({ code, signal })))
  const exit = await settlesWithin(exited, 30_000, 'the Node process using a broken launcher (it must exit by itself)')
  assert.equal(exit.code, 0, `stderr: ${err}`)
  const report = JSON.parse(out)
  const launcherErrors = new Set(['ERR_LAUNCHER_EXITED', 'ERR_LAUNCHER_START'])
  for (const code of [...report.first, ...report.later]) assert.ok(launcherErrors.has(code), `a call failed with ${code}`)
  assert.ok(report.startsBefore >= 1 && report.startsBefore <= 5, `${report.startsBefore} launchers started for 20 calls`)
  assert.equal(report.first.at(-1), 'ERR_LAUNCHER_START', `the last calls are refused: ${report.first}`)
  assert.ok(report.startsAfter - report.startsBefore === 1, `after the cool-down one more start: ${report.startsBefore} → ${report.startsAfter}`)
})

test('TETHERED_LAUNCHER_PATH naming a missing file: ERR_LAUNCHER_START, not a hang', { timeout: 30_000 }, async (t) => {
  const missing = join(PACKAGE_ROOT, 'no-such-launcher')
  assert.ok(!existsSync(missing))
  const node = spawn(process.execPath, ['--input-type=module', '-e', `
const { spawnCollect, spawn } = await import(process.argv[1])
const e = await spawnCollect('true').catch((e) => e)
const child = spawn('true')
const sync = await child.exited.catch((e) => e)
console.log(JSON.stringify({ code: e.code, message: e.message, syncCode: sync.code, syncPid: child.pid ?? null }))
`, pathToFileURL(join(PACKAGE_ROOT, 'index.mjs')).href], {
    env: { ...process.env, TETHERED_LAUNCHER_PATH: missing },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.after(() => node.kill('SIGKILL'))
  let out = ''
  node.stdout.on('data', (d) => (out += d))
  const exit = await settlesWithin(new Promise((resolve) => node.on('exit', resolve)), 20_000, 'the Node process')
  assert.equal(exit, 0)
  const r = JSON.parse(out)
  assert.equal(r.code, 'ERR_LAUNCHER_START')
  assert.match(r.message, /no-such-launcher/)
  assert.equal(r.syncCode, 'ERR_LAUNCHER_START', 'spawn() on the spawn socket fails the same way')
  assert.equal(r.syncPid, null, 'no process started')
})
