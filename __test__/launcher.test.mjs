// The launcher (DESIGN §2, issue 3): one helper process per Node process, a child of it, that
// forks every child. Seen from outside through /proc: who is whose parent, which process leads
// which group and session, what happens when someone kills the launcher, and that thousands of
// spawns leave no fds and no zombies behind, in this process or in the launcher.
//
// Every test here talks to this process's launcher; node:test runs them one after another, and
// test files run in processes of their own, so no other file's calls touch this launcher.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'
import { spawnCollect, runProcess } from 'tethered'
import {
  uniqueMarker,
  processesWithMarker,
  processesNamed,
  killMarked,
  markedSleeper,
  waitFor,
  settlesWithin,
  procStat,
  procStatus,
  sameProcessAlive,
  pidAlive,
  launchersOf,
  zombieChildren,
  zombieChildrenOf,
  countOpenFds,
} from './helpers.mjs'

const FD_TOLERANCE = 2

/** This process's one live launcher, started by a first call if need be; its procStat. */
async function currentLauncher() {
  await spawnCollect('true')
  const launchers = launchersOf()
  assert.equal(launchers.length, 1, `exactly one live launcher under this process: ${launchers}`)
  return procStat(launchers[0])
}

/** Starts `sleep 1000` with argv[0] `name` through spawnCollect; resolves once it runs. */
async function startSleeper(t, name, options = {}) {
  const call = spawnCollect('bash', ['-c', 'exec -a "$0" sleep 1000', name], { timeout: 0, ...options })
  // Observe the settlement now, so a rejection is never unhandled while the test looks elsewhere.
  const settled = call.then(
    (value) => ({ ok: true, value }),
    (error) => ({ ok: false, error }),
  )
  const [pid] = await waitFor(() => {
    const pids = processesNamed(name)
    return pids.length === 1 && pids
  }, { what: `${name} to run` })
  const stat = procStat(pid)
  t.after(() => {
    if (stat && sameProcessAlive(stat)) process.kill(pid, 'SIGKILL')
  })
  return { pid, settled }
}

test('the guardian is a child of this process, the launcher its child and the parent of every child', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('launcher-parent')
  t.after(() => killMarked(marker))
  const launcher = await currentLauncher()
  const guardian = Number(procStatus(launcher.pid).PPid)
  assert.equal(Number(procStatus(guardian).PPid), process.pid)
  assert.equal(readFileSync(`/proc/${guardian}/comm`, 'utf8').trim(), 'tethered-guard', 'the guardian names itself')

  const { pid, settled } = await startSleeper(t, `${marker}-child`)
  const status = procStatus(pid)
  assert.equal(Number(status.PPid), launcher.pid, 'the child\'s parent (/proc/<pid>/status PPid) is the launcher')
  const stat = procStat(pid)
  const own = procStat(process.pid)
  assert.equal(stat.pgrp, pid, 'a normal child leads its own process group')
  assert.notEqual(stat.session, pid, 'a normal child does not lead a session')
  assert.equal(stat.session, own.session, 'a normal child stays in this process\'s session')

  process.kill(pid, 'SIGKILL')
  const r = await settlesWithin(settled, 10_000)
  assert.equal(r.ok, true)
  assert.equal(r.value.signal, 'SIGKILL')
  assert.equal(r.value.pid, pid, 'the pid the call reports is the process found in /proc')
})

test('a detached child (killOnParentExit: false) leads a session of its own', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('launcher-detached')
  t.after(() => killMarked(marker))
  const { pid, settled } = await startSleeper(t, `${marker}-daemon`, { killOnParentExit: false })
  const stat = procStat(pid)
  assert.equal(stat.session, pid, 'session id == pid: it called setsid()')
  assert.equal(stat.pgrp, pid, 'and so leads its process group too')
  assert.notEqual(stat.session, procStat(process.pid).session)

  process.kill(pid, 'SIGKILL')
  const r = await settlesWithin(settled, 10_000)
  assert.equal(r.ok, true, 'the call still reports its exit')
  assert.equal(r.value.signal, 'SIGKILL')
})

// The parent-death signal is not in /proc; the child reads its own with prctl(PR_GET_PDEATHSIG).
const PYTHON = '/usr/bin/python3'
const REPORT_SELF = `
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
sig = ctypes.c_int(-1)
assert libc.prctl(2, ctypes.byref(sig), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
print(json.dumps({"pdeathsig": sig.value, "pid": os.getpid(), "ppid": os.getppid(),
                  "pgrp": os.getpgrp(), "sid": os.getsid(0)}))
`

test('a normal child has SIGKILL as its parent-death signal, a detached child none', { timeout: 60_000, skip: !existsSync(PYTHON) && `${PYTHON} is missing` }, async () => {
  const launcher = await currentLauncher()
  const normal = await spawnCollect(PYTHON, ['-c', REPORT_SELF])
  assert.equal(normal.exitCode, 0, normal.stderr)
  const n = JSON.parse(normal.stdout)
  assert.equal(n.pdeathsig, 9, 'SIGKILL when the launcher dies')
  assert.equal(n.ppid, launcher.pid)
  assert.equal(n.pgrp, n.pid)
  assert.notEqual(n.sid, n.pid)

  const detached = await spawnCollect(PYTHON, ['-c', REPORT_SELF], { killOnParentExit: false })
  assert.equal(detached.exitCode, 0, detached.stderr)
  const d = JSON.parse(detached.stdout)
  assert.equal(d.pdeathsig, 0, 'a deliberate daemon does not die with the launcher')
  assert.equal(d.sid, d.pid)
})

test('the launcher killed mid-call: calls in flight fail with ERR_LAUNCHER_EXITED, their children die, the next call starts a new launcher', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('launcher-killed')
  t.after(() => killMarked(marker))
  const old = await currentLauncher()
  t.after(() => {
    if (sameProcessAlive(old)) process.kill(old.pid, 'SIGKILL')
  })
  const inFlight = []
  for (let i = 0; i < 3; i++) inFlight.push(await startSleeper(t, `${marker}-collect-${i}`))
  const runName = `${marker}-run`
  const run = runProcess('bash', ['-c', 'exec -a "$0" sleep 1000', runName], { timeout: 0 })
  await waitFor(() => processesNamed(runName).length === 1, { what: 'the runProcess child to run' })
  for (const { pid } of inFlight) assert.equal(Number(procStatus(pid).PPid), old.pid)

  process.kill(old.pid, 'SIGKILL')

  for (const { settled } of inFlight) {
    const r = await settlesWithin(settled, 10_000, 'a spawnCollect call in flight')
    assert.equal(r.ok, false, `rejects: ${JSON.stringify(r.value)}`)
    assert.equal(r.error.code, 'ERR_LAUNCHER_EXITED')
    assert.ok(r.error instanceof Error)
    assert.match(r.error.message, /launcher/)
  }
  // runProcess never rejects: a launcher that died is reported in the result, with no exit code.
  const r = await settlesWithin(run, 10_000, 'the runProcess call in flight')
  assert.equal(r.ok, false)
  assert.equal(r.code, null)
  assert.equal(r.signal, null)
  assert.equal(r.error?.code, 'ERR_LAUNCHER_EXITED')

  // The children had the launcher's death as their parent-death signal.
  await waitFor(() => processesWithMarker(marker).length === 0, { what: 'the children of the dead launcher to die' })

  const after = await spawnCollect('echo', ['after'])
  assert.equal(after.stdout, 'after\n')
  const fresh = launchersOf()
  assert.equal(fresh.length, 1, `one live launcher: ${fresh}`)
  assert.ok(!sameProcessAlive(old), 'the old launcher is gone')
  const now = procStat(fresh[0])
  assert.ok(now.pid !== old.pid || now.starttime !== old.starttime, 'a new launcher')
  const child = await startSleeper(t, `${marker}-after`)
  assert.equal(Number(procStatus(child.pid).PPid), now.pid, 'the new launcher forks the next children')
  process.kill(child.pid, 'SIGKILL')
  assert.equal((await settlesWithin(child.settled, 10_000)).value.signal, 'SIGKILL')
})

// Only the leader gets the parent-death signal; the rest of its process group is killed by the
// addon when it sees the launcher's socket close.
test('the launcher killed mid-call: the rest of the call\'s process group dies too', { timeout: 60_000 }, async (t) => {
  const marker = uniqueMarker('launcher-killed-tree')
  t.after(() => killMarked(marker))
  const old = await currentLauncher()
  const name = (n) => `${marker}-${n}`
  const call = spawnCollect('sh', ['-c', `${markedSleeper(name('a'))} & ${markedSleeper(name('b'))} & wait`], { timeout: 0 }).catch((e) => e)
  await waitFor(() => processesNamed(name('a')).length === 1 && processesNamed(name('b')).length === 1, { what: 'the tree to run' })
  process.kill(old.pid, 'SIGKILL')
  assert.equal((await settlesWithin(call, 10_000)).code, 'ERR_LAUNCHER_EXITED')
  try {
    await waitFor(() => processesWithMarker(marker).length === 0, { timeout: 5_000, what: 'the whole group to die' })
  } catch (e) {
    const left = processesWithMarker(marker).map((pid) => `${pid} (ppid ${procStat(pid)?.ppid})`)
    throw new Error(`${e.message}; still running: ${left.join(', ')}`)
  }
})

test('a launcher that died is reaped, without waiting for the next call', { timeout: 120_000 }, async (t) => {
  const marker = uniqueMarker('launcher-reaped')
  t.after(() => killMarked(marker))
  // Killed while idle (even rounds) or mid-call (odd rounds), then no further call: the dead
  // launcher must not stay a zombie child of this process. Reaping races with the launcher's
  // exit, so one round can pass by luck; 30 rounds do not.
  for (let round = 0; round < 30; round++) {
    const old = await currentLauncher()
    let inFlight = null
    if (round % 2 === 1) inFlight = await startSleeper(t, `${marker}-${round}`)
    process.kill(old.pid, 'SIGKILL')
    if (inFlight) assert.equal((await settlesWithin(inFlight.settled, 10_000)).error?.code, 'ERR_LAUNCHER_EXITED')
    const reaped = () => {
      const now = procStat(old.pid)
      return now === null || now.starttime !== old.starttime
    }
    await waitFor(reaped, { timeout: 5_000 }).catch(() => {
      assert.fail(`round ${round} (${inFlight ? 'mid-call' : 'idle'}): the killed launcher ${old.pid} is still a ${procStat(old.pid)?.state === 'Z' ? 'zombie' : 'process'} under this process 5 s later`)
    })
  }
})

test('the launcher killed while idle: a call made after its death starts a new launcher', { timeout: 120_000 }, async () => {
  // A call that starts after the old launcher is dead (a zombie or gone: its socket is closed)
  // is not "in flight" when it died; it must get a new launcher, not ERR_LAUNCHER_EXITED.
  // The client notices the death asynchronously, so rounds are repeated to catch a race.
  for (let round = 0; round < 200; round++) {
    const old = await currentLauncher()
    process.kill(old.pid, 'SIGKILL')
    // Spin (SIGKILL takes effect within microseconds): the call goes out as soon as the launcher
    // is dead, which is when the race, if any, shows.
    const deadline = Date.now() + 10_000
    while (pidAlive(old.pid)) if (Date.now() > deadline) assert.fail('the launcher did not die of SIGKILL')
    let r
    try {
      r = await settlesWithin(spawnCollect('echo', ['ok']), 10_000)
    } catch (e) {
      assert.fail(`round ${round}: the first call after the launcher's death failed: ${e.code} ${e.message}`)
    }
    assert.equal(r.stdout, 'ok\n')
  }
})

test('10,000 sequential spawnCollect("true"): no fd growth and no zombies, here or in the launcher', { timeout: 600_000 }, async (t) => {
  const launcher = await currentLauncher()
  for (let i = 0; i < 20; i++) await spawnCollect('true') // warm-up: the runtime's own fds
  const before = { node: countOpenFds(), launcher: countOpenFds(launcher.pid) }
  const started = performance.now()
  for (let i = 0; i < 10_000; i++) {
    const r = await spawnCollect('true')
    if (r.exitCode !== 0) assert.fail(`call ${i}: ${JSON.stringify(r)}`)
  }
  const seconds = (performance.now() - started) / 1000
  t.diagnostic(`10,000 sequential spawns took ${seconds.toFixed(1)} s (${((seconds * 1e3) / 10_000).toFixed(2)} ms each)`)

  assert.ok(sameProcessAlive(launcher), 'the same launcher served every call')
  let after
  await waitFor(() => {
    after = { node: countOpenFds(), launcher: countOpenFds(launcher.pid) }
    return after.node <= before.node + FD_TOLERANCE && after.launcher <= before.launcher + FD_TOLERANCE
  }, { timeout: 5_000 }).catch(() => {})
  t.diagnostic(`open fds before/after: node ${before.node}/${after.node}, launcher ${before.launcher}/${after.launcher}`)
  assert.ok(after.node <= before.node + FD_TOLERANCE, `node fds: ${before.node} before, ${after.node} after`)
  assert.ok(after.launcher <= before.launcher + FD_TOLERANCE, `launcher fds: ${before.launcher} before, ${after.launcher} after`)
  await waitFor(() => zombieChildren().length === 0 && zombieChildrenOf(launcher.pid).length === 0, {
    timeout: 5_000,
    what: 'no zombie children of this process or of the launcher',
  }).catch((e) => {
    throw new Error(`${e.message}: ours ${zombieChildren()}, the launcher's ${zombieChildrenOf(launcher.pid)}`)
  })
})
