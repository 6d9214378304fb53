// Shared helpers for the tethered test suite: /proc scanning (processes, fds, zombies),
// polling, markers and cleanup. Linux only, like the package.
import { readdirSync, readFileSync, readlinkSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname, basename } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

/**
 * A `limits.memory` under which every Node that `engines` allows starts with room to work. Node 24
 * and later make V8's 512 MiB code range writable at start-up and RLIMIT_DATA counts it, so they
 * need about 600 MiB before running a line (Node 18 to 22: under 128 MiB).
 */
export const NODE_MEMORY_LIMIT = 1024 * 2 ** 20

/** Absolute path of a fixture script. */
export function fixture(name) {
  return join(FIXTURES, name)
}

let markerCount = 0
/** A string unlikely to appear in any other process's argv. */
export function uniqueMarker(label = 'm') {
  markerCount += 1
  return `tethered-test-${label}-${process.pid}-${markerCount}-${randomBytes(4).toString('hex')}`
}

/** Parses /proc/<pid>/stat; null when the process is gone. */
export function procStat(pid) {
  let text
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return null
  }
  // "pid (comm) S ppid pgrp session ..." — comm may hold spaces and parentheses.
  const close = text.lastIndexOf(')')
  const rest = text.slice(close + 2).split(' ')
  return {
    pid: Number(pid),
    state: rest[0],
    ppid: Number(rest[1]),
    pgrp: Number(rest[2]),
    session: Number(rest[3]),
    // Field 22, in clock ticks since boot: with the pid, it names one process (pids get reused).
    starttime: Number(rest[19]),
  }
}

/** True while the process that had `stat` (from procStat) still runs: same pid, same start. */
export function sameProcessAlive(stat) {
  const now = procStat(stat.pid)
  return now !== null && now.starttime === stat.starttime && now.state !== 'Z' && now.state !== 'X'
}

/** Fields of /proc/<pid>/status as strings by name (`PPid`, `State`, ...); null when gone. */
export function procStatus(pid) {
  let text
  try {
    text = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return null
  }
  const fields = {}
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':')
    if (colon > 0) fields[line.slice(0, colon)] = line.slice(colon + 1).trim()
  }
  return fields
}

function allPids() {
  return readdirSync('/proc').filter((name) => /^\d+$/.test(name)).map(Number)
}

/** True while the process exists and is not a zombie (a zombie has already died). */
export function pidAlive(pid) {
  const stat = procStat(pid)
  return stat !== null && stat.state !== 'Z' && stat.state !== 'X'
}

/** Live processes (not this one) whose argv contains `marker`. */
export function processesWithMarker(marker) {
  const found = []
  for (const pid of allPids()) {
    if (pid === process.pid) continue
    let cmdline
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    } catch {
      continue
    }
    if (cmdline.includes(marker) && pidAlive(pid)) found.push(pid)
  }
  return found
}

/** Live members of process group `pgid`. */
export function groupMembers(pgid) {
  return allPids().filter((pid) => {
    const stat = procStat(pid)
    return stat !== null && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X'
  })
}

/** Live (not zombie) processes whose argv[0] is exactly `name`. */
export function processesNamed(name) {
  const prefix = `${name}\0`
  return allPids().filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith(prefix) && pidAlive(pid)
    } catch {
      return false
    }
  })
}

/** Children of `ppid` that died and were never reaped. */
export function zombieChildrenOf(ppid) {
  return allPids().filter((pid) => {
    const stat = procStat(pid)
    return stat !== null && stat.ppid === ppid && stat.state === 'Z'
  })
}

/** Children of this process that died and were never reaped. */
export function zombieChildren() {
  return zombieChildrenOf(process.pid)
}

/** Live (not zombie) children of `ppid`. */
export function childrenOf(ppid) {
  return allPids().filter((pid) => {
    const stat = procStat(pid)
    return stat !== null && stat.ppid === ppid && stat.state !== 'Z' && stat.state !== 'X'
  })
}

/** The launcher binary's file name (DESIGN §2: one helper process per Node process). */
export const LAUNCHER_NAME = 'tethered-launcher'

/** True when `pid` runs the tethered launcher binary (by its executable, or its argv[0]). */
export function isLauncher(pid) {
  try {
    // A rebuilt binary shows as "<path> (deleted)" in a launcher started before the rebuild.
    if (basename(readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '')) === LAUNCHER_NAME) return true
  } catch {}
  try {
    return basename(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0]) === LAUNCHER_NAME
  } catch {
    return false
  }
}

/**
 * Live guardians whose parent is `ppid` (by default, this process): the process the addon starts,
 * which forks the launcher and kills what the launcher leaves should it die.
 */
export function guardiansOf(ppid = process.pid) {
  return childrenOf(ppid).filter(isLauncher)
}

/** Live launchers (the processes that fork the children) of `ppid`'s guardians. */
export function launchersOf(ppid = process.pid) {
  return guardiansOf(ppid).flatMap((guardian) => childrenOf(guardian).filter(isLauncher))
}

/** Number of file descriptors process `pid` (by default this one) has open; null when gone. */
export function countOpenFds(pid = 'self') {
  try {
    return readdirSync(`/proc/${pid}/fd`).length
  } catch {
    return null
  }
}

/** Polls `cond` until it returns a truthy value (returned) or `timeout` ms pass (throws). */
export async function waitFor(cond, { timeout = 10_000, interval = 20, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  for (;;) {
    const value = await cond()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`)
    await sleep(interval)
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * Resolves/rejects like `promise`, but fails with a clear error if it has not settled within
 * `ms` — so a hang is a test failure, not a stuck suite.
 */
export function settlesWithin(promise, ms, what = 'the call') {
  let timer
  const guard = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not settle within ${ms} ms`)), ms)
  })
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer))
}

/** Captures the settlement of a promise as a value: { ok, value } or { ok: false, error }. */
export async function outcome(promise) {
  try {
    return { ok: true, value: await promise }
  } catch (error) {
    return { ok: false, error }
  }
}

/** SIGKILLs a process group, ignoring one that is already gone. */
export function killGroup(pgid) {
  if (!Number.isInteger(pgid) || pgid <= 1) return
  try {
    process.kill(-pgid, 'SIGKILL')
  } catch {}
}

/** SIGKILLs every process (and its group) whose argv holds `marker`. */
export function killMarked(marker) {
  const ownGroup = procStat(process.pid)?.pgrp
  for (const pid of processesWithMarker(marker)) {
    const stat = procStat(pid)
    // Never our own group: a marked process started without a group of its own shares it.
    if (stat && stat.pgrp > 1 && stat.pgrp !== process.pid && stat.pgrp !== ownGroup) killGroup(stat.pgrp)
    try {
      process.kill(pid, 'SIGKILL')
    } catch {}
  }
}

/** A fresh temporary directory and its remover. */
export function tempDir() {
  const dir = mkdtempSync(join(tmpdir(), 'tethered-test-'))
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

/** Quotes `text` as one word for sh. */
export function shellQuote(text) {
  return `'${String(text).replace(/'/g, `'\\''`)}'`
}

/**
 * A shell snippet that starts `sleep 1000` under bash with argv[0] set to `name`, so the
 * sleeper can be found by scanning /proc for its marker.
 */
export function markedSleeper(name) {
  return `bash -c 'exec -a "$0" sleep 1000' '${name}'`
}

/**
 * A Supervisor or Pool 'exit'/'crashed' value without its resourceUsage, whose numbers differ
 * run to run, for deepEqual; throws unless resourceUsage has the documented shape.
 */
export function withoutUsage({ resourceUsage, ...value }) {
  const keys = Object.keys(resourceUsage ?? {}).sort().join()
  if (keys !== 'maxRss,systemCpuMs,userCpuMs' || !(resourceUsage.maxRss > 0)) {
    throw new Error(`not a resourceUsage: ${JSON.stringify(resourceUsage)}`)
  }
  return value
}
