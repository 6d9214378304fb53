// Per-child limits and privileges on real children: each rlimit is enforced by the kernel in the
// child the launcher starts, a child ended by its CPU or file-size limit says so (`limit`),
// `noNewPrivileges`, `uid` and `gid` reach the child, and invalid values are typed errors that
// name the option. Linux only, like the package; the uid tests need root and skip otherwise.
import { test } from 'node:test'
import { once } from 'node:events'
import assert from 'node:assert/strict'
import { readdirSync, statSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { spawnCollect, runProcess, spawn, Supervisor } from 'tethered'
import { tempDir, outcome, killGroup, NODE_MEMORY_LIMIT } from './helpers.mjs'
import { supervise } from './supervisor-helpers.mjs'

const MiB = 1 << 20
const isRoot = process.getuid() === 0
const NOT_ROOT = isRoot ? false : 'needs root: only root may run a child as another user'
const ROOT_DIR = join(import.meta.dirname ?? new URL('.', import.meta.url).pathname, '..')

/** A fresh directory, removed after the test. */
function scratch(t) {
  const { dir, remove } = tempDir()
  t.after(remove)
  return dir
}

/** A uid no other process on this machine is likely to have: RLIMIT_NPROC counts per user. */
let nextUid = 60_000 + (process.pid % 4_000) * 2
function freshUid() {
  nextUid += 1
  return nextUid
}

/** A Node program that allocates `mib` MiB in 1 MiB Buffers it keeps, then prints 'done'. */
const allocate = (mib) =>
  `const kept = []; for (let i = 0; i < ${mib}; i++) kept.push(Buffer.alloc(${MiB}, 1)); console.log('done')`

test(`memory: a Node program starts under ${NODE_MEMORY_LIMIT / MiB} MiB, and allocating past it fails it`, async () => {
  const limits = { memory: NODE_MEMORY_LIMIT }
  const past = NODE_MEMORY_LIMIT / MiB + 128
  const small = await runProcess(process.execPath, ['-e', allocate(32)], { limits })
  assert.equal(small.ok, true, small.stderr)
  assert.equal(small.stdout, 'done\n')

  const hog = await runProcess(process.execPath, ['-e', allocate(past)], { limits })
  assert.equal(hog.ok, false, 'the hog did not finish')
  assert.notEqual(hog.stdout, 'done\n')
  // V8 reports its failed allocation and aborts; no `limit` is claimed for memory.
  assert.ok(hog.signal !== null || hog.code !== 0, `${hog.code} ${hog.signal}`)
  assert.equal(hog.limit, null)
  assert.ok(hog.resourceUsage.maxRss < past * MiB, `maxRss ${hog.resourceUsage.maxRss}`)

  // The same program without the limit finishes: the limit is what stopped it.
  const free = await runProcess(process.execPath, ['-e', allocate(past)])
  assert.equal(free.ok, true, free.stderr)
})

test(`memory: a Supervisor worker (Node, IPC) runs under a ${NODE_MEMORY_LIMIT / MiB} MiB limit`, async (t) => {
  const { sup } = supervise(t, 'worker-echo.js', { limits: { memory: NODE_MEMORY_LIMIT } })
  await sup.start()
  assert.equal(await sup.request({ op: 'echo', value: 'under the limit' }, { timeout: 30_000 }), 'under the limit')
})

test('cpuTime: a busy loop ends with SIGXCPU and limit cpuTime', async () => {
  const r = await spawnCollect('sh', ['-c', 'while :; do :; done'], { limits: { cpuTime: 1 }, timeout: 60_000 })
  assert.equal(r.signal, 'SIGXCPU')
  assert.equal(r.limit, 'cpuTime')
  assert.equal(r.timedOut, false)
  const cpu = r.resourceUsage.userCpuMs + r.resourceUsage.systemCpuMs
  // The kernel's accounting on a busy virtual machine can read a little under the second.
  assert.ok(cpu >= 500 && cpu < 3_000, `CPU used: ${cpu} ms`)
})

test('cpuTime: a program that ignores SIGXCPU is killed a second later, with no limit claimed', async () => {
  const r = await runProcess('sh', ['-c', "trap '' XCPU; while :; do :; done"], {
    limits: { cpuTime: 1 },
    timeout: 60_000,
  })
  assert.equal(r.signal, 'SIGKILL')
  assert.equal(r.limit, null, 'SIGKILL does not say who sent it')
  const cpu = r.resourceUsage.userCpuMs + r.resourceUsage.systemCpuMs
  assert.ok(cpu >= 1_500, `CPU used: ${cpu} ms`)
})

test('fileSize: a writer past it ends with SIGXFSZ and limit fileSize, file cut at the limit', async (t) => {
  const file = join(scratch(t), 'out')
  const r = await runProcess('sh', ['-c', `exec head -c 5000 /dev/zero > ${file}`], { limits: { fileSize: 1000 } })
  assert.equal(r.signal, 'SIGXFSZ')
  assert.equal(r.limit, 'fileSize')
  assert.equal(statSync(file).size, 1000)
})

test('fileSize: a streamed child reports the limit on exited', async (t) => {
  const file = join(scratch(t), 'out')
  const child = spawn('sh', ['-c', `exec head -c 5000 /dev/zero > ${file}`], { limits: { fileSize: 100 }, stdio: 'ignore' })
  const exit = await child.exited
  assert.equal(exit.signal, 'SIGXFSZ')
  assert.equal(exit.limit, 'fileSize')
  assert.equal(typeof exit.resourceUsage.maxRss, 'number')
})

test('a kernel signal sent by someone else is not a limit when that limit was not set', async () => {
  const r = await spawnCollect('sh', ['-c', 'kill -XCPU $$'], { limits: { fileSize: 100 } })
  assert.equal(r.signal, 'SIGXCPU')
  assert.equal(r.limit, null)
})

test('processes: a forker run as another user cannot pass it', { skip: NOT_ROOT }, async () => {
  const forker = 'i=0; while [ $i -lt 8 ]; do sleep 1 </dev/null >/dev/null 2>&1 & i=$((i+1)); echo $i; done'
  const uid = freshUid()
  const limited = await runProcess('sh', ['-c', forker], { uid, gid: uid, limits: { processes: 4 } })
  const forked = limited.stdout.trim().split('\n').filter(Boolean).length
  assert.ok(forked < 4, `forked ${forked} with a limit of 4 processes (the shell is one)`)
  assert.match(limited.stderr, /fork/i)
  assert.equal(limited.ok, false)

  const other = freshUid()
  const free = await runProcess('sh', ['-c', forker], { uid: other, gid: other })
  assert.equal(free.stdout.trim().split('\n').length, 8, 'the same forker without the limit')
})

test('openFiles: opening past it fails with EMFILE in the child', async () => {
  const program = `const fs = require('fs'); let n = 0
    try { for (;;) { fs.openSync('/dev/null'); n++ } } catch (e) { console.log(e.code, n) }`
  const r = await runProcess(process.execPath, ['-e', program], { limits: { openFiles: 64 } })
  assert.equal(r.ok, true, r.stderr)
  const [code, opened] = r.stdout.trim().split(' ')
  assert.equal(code, 'EMFILE')
  assert.ok(Number(opened) < 64, `opened ${opened}`)
})

test('coreDump: 0 leaves no core file where a crash would write one', async (t) => {
  const pattern = readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim()
  const crash = ['-c', 'grep "core file" /proc/self/limits; kill -SEGV $$']
  const none = scratch(t)
  const r = await runProcess('sh', crash, { cwd: none, limits: { coreDump: 0 } })
  assert.equal(r.signal, 'SIGSEGV')
  assert.match(r.stdout, /Max core file size\s+0\s+0\s+bytes/)
  assert.deepEqual(readdirSync(none), [])
  if (pattern.startsWith('|') || pattern.includes('/')) {
    t.diagnostic(`core_pattern is ${pattern}: cores are not written to the cwd, no control run`)
    return
  }
  // The control: the same crash allowed a core does leave one.
  const some = scratch(t)
  await runProcess('sh', crash, { cwd: some, limits: { coreDump: 16 * MiB } })
  assert.ok(readdirSync(some).some((name) => name.startsWith('core')), `${readdirSync(some)}`)
})

test('every limit at once is visible in /proc/self/limits of the child', async () => {
  const r = await spawnCollect('cat', ['/proc/self/limits'], {
    limits: { memory: 512 * MiB, cpuTime: 30, openFiles: 100, fileSize: 4096, processes: 1000, coreDump: 0 },
  })
  const row = (name) => r.stdout.split('\n').find((line) => line.startsWith(name)).split(/\s{2,}/).slice(1, 3)
  assert.deepEqual(row('Max data size'), [String(512 * MiB), String(512 * MiB)])
  assert.deepEqual(row('Max cpu time'), ['30', '31'], 'the hard CPU limit is a second later')
  assert.deepEqual(row('Max open files'), ['100', '100'])
  assert.deepEqual(row('Max file size'), ['4096', '4096'])
  assert.deepEqual(row('Max processes'), ['1000', '1000'])
  assert.deepEqual(row('Max core file size'), ['0', '0'])
})

test('noNewPrivileges shows as NoNewPrivs: 1 in the child', async () => {
  const grep = ['NoNewPrivs', '/proc/self/status']
  assert.match((await spawnCollect('grep', grep, { noNewPrivileges: true })).stdout, /^NoNewPrivs:\s+1$/m)
  assert.match((await spawnCollect('grep', grep)).stdout, /^NoNewPrivs:\s+0$/m)
})

test('uid and gid: the child runs as that user and group, without our groups', { skip: NOT_ROOT }, async () => {
  const r = await spawnCollect('sh', ['-c', 'id -u; id -g; id -G'], { uid: 65534, gid: 65533 })
  assert.equal(r.stdout, '65534\n65533\n65533\n')
  const streamed = spawn('id', ['-u'], { uid: 65534 })
  let out = ''
  for await (const chunk of streamed.stdout) out += chunk
  assert.equal(out, '65534\n')
  assert.equal((await streamed.exited).exitCode, 0)
})

test('a uid change that is not permitted is EPERM, in Node spawn-error shape', async () => {
  const attempt = `import(${JSON.stringify(join(ROOT_DIR, 'index.js'))}).then(async ({ spawnCollect, runProcess }) => {
    try { await spawnCollect('true', ['x'], { uid: 0 }) } catch (e) {
      const { code, errno, syscall, path, spawnargs } = e
      const r = await runProcess('true', [], { uid: 0 })
      console.log(JSON.stringify({ code, errno, syscall, path, spawnargs, run: r.error.code }))
    }
  })`
  let report
  if (isRoot) {
    // Root may become anyone; the attempt is made by a child that runs as nobody.
    const r = await spawnCollect(process.execPath, ['-e', attempt], { uid: 65534, gid: 65534, cwd: '/' })
    assert.equal(r.exitCode, 0, r.stderr)
    report = JSON.parse(r.stdout)
  } else {
    report = JSON.parse((await spawnCollect(process.execPath, ['-e', attempt])).stdout)
  }
  assert.deepEqual(report, {
    code: 'EPERM', errno: -1, syscall: 'spawn true', path: 'true', spawnargs: ['x'], run: 'EPERM',
  })
})

test('invalid limits and ids are typed errors naming the option, on every entry point', async () => {
  const cases = [
    [{ limits: { memory: -1 } }, 'RangeError', 'ERR_OUT_OF_RANGE', 'options.limits.memory'],
    [{ limits: { cpuTime: 1.5 } }, 'RangeError', 'ERR_OUT_OF_RANGE', 'options.limits.cpuTime'],
    [{ limits: { cpuTime: 0 } }, 'RangeError', 'ERR_OUT_OF_RANGE', 'options.limits.cpuTime'],
    [{ limits: { openFiles: NaN } }, 'RangeError', 'ERR_OUT_OF_RANGE', 'options.limits.openFiles'],
    [{ limits: { fileSize: Infinity } }, 'RangeError', 'ERR_OUT_OF_RANGE', 'options.limits.fileSize'],
    [{ limits: { processes: '10' } }, 'TypeError', 'ERR_INVALID_ARG_TYPE', 'options.limits.processes'],
    [{ limits: { coreDump: null } }, 'TypeError', 'ERR_INVALID_ARG_TYPE', 'options.limits.coreDump'],
    [{ limits: { rss: 1 } }, 'TypeError', 'ERR_INVALID_ARG_VALUE', 'options.limits.rss'],
    [{ limits: 256 }, 'TypeError', 'ERR_INVALID_ARG_TYPE', 'options.limits'],
    [{ uid: -1 }, 'RangeError', 'ERR_OUT_OF_RANGE', 'options.uid'],
    [{ gid: 2 ** 31 }, 'RangeError', 'ERR_OUT_OF_RANGE', 'options.gid'],
    [{ uid: 'root' }, 'TypeError', 'ERR_INVALID_ARG_TYPE', 'options.uid'],
    [{ noNewPrivileges: 1 }, 'TypeError', 'ERR_INVALID_ARG_TYPE', 'options.noNewPrivileges'],
  ]
  for (const [options, kind, code, name] of cases) {
    const check = (error, where) => {
      assert.equal(error?.constructor?.name, kind, `${where} ${JSON.stringify(options)}: ${error}`)
      assert.equal(error.code, code, `${where} ${name}`)
      assert.ok(error.message.includes(`"${name}"`), `${where}: ${error.message}`)
    }
    for (const [where, call] of [
      ['spawnCollect', () => spawnCollect('true', [], options)],
      ['runProcess', () => runProcess('true', [], options)],
    ]) {
      const o = await outcome(call())
      assert.equal(o.ok, false, `${where} accepted ${JSON.stringify(options)}`)
      check(o.error, where)
    }
    assert.throws(() => spawn('true', [], options), (e) => (check(e, 'spawn'), true))
    assert.throws(() => new Supervisor({ command: 'true', ...options }), (e) => (check(e, 'Supervisor'), true))
  }
})

test('limits leave the child group killable as before', async () => {
  const child = spawn('sleep', ['30'], { limits: { cpuTime: 10, memory: 64 * MiB }, stdio: 'ignore' })
  await once(child, 'spawn')
  const pid = child.pid
  child.kill('SIGTERM')
  const exit = await child.exited
  assert.equal(exit.signal, 'SIGTERM')
  assert.equal(exit.limit, null)
  killGroup(pid)
})
