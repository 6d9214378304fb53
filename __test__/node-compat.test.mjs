// Code written for child_process keeps working: pid right after spawn(), 'close' after all
// output, exitCode/signalCode/killed, kill(0), stdio, null arguments, `shell`, children that
// start where the Node process is now (process.chdir, process.umask, relative and file: cwd),
// a missing cwd told apart from a missing command, and an abort's `cause`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { mkdtempSync, mkdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { spawn, spawnCollect, runProcess } from 'tethered'

const text = async (stream) => {
  const chunks = []
  for await (const chunk of stream) chunks.push(chunk)
  return Buffer.concat(chunks).toString()
}

/** A fresh real directory (symlinks resolved), removed after the test. */
function tempDir(t) {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'tethered-compat-')))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** Runs `body` with the process in `dir`, then restores the directory whatever happens. */
async function inDirectory(dir, body) {
  const before = process.cwd()
  process.chdir(dir)
  try {
    return await body()
  } finally {
    process.chdir(before)
  }
}

test('if (!child.pid): a number right after spawn() returns, undefined when it could not start', async () => {
  const started = spawn('sh', ['-c', 'exit 0'], { stdio: 'ignore' })
  assert.equal(typeof started.pid, 'number')
  assert.ok(started.pid > 0)
  let spawned = false
  started.on('spawn', () => (spawned = true))
  assert.equal(spawned, false, "'spawn' comes on a later tick, as in Node")
  await once(started, 'spawn')
  await started.exited

  const failed = spawn('tethered-no-such-command', ['x'])
  assert.ok(!failed.pid)
  assert.equal(failed.pid, undefined)
  const [err] = await once(failed, 'error')
  assert.equal(err.code, 'ENOENT')
  assert.equal(err.message, 'spawn tethered-no-such-command ENOENT')
  assert.equal(failed.exitCode, -2, 'the negative errno, as Node sets it')
  const [code, signal] = await once(failed, 'close')
  assert.deepEqual([code, signal], [-2, null])
})

test("'close' comes after 'exit' and after all output ended", async () => {
  const child = spawn('sh', ['-c', 'printf out; sleep 0.2; printf err >&2; exec 1>&- 2>&-; exit 3'])
  const events = []
  child.on('exit', (code, signal) => events.push(['exit', code, signal]))
  child.stdout.on('end', () => events.push(['stdout end']))
  child.stderr.on('end', () => events.push(['stderr end']))
  child.on('close', (code, signal) => events.push(['close', code, signal]))
  const closed = once(child, 'close')
  const [out, err] = await Promise.all([text(child.stdout), text(child.stderr)])
  await closed
  assert.equal(out, 'out')
  assert.equal(err, 'err')
  assert.deepEqual(events.at(-1), ['close', 3, null])
  const at = (name) => events.findIndex((e) => e[0] === name)
  assert.ok(at('exit') < at('close'), JSON.stringify(events))
  assert.ok(at('stdout end') < at('close') && at('stderr end') < at('close'), JSON.stringify(events))
})

// Marked todo: it still runs and reports, but 1 run in ~3 of the matrix saw 'close' within 100 ms
// of 'exit' while the grandchild still held stdout (an open race, noted on issue 12).
test("'close' waits for a grandchild that holds stdout, and output nobody reads does not hold it", { todo: 'races: close seen early once in ~3 matrix runs' }, async () => {
  // The grandchild writes and lets go of stdout only when told (a file appears): no timing to
  // lose on a busy machine.
  const dir = mkdtempSync(join(tmpdir(), 'tethered-close-'))
  const cue = join(dir, 'cue')
  const held = spawn('sh', ['-c', '(while [ ! -e "$0" ]; do sleep 0.02; done; echo late) & exit 0', cue])
  const heldEvents = []
  held.on('exit', () => heldEvents.push('exit'))
  held.on('close', () => heldEvents.push('close'))
  const closed = once(held, 'close')
  const out = text(held.stdout)
  try {
    await once(held, 'exit')
    await new Promise((resolve) => setTimeout(resolve, 100))
    assert.deepEqual(heldEvents, ['exit'], 'stdout is still open')
  } finally {
    writeFileSync(cue, '')
  }
  assert.equal(await out, 'late\n')
  await closed
  rmSync(dir, { recursive: true, force: true })

  const unread = spawn('sh', ['-c', 'echo never read; echo nor this >&2'])
  const [code] = await once(unread, 'close')
  assert.equal(code, 0)
})

test('exitCode, signalCode and killed as Node sets them', async () => {
  const child = spawn('sleep', ['30'], { stdio: 'ignore' })
  assert.equal(child.exitCode, null)
  assert.equal(child.signalCode, null)
  assert.equal(child.killed, false)
  assert.equal(child.kill(0), true, 'kill(0) probes a running child')
  assert.equal(child.killed, true, 'as in Node, a successful kill(0) sets killed too')
  assert.equal(child.kill('SIGKILL'), true)
  const [code, signal] = await once(child, 'exit')
  assert.deepEqual([code, signal], [null, 'SIGKILL'])
  assert.equal(child.exitCode, null)
  assert.equal(child.signalCode, 'SIGKILL')
  assert.equal(child.kill(0), false, 'kill(0) after the reap')

  const plain = spawn('sh', ['-c', 'exit 4'], { stdio: 'ignore' })
  await once(plain, 'close')
  assert.equal(plain.exitCode, 4)
  assert.equal(plain.signalCode, null)
  assert.equal(plain.killed, false)
  assert.equal(plain.kill(0), false)
})

test('stdio is the [stdin, stdout, stderr] array', async () => {
  const child = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] })
  assert.equal(child.stdio.length, 3)
  assert.equal(child.stdio[0], child.stdin)
  assert.equal(child.stdio[1], child.stdout)
  assert.equal(child.stdio[2], null)
  child.stdio[0].end('through stdio')
  assert.equal(await text(child.stdio[1]), 'through stdio')
})

test('null arguments are read as Node reads them', async () => {
  // null args = no args; null options = a TypeError, as Node's normalizeSpawnArguments does.
  const child = spawn('echo', null, { stdio: ['ignore', 'pipe', 'ignore'] })
  assert.equal(await text(child.stdout), '\n')
  assert.throws(() => spawn('echo', ['x'], null), {
    name: 'TypeError',
    code: 'ERR_INVALID_ARG_TYPE',
    message: 'The "options" argument must be of type object. Received null',
  })
  assert.throws(() => spawn('echo', undefined, null), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('shell: a pipeline runs as one command line, on spawnCollect, runProcess and spawn', async () => {
  const collected = await spawnCollect('echo a | tr a b', { shell: true })
  assert.equal(collected.stdout, 'b\n')
  const run = await runProcess('echo "$0"; exit 5', [], { shell: '/bin/sh' })
  assert.equal(run.stdout, '/bin/sh\n')
  assert.equal(run.code, 5)
  const child = spawn('echo a | tr a c', { shell: true, stdio: ['ignore', 'pipe', 'ignore'] })
  assert.equal(await text(child.stdout), 'c\n')
  const missing = await runProcess('true', { shell: '/no/such/shell' })
  assert.equal(missing.code, 127)
  assert.equal(missing.error.code, 'ENOENT')
})

test('shell with args is refused: Node would join them unquoted', async () => {
  const expected = { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: /unquoted/ }
  await assert.rejects(spawnCollect('echo', ['a; rm -rf x'], { shell: true }), expected)
  await assert.rejects(runProcess('echo', ['a'], { shell: '/bin/sh' }), expected)
  assert.throws(() => spawn('echo', ['a'], { shell: true }), expected)
  await assert.rejects(spawnCollect('echo', { shell: 1 }), { code: 'ERR_INVALID_ARG_TYPE' })
})

test('after process.chdir() children start in the new directory, relative cwd included', async (t) => {
  const dir = tempDir(t)
  mkdirSync(join(dir, 'sub'))
  // The launcher is already running (and its own directory is fixed).
  await spawnCollect('true')
  await inDirectory(dir, async () => {
    assert.equal((await spawnCollect('pwd')).stdout, `${dir}\n`)
    assert.equal((await spawnCollect('pwd', { cwd: 'sub' })).stdout, `${dir}/sub\n`)
    assert.equal((await spawnCollect('pwd', { cwd: '' })).stdout, `${dir}\n`, "cwd '' = no chdir")
    const child = spawn('pwd', [], { stdio: ['ignore', 'pipe', 'ignore'] })
    assert.equal(await text(child.stdout), `${dir}\n`)
    const relative = spawn('pwd', [], { cwd: 'sub', stdio: ['ignore', 'pipe', 'ignore'] })
    assert.equal(await text(relative.stdout), `${dir}/sub\n`)
    assert.equal((await runProcess('pwd', [], { cwd: './sub' })).stdout, `${dir}/sub\n`)
  })
})

test('cwd may be a file: URL', async (t) => {
  const dir = tempDir(t)
  assert.equal((await spawnCollect('pwd', { cwd: pathToFileURL(dir) })).stdout, `${dir}\n`)
  const child = spawn('pwd', [], { cwd: pathToFileURL(dir), stdio: ['ignore', 'pipe', 'ignore'] })
  assert.equal(await text(child.stdout), `${dir}\n`)
  await assert.rejects(spawnCollect('pwd', { cwd: new URL('https://example.com/') }), {
    code: 'ERR_INVALID_URL_SCHEME',
  })
})

test('children start with process.umask() as it is now', async () => {
  const before = process.umask(0o027)
  try {
    assert.equal((await spawnCollect('sh', ['-c', 'umask'])).stdout, '0027\n')
    const child = spawn('sh', ['-c', 'umask'], { stdio: ['ignore', 'pipe', 'ignore'] })
    assert.equal(await text(child.stdout), '0027\n')
  } finally {
    process.umask(before)
  }
  const mask = `0${before.toString(8).padStart(3, '0')}\n`
  assert.equal((await spawnCollect('sh', ['-c', 'umask'])).stdout, mask)
})

test('a missing cwd is a missing directory, not a missing command', async (t) => {
  const gone = join(tempDir(t), 'gone')
  const expected = {
    code: 'ENOENT',
    errno: -2,
    syscall: 'spawn pwd',
    path: 'pwd',
    cwd: gone,
    message: `spawn pwd ENOENT: cwd '${gone}' does not exist`,
  }
  await assert.rejects(spawnCollect('pwd', { cwd: gone }), expected)
  // Not found on PATH either: the directory is still what is reported (the child fails there first).
  await assert.rejects(spawnCollect('tethered-no-such-command', { cwd: gone }), {
    code: 'ENOENT',
    cwd: gone,
  })
  const child = spawn('pwd', [], { cwd: gone })
  assert.equal(child.pid, undefined)
  await assert.rejects(child.exited, expected)

  const run = await runProcess('pwd', [], { cwd: gone })
  assert.equal(run.ok, false)
  assert.equal(run.code, 125, 'not 127: the command exists')
  assert.equal(run.error.code, 'ENOENT')
  assert.match(run.stderr, /^Failed to spawn: spawn pwd ENOENT: cwd '.*' does not exist/)
  assert.ok(run.durationMs > 0, `durationMs is measured: ${run.durationMs}`)
  const notFound = await runProcess('tethered-no-such-command')
  assert.equal(notFound.code, 127)
  assert.ok(notFound.durationMs > 0, `durationMs is measured: ${notFound.durationMs}`)
})

test("an abort's error carries cause: signal.reason", async () => {
  const reason = new Error('shutting down')
  const controller = new AbortController()
  const collecting = spawnCollect('sleep', ['30'], { signal: controller.signal })
  const running = runProcess('sleep', ['30'], { signal: controller.signal })
  const child = spawn('sleep', ['30'], { signal: controller.signal, stdio: 'ignore' })
  await once(child, 'spawn')
  controller.abort(reason)
  await assert.rejects(collecting, (err) => err.code === 'ABORT_ERR' && err.cause === reason)
  await assert.rejects(child.exited, (err) => err.code === 'ABORT_ERR' && err.cause === reason)
  const run = await running
  assert.equal(run.error.code, 'ABORT_ERR')
  assert.equal(run.error.cause, reason)

  // An AbortSignal that had already fired: its reason too (the default one is a DOMException).
  const early = AbortSignal.abort(reason)
  await assert.rejects(spawnCollect('true', { signal: early }), (err) => err.cause === reason)
  const never = spawn('true', [], { signal: early })
  await assert.rejects(never.exited, (err) => err.cause === reason)
  const fired = AbortSignal.abort()
  await assert.rejects(spawnCollect('true', { signal: fired }), (err) => err.cause === fired.reason)
})
