// Compiled with `tsc --strict --noEmit` by types.test.mjs: every export, option and event of
// index.d.ts used the way a TypeScript service would use it. It is type-checked, never run.
import { spawnCollect, runProcess, spawn, Supervisor, Pool } from 'tethered'
import type { CollectOptions, SpawnResult, ProcessResult, SupervisorOptions, SupervisorState } from 'tethered'
import type { PoolOptions, PoolStats, PoolState, PoolWorkerState } from 'tethered'
import { pipeline } from 'node:stream/promises'
import { onRequest, onShutdown } from 'tethered/worker'

export async function usage(): Promise<void> {
  const options: CollectOptions = {
    cwd: '/tmp',
    env: { A: '1', B: undefined },
    extendEnv: true,
    timeout: 1000,
    killSignal: 'SIGTERM',
    forceKillAfter: 500,
    signal: AbortSignal.timeout(1000),
    killOnParentExit: true,
    maxBuffer: 1024,
    input: 'x',
    encoding: 'utf8',
  }
  const text: SpawnResult = await spawnCollect('echo', ['hi'], options)
  const upper: string = text.stdout.toUpperCase()
  const bytes = await spawnCollect('cat', [], { encoding: 'buffer', input: new Uint8Array([1]) })
  const buffer: Buffer = bytes.stdout
  const code: number | null = text.exitCode
  const r: ProcessResult = await runProcess('false', { timeout: 0, killSignal: 9 })
  if (!r.ok && r.error) console.log(r.error.code, r.error.message, r.code, r.signal, r.timedOut, r.durationMs)

  const child = spawn('cat', [], { stdio: ['pipe', 'pipe', 'inherit'], timeout: 0 })
  child.stdin?.end('data')
  if (child.stdout) await pipeline(child.stdout, process.stdout)
  const exit = await child.exited
  const killed: boolean = child.kill('SIGKILL')
  console.log(exit.exitCode, exit.signal, exit.timedOut, killed, child.pid, upper, buffer.length, code)

  const supervisorOptions: SupervisorOptions = {
    modulePath: './worker.js',
    args: ['--x'],
    execArgv: ['--max-old-space-size=128'],
    env: { MODE: 'worker' },
    cwd: '/tmp',
    restart: 'always',
    maxRestarts: 3,
    restartDelay: 100,
    maxRestartDelay: 1000,
    healthCheckInterval: 1000,
    healthCheckTimeout: 500,
    stopTimeout: 2000,
    killSignal: 'SIGTERM',
    stdio: 'pipe',
  }
  const sup = new Supervisor(supervisorOptions)
  sup.on('spawn', ({ pid }) => console.log(pid))
  sup.on('message', (message) => console.log(message))
  sup.on('exit', ({ code, signal }) => console.log(code, signal))
  sup.on('crashed', ({ code, signal, restartCount, limit, resourceUsage }) => console.log(code, signal, restartCount, limit, resourceUsage?.maxRss))
  sup.on('restarting', ({ delay, attempt }) => console.log(delay, attempt))
  sup.on('exhausted', ({ message, restartCount }) => console.log(message, restartCount))
  sup.on('unresponsive', ({ pid }) => console.log(pid))
  sup.on('stdout', (chunk) => console.log(chunk.length))
  sup.on('stderr', (chunk) => console.log(chunk.length))
  sup.on('error', (error) => console.log(error.message))
  await sup.start()
  await sup.send({ hello: 'world' })
  const answer = await sup.request<{ ok: boolean }>({ work: 1 }, { timeout: 1000 })
  const state: SupervisorState = sup.state
  console.log(answer.ok, state, sup.pid, sup.restartCount, sup.connected)
  await sup.stop()

  const poolOptions: PoolOptions = {
    modulePath: './worker.js',
    args: ['--x'],
    execArgv: ['--max-old-space-size=128'],
    env: { MODE: 'worker' },
    cwd: '/tmp',
    size: { min: 1, max: 4 },
    idleTimeout: 10_000,
    concurrency: 2,
    maxQueue: 100,
    requestTimeout: 5_000,
    queueTimeout: 1_000,
    maxAttempts: 2,
    maxRestarts: 5,
    restartWindow: 60_000,
    recycleAfter: 1_000,
    maxMemory: 512 * 1024 * 1024,
    memoryCheckInterval: 1_000,
    restartDelay: 100,
    maxRestartDelay: 1_000,
    healthCheckInterval: 1_000,
    healthCheckTimeout: 500,
    stopTimeout: 2_000,
    killSignal: 'SIGTERM',
    stdio: 'pipe',
    serialization: 'json',
    limits: { memory: 256 * 1024 * 1024, cpuTime: 30 },
    noNewPrivileges: true,
  }
  const pool = new Pool(poolOptions)
  pool.on('spawn', ({ worker, pid }) => console.log(worker, pid))
  pool.on('exit', ({ worker, pid, code, signal }) => console.log(worker, pid, code, signal))
  pool.on('crashed', ({ worker, restartCount, limit, resourceUsage }) => console.log(worker, restartCount, limit, resourceUsage?.userCpuMs))
  pool.on('restarting', ({ worker, delay, attempt }) => console.log(worker, delay, attempt))
  pool.on('unresponsive', ({ worker, pid }) => console.log(worker, pid))
  pool.on('recycle', ({ worker, reason }) => console.log(worker, reason))
  pool.on('exhausted', ({ message, crashes, window }) => console.log(message, crashes, window))
  pool.on('message', (message, { worker, pid }) => console.log(message, worker, pid))
  pool.on('stdout', (chunk, { worker }) => console.log(chunk.length, worker))
  pool.on('stderr', (chunk, { pid }) => console.log(chunk.length, pid))
  pool.on('error', (error) => console.log(error.message))
  await pool.start()
  const controller = new AbortController()
  const thumb = await pool.request<{ size: number }>({ image: 'x' }, { timeout: 1000, queueTimeout: 500, signal: controller.signal, maxAttempts: 1 })
  const stats: PoolStats = pool.stats()
  const poolState: PoolState = pool.state
  const firstWorker: PoolWorkerState | undefined = stats.workers[0]?.state
  console.log(stats.workers[0]?.lastExitUsage?.systemCpuMs)
  console.log(thumb.size, stats.queued, stats.rejected.queueFull, stats.latencyMs.p99, poolState, firstWorker, pool.size)
  await pool.close({ drain: false })

  onRequest(async (body: { n: number }) => body.n * 2)
  onRequest(async (body: { n: number }, { signal }) => (signal.aborted ? 0 : body.n))
  onShutdown(async () => {})
}
