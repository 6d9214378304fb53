// `npm run soak` — the chaos soak (issue 13): tethered's "nothing lost, nothing leaked, no
// orphans", tried as a hostile user would, by anyone, on their own machine.
//
// Why it is shaped this way:
// - The load runs in a child Node process (this same file with --load). Only from outside can
//   the soak time how long Node takes to exit by itself once everything is stopped, and only
//   from outside can it look for survivors after that process is gone.
// - Everything the load starts carries SOAK_MARKER=<unique> in its environment (the load sets it
//   in its own process.env, and every spawn, worker and the launcher inherit it), so a survivor
//   is found by scanning /proc/*/environ, whatever its parent or session became.
// - Every request and call is kept in a table of pending promises until it settles; what is
//   still pending a grace period after stop is **lost** — the one outcome tethered promises
//   never to produce. Rejections are fine and counted by code: chaos is supposed to cause them.
// - The verdict is mechanical: exit 1 if anything was lost, fds grew past a small bound,
//   zombies were left, a marked process survived, or Node did not exit by itself.
import { spawn as nodeSpawn } from 'node:child_process'
import { readFileSync, readdirSync, readlinkSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'

const HERE = dirname(fileURLToPath(import.meta.url))
const WORKER = join(HERE, 'fixtures', 'soak-worker.js')
const MIB = 1024 * 1024
const GRACE_MS = 10_000 // after stop, for the last calls to settle
const EXIT_LIMIT_MS = 10_000 // for Node to exit by itself
const FD_GROWTH_BOUND = 8

const HELP = `usage: node bench/soak.mjs [--minutes N] [--spawns N] [--kill-parent N]
  --minutes N      chaos soak of N minutes (default 10, fractions allowed): 2 Supervisors and a
                   Pool (size 2, maxAttempts 2) under crashes, hangs, outside SIGKILLs, 1 MiB
                   messages and stdout floods, with spawnCollect/runProcess/spawn alongside and
                   the launcher or its guardian SIGKILLed now and then. Exit 1 if anything was lost, leaked or
                   left alive.
  --spawns N       leak check: N sequential spawnCollect('true'); fds, zombies and launcher RSS
                   before/after.
  --kill-parent N  SIGKILLs a loaded child Node N times; counts marked survivors (setsid
                   escapees included, found by environment).`

// ---------------------------------------------------------------- /proc helpers

function procStat(pid) {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ')
    return { pid: Number(pid), state: rest[0], ppid: Number(rest[1]), rssPages: Number(rest[21]) }
  } catch {
    return null
  }
}

function allPids() {
  return readdirSync('/proc').filter((entry) => /^\d+$/.test(entry)).map(Number)
}

function fdCount() {
  return readdirSync('/proc/self/fd').length
}

function isLauncher(pid) {
  try {
    return basename(readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '')) === 'tethered-launcher'
  } catch {
    return false
  }
}

/** A live child of `ppid` running the launcher binary, or null. */
function launcherBinaryChildOf(ppid) {
  for (const pid of allPids()) {
    const stat = procStat(pid)
    if (stat?.ppid === ppid && stat.state !== 'Z' && isLauncher(pid)) return pid
  }
  return null
}

/** This process's live guardian (the launcher's parent, which the addon started), or null. */
function guardianPid() {
  return launcherBinaryChildOf(process.pid)
}

/** This process's live launcher (the guardian's child, which forks every child), or null. */
function launcherPid() {
  const guardian = guardianPid()
  return guardian && launcherBinaryChildOf(guardian)
}

/** Zombies among the children of this process, of its guardian and of its launcher. */
function zombieCount() {
  const parents = new Set([process.pid, guardianPid(), launcherPid()].filter(Boolean))
  return allPids().map(procStat).filter((s) => s && s.state === 'Z' && parents.has(s.ppid)).length
}

/** Live processes whose environment holds SOAK_MARKER=marker. */
function markedProcesses(marker) {
  const wanted = `SOAK_MARKER=${marker}`
  return allPids().filter((pid) => {
    if (pid === process.pid) return false
    try {
      if (!readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(wanted)) return false
    } catch {
      return false
    }
    const state = procStat(pid)?.state
    return state !== undefined && state !== 'Z' && state !== 'X'
  })
}

/** "pid ppid session: command line" of a process, for the survivors' report. */
function describe(pid) {
  try {
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
    const command = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
    return `pid ${pid}, ppid ${rest[1]}, session ${rest[3]}: ${command}`
  } catch {
    return `pid ${pid} (gone)`
  }
}

function killPids(pids) {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const pick = (items) => items[Math.floor(Math.random() * items.length)]
const mib = (bytes) => (bytes == null ? '?' : `${(bytes / MIB).toFixed(1)} MiB`)

// ---------------------------------------------------------------- the load (child process)

/** Counts of one kind of call: fired, resolved, rejected by code; `pending` holds the rest. */
class Tally {
  constructor() {
    this.fired = 0
    this.resolved = 0
    this.rejected = {}
    this.pending = new Set()
    this.slowestMs = 0
  }

  track(promise) {
    this.fired += 1
    const token = {}
    const start = Date.now()
    this.pending.add(token)
    const settled = () => {
      this.pending.delete(token)
      this.slowestMs = Math.max(this.slowestMs, Date.now() - start)
    }
    return promise.then(
      () => {
        this.resolved += 1
        settled()
      },
      (err) => {
        const code = err?.code ?? err?.name ?? 'untyped'
        this.rejected[code] = (this.rejected[code] ?? 0) + 1
        settled()
      },
    )
  }
}

/** A request mix: mostly answers, a steady share of every way a worker can go wrong. */
function requestBody(n) {
  const roll = Math.random()
  if (roll < 0.6) return { op: 'answer', n }
  if (roll < 0.7) return { op: 'fail', n }
  if (roll < 0.73) return { op: 'exit', n }
  if (roll < 0.75) return { op: 'sigkill', n }
  if (roll < 0.78) return { op: 'hang', n }
  if (roll < 0.85) return { op: 'stall', n, ms: 50 + Math.floor(Math.random() * 3000) }
  if (roll < 0.92) return { op: 'big', n }
  return { op: 'flood', n, bytes: 4 * MIB }
}

/** One call of the spawn family, of a kind chosen at random; returns [kind, promise]. */
function spawnCall(api) {
  const { spawnCollect, runProcess, spawn } = api
  switch (Math.floor(Math.random() * 9)) {
    case 0:
      return ['spawnCollect short', spawnCollect('echo', ['soak'])]
    case 1:
      return ['spawnCollect maxBuffer', spawnCollect('head', ['-c', String(8 * MIB), '/dev/zero'], { maxBuffer: MIB })]
    case 2:
      return ['spawnCollect timeout', spawnCollect('sleep', ['30'], { timeout: 150 })]
    case 3:
      return ['spawnCollect grandchild', spawnCollect('sh', ['-c', 'sleep 30 & echo x'], { timeout: 200 })]
    case 4:
      return ['runProcess short', runProcess('true')]
    case 5:
      return ['runProcess timeout', runProcess('sleep', ['30'], { timeout: 150 })]
    case 6:
      return ['spawnCollect setsid escapee', escapee(spawnCollect)]
    case 7:
      return ['spawn huge output', streamed(spawn('head', ['-c', String(16 * MIB), '/dev/zero']))]
    default:
      return ['spawn grandchild', grandchildHeld(spawn('sh', ['-c', 'sleep 30 & echo x'], { timeout: 200 }))]
  }
}

/**
 * The grandchild keeps stdout open after `sh` exited, so — as the README says — the streams
 * stay open until they are destroyed; the soak does that, as a user would, once `exited` settled.
 */
function grandchildHeld(child) {
  const release = () => {
    child.stdout?.destroy()
    child.stderr?.destroy()
  }
  child.exited.then(release, release)
  return streamed(child)
}

/** A grandchild that leaves its group and session: only the launcher's subreaping catches it. */
function escapee(spawnCollect) {
  return spawnCollect('sh', ['-c', 'setsid sleep 60 >/dev/null 2>&1 </dev/null & echo started'], { timeout: 1000 })
}

/** Settles once the child exited and its streams closed — a stream that never closes is lost. */
function streamed(child) {
  child.stdout?.resume()
  child.stderr?.resume()
  const closed = new Promise((resolve) => child.once('close', resolve))
  return Promise.all([child.exited, closed])
}

async function runLoad(minutes) {
  const api = await import('tethered')
  const { Supervisor, Pool, spawnCollect } = api
  const stats = { requests: new Map(), calls: new Map(), events: {}, outputBytes: 0, messages: 0 }
  const tally = (map, kind) => map.get(kind) ?? map.set(kind, new Tally()).get(kind)
  const countEvent = (name) => (stats.events[name] = (stats.events[name] ?? 0) + 1)

  await spawnCollect('true') // the launcher is up: the baseline counts its socket
  await sleep(200)
  const fdBaseline = fdCount()
  const samples = []
  const sample = (phase) => samples.push({ t: Math.round((Date.now() - started) / 1000), phase, rss: process.memoryUsage.rss(), fds: fdCount(), zombies: zombieCount() })

  const workerOptions = {
    modulePath: WORKER,
    stdio: 'pipe',
    restartDelay: 10,
    maxRestartDelay: 200,
    healthCheckInterval: 1000,
    healthCheckTimeout: 1500,
    stopTimeout: 2000,
  }
  const listen = (emitter, label) => {
    emitter.on('stdout', (chunk) => (stats.outputBytes += chunk.length))
    emitter.on('stderr', (chunk) => (stats.outputBytes += chunk.length))
    emitter.on('message', () => (stats.messages += 1))
    emitter.on('crashed', () => countEvent(`${label} crashed`))
    emitter.on('exhausted', () => countEvent(`${label} exhausted`))
    emitter.on('error', (err) => countEvent(`${label} error ${err.code ?? err.name}`))
  }
  const supervisors = [0, 1].map(() => new Supervisor({ ...workerOptions, maxRestarts: 1_000_000_000 }))
  supervisors.forEach((s) => listen(s, 'supervisor'))
  const pool = new Pool({ ...workerOptions, size: 2, maxAttempts: 2, maxRestarts: Infinity, requestTimeout: 5000 })
  listen(pool, 'pool')
  await Promise.all([...supervisors.map((s) => s.start()), pool.start()])
  // At least one setsid escapee per run, so --kill-parent always has one to find.
  await tally(stats.calls, 'spawnCollect setsid escapee').track(escapee(spawnCollect))

  const started = Date.now()
  const deadline = started + minutes * 60_000
  let running = true
  const loops = []

  // Requests: bounded concurrency, each with a timeout, to a Supervisor or the Pool.
  let n = 0
  for (let lane = 0; lane < 12; lane++) {
    loops.push((async () => {
      while (running) {
        const target = pick(['supervisor 0', 'supervisor 1', 'pool'])
        const client = target === 'pool' ? pool : supervisors[Number(target.slice(-1))]
        await tally(stats.requests, target).track(client.request(requestBody(n++), { timeout: 2000 }))
        // A supervisor between workers rejects at once; don't spin on it.
        if (target !== 'pool' && client.state !== 'running') await sleep(5)
      }
    })())
  }

  // The spawn family alongside: two lanes.
  for (let lane = 0; lane < 2; lane++) {
    loops.push((async () => {
      while (running) {
        let kind
        let promise
        try {
          ;[kind, promise] = spawnCall(api)
        } catch (err) {
          ;[kind, promise] = ['spawn threw', Promise.reject(err)]
        }
        await tally(stats.calls, kind).track(promise)
      }
    })())
  }

  // Outside SIGKILLs of workers, launcher deaths, and samples.
  loops.push((async () => {
    let tick = 0
    while (running) {
      await sleep(500)
      tick += 1
      if (tick % 3 === 0) {
        const pids = [...supervisors.map((s) => s.pid), ...pool.stats().workers.map((w) => w.pid)].filter(Boolean)
        if (pids.length > 0) {
          killPids([pick(pids)])
          countEvent('worker SIGKILLed from outside')
        }
      }
      // The launcher, and every other time its guardian: either death must take all with it.
      if (tick % 10 === 0) {
        const guardiansTurn = tick % 20 === 0
        const victim = guardiansTurn ? guardianPid() : launcherPid()
        if (victim) {
          killPids([victim])
          countEvent(guardiansTurn ? 'guardian SIGKILLed' : 'launcher SIGKILLed')
        }
      }
      if (tick % 2 === 0) sample('load')
      if (Date.now() >= deadline) running = false
    }
  })())

  const laneEnds = loops.map((loop) => loop.then(() => Date.now()))
  await Promise.all(loops)
  const drainMs = Math.max(...(await Promise.all(laneEnds))) - deadline
  const stopping = Date.now()
  await Promise.all([pool.close(), ...supervisors.map((s) => s.stop())])
  const stopMs = Date.now() - stopping
  const graceEnd = Date.now() + GRACE_MS
  const pendingCount = () => [...stats.requests.values(), ...stats.calls.values()].reduce((sum, t) => sum + t.pending.size, 0)
  while (pendingCount() > 0 && Date.now() < graceEnd) await sleep(50)
  // Let the last reaped groups and closed sockets show in /proc before the final sample.
  await sleep(500)
  sample('stopped')

  const table = (map) => Object.fromEntries([...map].map(([kind, t]) => [kind, { fired: t.fired, resolved: t.resolved, rejected: t.rejected, lost: t.pending.size, slowestMs: t.slowestMs }]))
  return { minutes, drainMs, stopMs, fdBaseline, samples, requests: table(stats.requests), calls: table(stats.calls), events: stats.events, outputBytes: stats.outputBytes, messages: stats.messages }
}

// ---------------------------------------------------------------- the parent: run, time, judge

/** Starts this file with `args` in a child Node carrying the marker; resolves lines as they come. */
function startLoadProcess(args, marker, onLine) {
  const child = nodeSpawn(process.execPath, [fileURLToPath(import.meta.url), ...args], {
    env: { ...process.env, SOAK_MARKER: marker },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  let buffered = ''
  child.stdout.setEncoding('utf8')
  child.stdout.on('data', (text) => {
    buffered += text
    let newline
    while ((newline = buffered.indexOf('\n')) >= 0) {
      onLine(buffered.slice(0, newline))
      buffered = buffered.slice(newline + 1)
    }
  })
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, at: Date.now() })))
  return { child, exited }
}

function printCounts(title, counts) {
  console.log(`\n${title}`)
  console.log('  kind                         fired  resolved  lost  slowest  rejected by code')
  const total = { fired: 0, resolved: 0, lost: 0 }
  for (const [kind, c] of Object.entries(counts).sort()) {
    const rejected = Object.entries(c.rejected).map(([code, k]) => `${code} ${k}`).join(', ') || '-'
    console.log(`  ${kind.padEnd(26)} ${String(c.fired).padStart(7)} ${String(c.resolved).padStart(9)} ${String(c.lost).padStart(5)} ${`${(c.slowestMs / 1000).toFixed(1)}s`.padStart(8)}  ${rejected}`)
    total.fired += c.fired
    total.resolved += c.resolved
    total.lost += c.lost
  }
  console.log(`  ${'total'.padEnd(26)} ${String(total.fired).padStart(7)} ${String(total.resolved).padStart(9)} ${String(total.lost).padStart(5)}`)
  return total.lost
}

async function soak(minutes) {
  const marker = `soak-${process.pid}-${Date.now()}`
  let result = null
  let stoppedAt = null
  const { child, exited } = startLoadProcess(['--load', '--minutes', String(minutes)], marker, (line) => {
    if (line.startsWith('SOAK_RESULT ')) {
      result = JSON.parse(line.slice('SOAK_RESULT '.length))
      stoppedAt = Date.now()
    }
  })
  console.log(`soak: ${minutes} min, load in pid ${child.pid}, marker ${marker}`)
  const hardLimit = setTimeout(() => child.kill('SIGKILL'), minutes * 60_000 + 120_000)
  // Wait for the result (or the end), then give Node EXIT_LIMIT_MS to exit by itself.
  let exit = null
  while (stoppedAt === null && exit === null) exit = await Promise.race([exited, sleep(100).then(() => null)])
  if (exit === null) exit = await Promise.race([exited, sleep(EXIT_LIMIT_MS).then(() => null)])
  const exitedByItself = exit !== null
  if (!exitedByItself) {
    child.kill('SIGKILL')
    exit = await exited
  }
  clearTimeout(hardLimit)
  await sleep(500) // for the last SIGKILLed groups to be reaped
  const survivors = markedProcesses(marker)
  const described = survivors.map(describe)
  killPids(survivors)

  const failures = []
  if (result === null) {
    console.log(`\nthe load process ended without a result (exit code ${exit.code}, signal ${exit.signal})`)
    failures.push('no result')
  } else {
    const lost = printCounts('requests (Supervisor / Pool)', result.requests) + printCounts('calls (spawnCollect / runProcess / spawn)', result.calls)
    if (lost > 0) failures.push(`${lost} lost`)
    console.log('\nevents')
    for (const [name, count] of Object.entries(result.events).sort()) console.log(`  ${name.padEnd(40)} ${count}`)
    console.log(`  ${'worker output read'.padEnd(40)} ${mib(result.outputBytes)}`)
    console.log(`  ${'worker messages (1 MiB each)'.padEnd(40)} ${result.messages}`)

    console.log('\nNode over time (t s: RSS, fds, zombies)')
    const load = result.samples.filter((s) => s.phase === 'load')
    const shown = load.length <= 8 ? load : Array.from({ length: 8 }, (_, i) => load[Math.round((i * (load.length - 1)) / 7)])
    for (const s of [...shown, ...result.samples.filter((s) => s.phase === 'stopped')]) {
      console.log(`  ${String(s.t).padStart(5)}  ${s.phase.padEnd(8)} ${mib(s.rss).padStart(10)}  fds ${String(s.fds).padStart(4)}  zombies ${s.zombies}`)
    }
    const maxRss = Math.max(...result.samples.map((s) => s.rss))
    const final = result.samples.at(-1)
    console.log(`  peak RSS ${mib(maxRss)}; fds at start ${result.fdBaseline}, after stop ${final.fds}`)
    if (final.fds > result.fdBaseline + FD_GROWTH_BOUND) failures.push(`fds grew ${result.fdBaseline} → ${final.fds}`)
    if (final.zombies > 0) failures.push(`${final.zombies} zombies after stop`)
  }
  console.log(`\nafter stop`)
  if (result) console.log(`  the last call in flight at the deadline settled ${result.drainMs} ms after it`)
  if (result) console.log(`  pool.close() + supervisors' stop(): ${result.stopMs} ms (the pool drains what it holds)`)
  console.log(`  Node exited by itself: ${exitedByItself ? `yes, ${stoppedAt === null ? '?' : exit.at - stoppedAt} ms after the result` : `no (killed after ${EXIT_LIMIT_MS} ms)`}`)
  console.log(`  marked survivors: ${survivors.length}${survivors.length ? ' (now SIGKILLed):' : ''}`)
  for (const line of described.slice(0, 8)) console.log(`    ${line}`)
  if (described.length > 8) console.log(`    ... and ${described.length - 8} more`)
  const byCommand = {}
  for (const line of described) {
    const command = line.slice(line.indexOf(': ') + 2)
    byCommand[command] = (byCommand[command] ?? 0) + 1
  }
  for (const [command, count] of Object.entries(byCommand)) console.log(`    ${String(count).padStart(5)} × ${command}`)
  if (!exitedByItself) failures.push('Node did not exit by itself')
  if (survivors.length > 0) failures.push(`${survivors.length} survivors`)
  console.log(`\nverdict: ${failures.length === 0 ? 'PASS' : `FAIL — ${failures.join('; ')}`}`)
  return failures.length === 0
}

// ---------------------------------------------------------------- --spawns, --kill-parent

async function spawnsLeakCheck(count) {
  process.env.SOAK_MARKER = `soak-spawns-${process.pid}-${Date.now()}`
  const { spawnCollect } = await import('tethered')
  for (let i = 0; i < 20; i++) await spawnCollect('true') // warm-up: the runtime's own fds
  const measure = () => {
    const launcher = launcherPid()
    const rssPages = launcher ? procStat(launcher)?.rssPages : null
    return { fds: fdCount(), zombies: zombieCount(), launcher, launcherRss: rssPages == null ? null : rssPages * 4096 }
  }
  const before = measure()
  const start = Date.now()
  for (let i = 0; i < count; i++) await spawnCollect('true')
  const seconds = (Date.now() - start) / 1000
  await sleep(300)
  const after = measure()
  console.log(`spawns: ${count} sequential spawnCollect('true') in ${seconds.toFixed(1)} s (${Math.round(count / seconds)}/s)`)
  console.log('               before      after')
  console.log(`  fds        ${String(before.fds).padStart(8)} ${String(after.fds).padStart(10)}`)
  console.log(`  zombies    ${String(before.zombies).padStart(8)} ${String(after.zombies).padStart(10)}`)
  console.log(`  launcher   ${String(before.launcher).padStart(8)} ${String(after.launcher).padStart(10)}   (pid)`)
  console.log(`  launcher RSS ${mib(before.launcherRss).padStart(6)} ${mib(after.launcherRss).padStart(10)}`)
  const ok = after.fds <= before.fds + 2 && after.zombies === 0 && after.launcher === before.launcher
  console.log(`\nverdict: ${ok ? 'PASS' : 'FAIL'}`)
  return ok
}

async function killParent(rounds) {
  let survivorsTotal = 0
  let escapees = 0
  let unloaded = 0 // rounds where the load had not started all it should before the kill
  for (let round = 0; round < rounds; round++) {
    const marker = `soak-kp-${process.pid}-${Date.now()}-${round}`
    let ready = false
    const { child, exited } = startLoadProcess(['--load', '--minutes', '60'], marker, () => {})
    // Loaded: workers up and calls in flight — wait for the pool's and supervisors' workers.
    const until = Date.now() + 10_000
    while (!ready && Date.now() < until) {
      await sleep(100)
      ready = markedProcesses(marker).length >= 7 // the load, its launcher, 4 workers, 1 escapee
    }
    if (!ready) unloaded += 1
    await sleep(300 + Math.floor(Math.random() * 700))
    child.kill('SIGKILL')
    await exited
    // The guarantees act on parent death; give them a moment, as the README's tests do.
    await sleep(1500)
    const survivors = markedProcesses(marker)
    const ownSession = (() => {
      try {
        return Number(readFileSync(`/proc/${process.pid}/stat`, 'utf8').split(') ')[1].split(' ')[3])
      } catch {
        return null
      }
    })()
    for (const pid of survivors) {
      try {
        const session = Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[3])
        if (session !== ownSession) escapees += 1
      } catch {}
    }
    survivorsTotal += survivors.length
    killPids(survivors)
    if ((round + 1) % 10 === 0 || round + 1 === rounds) console.log(`kill-parent: round ${round + 1}/${rounds}, survivors so far ${survivorsTotal}`)
  }
  console.log(`kill-parent: ${rounds} loaded parents SIGKILLed; survivors ${survivorsTotal} (in another session: ${escapees}; all SIGKILLed); rounds killed before fully loaded: ${unloaded}`)
  console.log(`\nverdict: ${survivorsTotal === 0 ? 'PASS' : 'FAIL'}`)
  return survivorsTotal === 0
}

// ---------------------------------------------------------------- main

const { values } = parseArgs({
  options: {
    minutes: { type: 'string' },
    spawns: { type: 'string' },
    'kill-parent': { type: 'string' },
    load: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  },
})
const number = (text, name) => {
  const value = Number(text)
  if (!(value > 0)) {
    console.error(`--${name} wants a positive number, not ${text}\n${HELP}`)
    process.exit(2)
  }
  return value
}

if (values.help) {
  console.log(HELP)
} else if (values.load) {
  const result = await runLoad(number(values.minutes, 'minutes'))
  console.log(`SOAK_RESULT ${JSON.stringify(result)}`)
  // Nothing else: Node must now exit by itself, and the parent times it.
} else if (values.spawns !== undefined) {
  process.exitCode = (await spawnsLeakCheck(number(values.spawns, 'spawns'))) ? 0 : 1
} else if (values['kill-parent'] !== undefined) {
  process.exitCode = (await killParent(number(values['kill-parent'], 'kill-parent'))) ? 0 : 1
} else {
  process.exitCode = (await soak(number(values.minutes ?? '10', 'minutes'))) ? 0 : 1
}
