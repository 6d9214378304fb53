// Type definitions for tethered: child_process for production servers.
// Hand-written; the napi-generated binding.d.ts describes only the raw native layer.

/// <reference types="node" />
import { EventEmitter } from 'node:events'

/** A signal name as Node spells it: `'SIGTERM'`, `'SIGKILL'`, ... */
export type SignalName = NodeJS.Signals

/**
 * Resource limits for one child, set as rlimits in the child before exec (Linux). Each is a
 * non-negative integer; a limit not given is left as this process has it. The child cannot
 * raise them again. See the README's "Limits for untrusted input".
 */
export interface Limits {
  /**
   * Bytes of heap and private writable memory (`RLIMIT_DATA`). Passing it makes allocations fail.
   * @default unlimited (as this process has it)
   */
  memory?: number
  /**
   * Seconds of CPU time, ≥ 1 (`RLIMIT_CPU`): SIGXCPU, then SIGKILL one second later.
   * @default unlimited (as this process has it)
   */
  cpuTime?: number
  /**
   * Open file descriptors (`RLIMIT_NOFILE`): past it, opening one fails with EMFILE.
   * @default unlimited (as this process has it)
   */
  openFiles?: number
  /**
   * Bytes of the largest file the child may write (`RLIMIT_FSIZE`): SIGXFSZ past it.
   * @default unlimited (as this process has it)
   */
  fileSize?: number
  /**
   * Processes of the child's real user (`RLIMIT_NPROC`); root is exempt, so give a `uid`.
   * @default unlimited (as this process has it)
   */
  processes?: number
  /**
   * Bytes of a core dump (`RLIMIT_CORE`); `0`: none.
   * @default unlimited (as this process has it)
   */
  coreDump?: number
}

/** The limit the kernel ended a process for, as its signal says (SIGXCPU, SIGXFSZ). */
export type LimitName = 'cpuTime' | 'fileSize'

/** The kernel's accounting of the reaped leader (and the descendants it waited for). */
export interface ResourceUsage {
  /** Peak resident set size, bytes. */
  maxRss: number
  /** User CPU time, milliseconds (microsecond precision). */
  userCpuMs: number
  /** System CPU time, milliseconds (microsecond precision). */
  systemCpuMs: number
}

/** What a child is held to: limits, privileges, user and group. */
export interface ConfinementOptions {
  /**
   * rlimits set in the child before exec.
   * @default {} (none: the child inherits this process's limits)
   */
  limits?: Limits
  /**
   * `PR_SET_NO_NEW_PRIVS`: exec never grants privileges (setuid bits, file capabilities).
   * @default false
   */
  noNewPrivileges?: boolean
  /**
   * The user id the child runs as (as Node's). Not permitted → the spawn fails with `EPERM`.
   * @default this process's uid
   */
  uid?: number
  /**
   * The group id the child runs as (as Node's); supplementary groups are dropped with it.
   * @default this process's gid
   */
  gid?: number
}

/** Options every entry point accepts. */
export interface SpawnOptions extends ConfinementOptions {
  /**
   * Working directory of the child.
   * @default process.cwd()
   */
  cwd?: string
  /**
   * Environment variables, merged over `process.env` unless `extendEnv` is `false`.
   * A value of `undefined` removes the variable.
   * @default process.env
   */
  env?: Record<string, string | undefined>
  /**
   * Whether `env` is merged over `process.env` (`true`) or is the whole environment (`false`).
   * @default true
   */
  extendEnv?: boolean
  /**
   * Milliseconds before the child's whole process group is killed with `killSignal`;
   * `0` means no timeout.
   * @default 30000
   */
  timeout?: number
  /**
   * The signal sent to the child's whole process group on timeout, maxBuffer or abort.
   * @default 'SIGTERM'
   */
  killSignal?: SignalName | number
  /**
   * Milliseconds from `killSignal` to SIGKILL of the group, if its leader is still running.
   * Whatever is left of the group when the leader dies after a kill is SIGKILLed at once.
   * @default 2000
   */
  forceKillAfter?: number
  /** Aborting kills the group and rejects with an `AbortError` (`code: 'ABORT_ERR'`). */
  signal?: AbortSignal
  /**
   * `true`: the child and every descendant die with this Node process, however it dies
   * (exit, crash, SIGKILL). `false`: the child is a deliberate daemon in its own session
   * that outlives this process.
   * @default true
   */
  killOnParentExit?: boolean
}

/** Options of `spawnCollect` and `runProcess`. */
export interface CollectOptions extends SpawnOptions {
  /**
   * Bytes kept per stream (an integer ≥ 1, or `Infinity`). Past it the group is killed and the
   * call fails with `ERR_MAX_BUFFER`; output is never held beyond this plus one read.
   * @default 10485760 (10 MiB)
   */
  maxBuffer?: number
  /**
   * Written to the child's stdin, which is then closed. Without it, stdin is `/dev/null`.
   * @default undefined
   */
  input?: string | Uint8Array
  /**
   * `'utf8'` decodes stdout/stderr to strings (once, at the end); `'buffer'` gives Buffers.
   * @default 'utf8'
   */
  encoding?: 'utf8' | 'buffer'
}

/** What `spawnCollect` resolves with: the process ran and ended, however it ended. */
export interface SpawnResult<Output = string> {
  stdout: Output
  stderr: Output
  /** The exit code, or `null` when a signal ended the process. */
  exitCode: number | null
  /** The signal that ended the process, or `null`. */
  signal: SignalName | null
  pid: number
  /** `true` when tethered killed the group because `timeout` passed. */
  timedOut: boolean
  /** The limit the kernel ended the process for (its signal says so), or `null`. */
  limit: LimitName | null
  resourceUsage: ResourceUsage
  durationMs: number
}

/** What `runProcess` resolves with; it never rejects because of the process. */
export interface ProcessResult<Output = string> {
  stdout: Output
  stderr: Output
  /** `code === 0 && signal === null && !timedOut` (and no `error`). */
  ok: boolean
  /** The exit code; 127 when the command was not found, 126 when it is not executable. */
  code: number | null
  signal: SignalName | null
  timedOut: boolean
  /** The limit the kernel ended the process for (its signal says so), or `null`. */
  limit: LimitName | null
  /** `null` when no process ran (it could not start, or the call was aborted first). */
  resourceUsage: ResourceUsage | null
  durationMs: number
  /**
   * Set only when the run failed outside the process's own exit: the errno name when it
   * could not start (`ENOENT`, `EACCES`, ...), `ERR_MAX_BUFFER`, `ERR_TIMEOUT`, `ABORT_ERR`,
   * `ERR_LAUNCHER_EXITED`.
   */
  error?: { code: string; message: string }
}

/** The error `spawnCollect` rejects with when the command could not start (Node's shape). */
export interface SpawnError extends Error {
  /** The errno name: `'ENOENT'`, `'EACCES'`, `'ENOTDIR'`, `'E2BIG'`, ... */
  code: string
  /** The negative errno, as Node reports it. */
  errno: number
  /** `'spawn <command>'` */
  syscall: string
  /** The command as given. */
  path: string
  /** The arguments, without the command. */
  spawnargs: string[]
}

/**
 * The error `spawnCollect` rejects with when output passed `maxBuffer` (`code: 'ERR_MAX_BUFFER'`)
 * or the call was aborted (`name: 'AbortError'`, `code: 'ABORT_ERR'`). The group was killed
 * and reaped first; the output collected so far is attached.
 */
export interface OutputError<Output = string> extends Error {
  code: 'ERR_MAX_BUFFER' | 'ABORT_ERR'
  /** Which stream passed `maxBuffer` (only for `ERR_MAX_BUFFER`). */
  stream?: 'stdout' | 'stderr'
  stdout: Output
  stderr: Output
  exitCode: number | null
  signal: SignalName | null
  limit: LimitName | null
  resourceUsage: ResourceUsage
  pid: number
}

/**
 * Runs a command to completion and collects its output.
 *
 * Resolves on any exit — code 0, a non-zero code, death by a signal, or a timeout
 * (`timedOut: true`). Rejects when the command could not start ({@link SpawnError}), when a
 * stream passed `maxBuffer` or the call was aborted ({@link OutputError}), when the launcher
 * died (`ERR_LAUNCHER_EXITED`), and for invalid arguments (`TypeError`/`RangeError` with
 * `ERR_INVALID_ARG_TYPE`, `ERR_INVALID_ARG_VALUE` or `ERR_OUT_OF_RANGE`).
 *
 * @example
 * const { stdout, exitCode } = await spawnCollect('git', ['rev-parse', 'HEAD'], { timeout: 5000 })
 */
export function spawnCollect(
  command: string,
  args: readonly string[] | undefined,
  options: CollectOptions & { encoding: 'buffer' },
): Promise<SpawnResult<Buffer>>
export function spawnCollect(
  command: string,
  args?: readonly string[],
  options?: CollectOptions,
): Promise<SpawnResult<string>>
export function spawnCollect(
  command: string,
  options: CollectOptions & { encoding: 'buffer' },
): Promise<SpawnResult<Buffer>>
export function spawnCollect(command: string, options: CollectOptions): Promise<SpawnResult<string>>

/**
 * Runs a command and reports how it went; never rejects because of the process (only for
 * invalid arguments). A command that cannot start gives `code: 127` (not found) or `126`
 * (not executable) with `stderr` = `Failed to spawn: ...` and `error.code` = the errno name.
 *
 * @example
 * const r = await runProcess('ffmpeg', ['-i', input, output], { timeout: 60_000 })
 * if (!r.ok) log.error({ code: r.code, signal: r.signal, error: r.error, stderr: r.stderr })
 */
export function runProcess(
  command: string,
  args: readonly string[] | undefined,
  options: CollectOptions & { encoding: 'buffer' },
): Promise<ProcessResult<Buffer>>
export function runProcess(
  command: string,
  args?: readonly string[],
  options?: CollectOptions,
): Promise<ProcessResult<string>>
export function runProcess(
  command: string,
  options: CollectOptions & { encoding: 'buffer' },
): Promise<ProcessResult<Buffer>>
export function runProcess(command: string, options: CollectOptions): Promise<ProcessResult<string>>

export { spawn, Child, StreamOptions, ExitInfo, StdioMode } from './lib/child'

/** Options of `new Supervisor(options)`; give exactly one of `modulePath` and `command`. */
export interface SupervisorOptions extends ConfinementOptions {
  /**
   * A Node module run with `process.execPath` and a real Node IPC channel, so the worker uses
   * plain `process.send` / `process.on('message')`.
   */
  modulePath?: string
  /** Or any program; it gets the channel too (fd 3, `NODE_CHANNEL_FD`) and may ignore it. */
  command?: string
  /**
   * Arguments: a module worker sees them as `process.argv.slice(2)`.
   * @default []
   */
  args?: string[]
  /**
   * Node flags for a module worker (e.g. `['--max-old-space-size=512']`).
   * @default []
   */
  execArgv?: string[]
  /**
   * Merged over `process.env`.
   * @default process.env
   */
  env?: Record<string, string>
  /**
   * Working directory of the worker.
   * @default process.cwd()
   */
  cwd?: string
  /**
   * `'on-failure'`: an exit with code 0 means the work is done (state `'stopped'`).
   * `'always'`: every exit is followed by a restart.
   * @default 'on-failure'
   */
  restart?: 'on-failure' | 'always'
  /**
   * Restarts allowed in a row; one more crash gives `'exhausted'` (`3` = at most 4 spawns).
   * Any message from the worker resets the count.
   * @default 10
   */
  maxRestarts?: number
  /**
   * Base delay in ms: restart n waits `restartDelay * 2^(n-1)`, capped at `maxRestartDelay`.
   * @default 1000
   */
  restartDelay?: number
  /**
   * Cap of the restart delay, in ms.
   * @default 30000
   */
  maxRestartDelay?: number
  /**
   * Ms between `{type:'ping'}` health checks; `0` turns them off.
   * @default 15000 for a `modulePath` worker, 0 (off) for a `command` worker
   */
  healthCheckInterval?: number
  /**
   * Ms a ping may go unanswered (any message counts) before the worker is declared
   * `'unresponsive'`, its group SIGKILLed and restarted.
   * @default 5000
   */
  healthCheckTimeout?: number
  /**
   * Bound of `stop()` in ms: `{type:'shutdown'}` at once, `killSignal` to the group at half of
   * it, SIGKILL at its end.
   * @default 5000
   */
  stopTimeout?: number
  /**
   * The signal `stop()` sends to the worker's group.
   * @default 'SIGTERM'
   */
  killSignal?: SignalName
  /**
   * The worker's stdout/stderr: this process's own, `'pipe'` (emitted as `'stdout'` /
   * `'stderr'` Buffers), or /dev/null.
   * @default 'inherit'
   */
  stdio?: 'inherit' | 'pipe' | 'ignore'
}

export type SupervisorState =
  | 'idle'
  | 'starting'
  | 'running'
  | 'restarting'
  | 'stopping'
  | 'stopped'
  | 'exhausted'

/** How a worker process ended. */
export interface WorkerExit {
  code: number | null
  signal: SignalName | null
}

export interface SupervisorEvents {
  spawn: [info: { pid: number }]
  message: [message: unknown]
  exit: [info: WorkerExit]
  crashed: [info: WorkerExit & { restartCount: number }]
  restarting: [info: { delay: number; attempt: number }]
  exhausted: [info: { message: string; restartCount: number }]
  unresponsive: [info: { pid: number }]
  stdout: [chunk: Buffer]
  stderr: [chunk: Buffer]
  /** Emitted only when there are listeners; otherwise it becomes a process warning. */
  error: [error: Error]
}

/**
 * Keeps a worker alive: restarts it with capped exponential backoff, gives up after too many
 * crashes in a row, checks its health over its Node IPC channel, stops it within a bound, and
 * never loses a request silently. Nothing of a stopped or exhausted supervisor keeps Node alive.
 *
 * @example
 * const sup = new Supervisor({ modulePath: './thumbnail-worker.js', maxRestarts: 5 })
 * sup.on('crashed', ({ code, signal }) => log.warn({ code, signal }, 'worker crashed'))
 * await sup.start()
 * const thumb = await sup.request({ image: base64 }, { timeout: 10_000 })
 */
export declare class Supervisor extends EventEmitter<SupervisorEvents> {
  /** Throws `TypeError`/`RangeError` with `ERR_INVALID_ARG_*` / `ERR_OUT_OF_RANGE` codes. */
  constructor(options: SupervisorOptions)
  /** Resolves once the first worker is spawned (state `'running'`); rejects if it cannot start. */
  start(): Promise<void>
  /** Stops the worker within `stopTimeout` and resolves when its group is gone; no restart after. */
  stop(): Promise<void>
  /** Rejects with `ERR_IPC_CHANNEL_CLOSED` when no worker is connected; never throws. */
  send(message: unknown): Promise<void>
  /**
   * Sends `{ tethered: 'request', id, body }` and resolves with the worker's `result`. Rejects
   * with the worker's error (`code` `ERR_WORKER_REQUEST_FAILED` unless it gave one),
   * `ERR_WORKER_EXITED` the moment the worker dies, `ERR_TIMEOUT` after `timeout` ms, or
   * `ERR_IPC_CHANNEL_CLOSED` when no worker is connected.
   */
  request<Result = unknown>(message: unknown, options?: { timeout?: number }): Promise<Result>
  /** The worker's pid; null whenever no worker process exists. */
  readonly pid: number | null
  readonly state: SupervisorState
  /** Consecutive restarts since the last sign of life. */
  readonly restartCount: number
  /** Whether a worker's IPC channel is open. */
  readonly connected: boolean
}
