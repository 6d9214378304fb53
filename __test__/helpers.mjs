// Shared helpers for the tethered test suite: /proc scanning (processes, fds, zombies),
// polling, markers and cleanup. Linux only, like the package.
import { readdirSync, readFileSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'

export const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures')

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
  // "pid (comm) S ppid pgrp ..." — comm may hold spaces and parentheses.
  const close = text.lastIndexOf(')')
  const rest = text.slice(close + 2).split(' ')
  return { pid: Number(pid), state: rest[0], ppid: Number(rest[1]), pgrp: Number(rest[2]) }
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

/** Children of this process that died and were never reaped. */
export function zombieChildren() {
  return allPids().filter((pid) => {
    const stat = procStat(pid)
    return stat !== null && stat.ppid === process.pid && stat.state === 'Z'
  })
}

/** Number of file descriptors this process has open. */
export function countOpenFds() {
  return readdirSync('/proc/self/fd').length
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
  for (const pid of processesWithMarker(marker)) {
    const stat = procStat(pid)
    if (stat && stat.pgrp > 1 && stat.pgrp !== process.pid) killGroup(stat.pgrp)
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

/**
 * A shell snippet that starts `sleep 1000` under bash with argv[0] set to `name`, so the
 * sleeper can be found by scanning /proc for its marker.
 */
export function markedSleeper(name) {
  return `bash -c 'exec -a "$0" sleep 1000' '${name}'`
}
