// spawnCollect resolves on every kind of exit: code 0, a non-zero code, death by a signal.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnCollect } from 'tethered'
import { uniqueMarker, processesWithMarker, killMarked, waitFor, settlesWithin, markedSleeper, tempDir } from './helpers.mjs'

test('exit code 0 resolves with exitCode 0 and no signal', async () => {
  const r = await spawnCollect('sh', ['-c', 'exit 0'])
  assert.equal(r.exitCode, 0)
  assert.equal(r.signal, null)
  assert.equal(r.timedOut, false)
})

test('non-zero exit codes resolve (not reject) with the code', async () => {
  for (const code of [1, 3, 42, 255]) {
    const r = await spawnCollect('sh', ['-c', `echo before; exit ${code}`])
    assert.equal(r.exitCode, code)
    assert.equal(r.signal, null)
    assert.equal(r.stdout, 'before\n', 'output is kept on a failing exit')
  }
})

test('death by SIGKILL resolves with signal SIGKILL and exitCode null', async () => {
  const r = await spawnCollect('sh', ['-c', 'echo partial; kill -KILL $$'])
  assert.equal(r.signal, 'SIGKILL')
  assert.equal(r.exitCode, null)
  assert.equal(r.timedOut, false)
  assert.equal(r.stdout, 'partial\n')
})

test('other fatal signals are reported by their Node names', async () => {
  for (const sig of ['SIGTERM', 'SIGSEGV', 'SIGINT', 'SIGUSR1', 'SIGABRT']) {
    const r = await spawnCollect('sh', ['-c', `kill -${sig.slice(3)} $$`])
    assert.equal(r.signal, sig)
    assert.equal(r.exitCode, null)
  }
})

test('a child killed from outside reports the signal, and timedOut stays false', { timeout: 30_000 }, async (t) => {
  const marker = uniqueMarker('ext-kill')
  t.after(() => killMarked(marker))
  const call = spawnCollect('sh', ['-c', `exec ${markedSleeper(marker)}`])
  const [pid] = await waitFor(() => {
    const pids = processesWithMarker(marker)
    return pids.length ? pids : null
  }, { what: 'the marked sleeper' })
  process.kill(pid, 'SIGKILL')
  const r = await settlesWithin(call, 10_000)
  assert.equal(r.pid, pid)
  assert.equal(r.signal, 'SIGKILL')
  assert.equal(r.exitCode, null)
  assert.equal(r.timedOut, false)
})

test('the child leads its own process group (pgid === pid), not ours', async () => {
  // /proc/self/stat field 5 is the process group of the reading process (the child itself).
  const r = await spawnCollect('sh', ['-c', 'echo $$; cut -d" " -f5 /proc/$$/stat'])
  const [shellPid, pgid] = r.stdout.trim().split('\n').map(Number)
  assert.equal(shellPid, r.pid)
  assert.equal(pgid, r.pid)
  assert.notEqual(pgid, process.pid)
})

// Not spelled out in DESIGN.md, but child_process (libuv) resets every signal disposition in
// the child: a replacement must not pass on the signals Node itself ignores (SIGPIPE, SIGXFSZ).
// Only the standard signals 1-31 are checked (glibc's posix_spawn handles its internal 32/33).
test('the child starts with no ignored or blocked standard signals (as child_process gives it)', async () => {
  const r = await spawnCollect('grep', ['-E', '^Sig(Ign|Blk):', '/proc/self/status'])
  const fields = Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(/:\s+/)))
  const standard = (hex) => BigInt('0x' + hex) & 0x7fffffffn
  const names = (mask) => [...Array(31).keys()].filter((i) => (mask >> BigInt(i)) & 1n).map((i) => i + 1)
  assert.deepEqual(names(standard(fields.SigBlk)), [], 'blocked signal numbers')
  assert.deepEqual(names(standard(fields.SigIgn)), [], 'ignored signal numbers')
})

test('a child passing RLIMIT_FSIZE dies of SIGXFSZ, as it would under child_process', async (t) => {
  const dir = tempDir()
  t.after(dir.remove)
  const r = await spawnCollect('sh', ['-c', 'ulimit -f 1; exec head -c 100000 /dev/zero > big'], { cwd: dir.dir })
  assert.equal(r.signal, 'SIGXFSZ', `exitCode ${r.exitCode}, stderr ${JSON.stringify(r.stderr)}`)
})
