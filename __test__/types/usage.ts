// Compiled with `tsc --strict --noEmit` by types.test.mjs: every export, option and event of
// index.d.ts used the way a TypeScript service would use it. It is type-checked, never run.
import { spawnCollect, runProcess, spawn, Supervisor } from 'tethered'
import type { CollectOptions, SpawnResult, ProcessResult, SupervisorOptions, SupervisorState } from 'tethered'
import { pipeline } from 'node:stream/promises'

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
  sup.on('crashed', ({ code, signal, restartCount }) => console.log(code, signal, restartCount))
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
}
