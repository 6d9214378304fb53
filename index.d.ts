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
   * Working directory of the child: a path or a `file:` URL. A relative path is taken from
   * `process.cwd()` at the time of the call, and `''` is the default, as in Node. The child
   * also starts with `process.umask()` as it is at the call. A directory that cannot be
   * entered fails the start with its own error (`code` `'ENOENT'`, message
   * `spawn <command> ENOENT: cwd '<dir>' does not exist`, `err.cwd`), not "command not found".
   * @default process.cwd()
   */
  cwd?: string | URL
  /**
   * Run `command` as one shell command line: `true` runs `/bin/sh -c command`, a path runs
   * that shell the same way (`false` or `''`: no shell). `args` must then be left out or
   * empty — passing them is a TypeError (`ERR_INVALID_ARG_VALUE`), because Node joins them to
   * the line unquoted, an injection trap Node itself deprecates. Quote what the shell needs.
   * @default false
   */
  shell?: boolean | string
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
  /**
   * The exit code; 127 when the command was not found, 126 when it is not executable, 125
   * when its `cwd` could not be entered (as GNU `env --chdir` reports its own failure).
   */
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
   * `ERR_LAUNCHER_EXITED` (the launcher died; `durationMs` runs up to its death),
   * `ERR_LAUNCHER_START` (no launcher could be started, or 5 in a row died at once: calls are
   * refused for 5 s).
   */
  error?: { code: string; message: string; cause?: unknown }
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
  /** The directory that could not be entered, when that is why it could not start. */
  cwd?: string
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
  /** The AbortSignal's `reason` (only for `ABORT_ERR`), as Node's and execa's do. */
  cause?: unknown
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
 * died (`ERR_LAUNCHER_EXITED`) or could not be started (`ERR_LAUNCHER_START`: its binary is
 * missing or cannot run, or 5 launchers in a row died before answering; calls are then refused
 * for 5 s), and for invalid arguments (`TypeError`/`RangeError` with
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
  /**
   * The longest message accepted from the worker, in bytes (an integer ≥ 1). A longer one
   * emits `'error'` with code `ERR_IPC_MESSAGE_TOO_LARGE` and kills the worker's group, which
   * counts as a crash.
   * @default 67108864
   */
  maxMessageSize?: number
  /**
   * How messages cross the channel, as `fork()`'s option: `'advanced'` uses Node's v8
   * serializer, so Buffers, typed arrays, Map, Set, Date and BigInt cross unchanged both ways.
   * @default 'json'
   */
  serialization?: 'json' | 'advanced'
}

export type SupervisorState =
  | 'idle'
  | 'starting'
  | 'running'
  | 'restarting'
  | 'stopping'
  | 'stopped'
  | 'exhausted'

/** How a worker process ended, and what it used. */
export interface WorkerExit {
  code: number | null
  signal: SignalName | null
  /** The limit the kernel ended the worker for (its signal says so), or `null`. */
  limit: LimitName | null
  /** `null` only when the launcher died before it could tell. */
  resourceUsage: ResourceUsage | null
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
  /**
   * Rejects with `ERR_IPC_CHANNEL_CLOSED` when no worker is connected, `ERR_INVALID_ARG_VALUE`
   * (a TypeError) when the serialization cannot carry `message`; never throws.
   */
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

/** How many workers a {@link Pool} keeps. */
export type PoolSize = number | { min: number; max: number }

export interface PoolOptions
  extends ConfinementOptions,
    Pick<
    SupervisorOptions,
    | 'modulePath'
    | 'command'
    | 'args'
    | 'execArgv'
    | 'env'
    | 'cwd'
    | 'restartDelay'
    | 'maxRestartDelay'
    | 'healthCheckInterval'
    | 'stopTimeout'
    | 'killSignal'
    | 'stdio'
  > {
  /**
   * Workers kept: a number, or `{ min, max }` — `min` always, more up to `max` while requests
   * wait for a worker, stopped again after `idleTimeout`.
   * @default os.availableParallelism()
   */
  size?: PoolSize
  /**
   * Ms a worker above `size.min` may hold no request before it is stopped gracefully.
   * @default 30000
   */
  idleTimeout?: number
  /**
   * Requests one worker holds at once.
   * @default 1
   */
  concurrency?: number
  /**
   * Requests waiting for a worker; one more is rejected at once with `ERR_POOL_QUEUE_FULL`.
   * `Infinity` allowed.
   * @default 64 × the largest size
   */
  maxQueue?: number
  /**
   * Ms from each dispatch to the answer; `0` = none. On timeout the request rejects with
   * `ERR_TIMEOUT` and the worker is sent `{ tethered: 'cancel', id }`.
   * @default 60000
   */
  requestTimeout?: number
  /**
   * Ms a request may wait in the queue (from each entry into it); `0` = none. Rejects with
   * `ERR_POOL_QUEUE_TIMEOUT` without touching any worker.
   * @default 30000
   */
  queueTimeout?: number
  /**
   * How many worker deaths a request may be in flight for: above 1, a request whose worker
   * died goes back to the front of the queue until then.
   * @default 1
   */
  maxAttempts?: number
  /**
   * More crashes than this within `restartWindow`, pool-wide, and the pool gives up
   * (`'exhausted'`). `Infinity` allowed.
   * @default 10
   */
  maxRestarts?: number
  /**
   * The window of `maxRestarts`, in ms.
   * @default 60000
   */
  restartWindow?: number
  /**
   * After serving between N and 1.1 N requests a worker is replaced gracefully (the replacement
   * first); `0` = never.
   * @default 0
   */
  recycleAfter?: number
  /**
   * Bytes of RSS of the worker's whole process group above which it is replaced gracefully.
   * @default no ceiling
   */
  maxMemory?: number
  /**
   * Ms between memory samples when `maxMemory` is set.
   * @default 1000
   */
  memoryCheckInterval?: number
  /**
   * Ms a ping may go unanswered before the worker is killed as `'unresponsive'`; also how long
   * a worker may take to answer a cancelled request before it is killed and replaced.
   * @default 5000
   */
  healthCheckTimeout?: number
  /**
   * The longest message or answer accepted from a worker, in bytes (an integer ≥ 1). A longer
   * one emits `'error'` with code `ERR_IPC_MESSAGE_TOO_LARGE` and kills the worker, which
   * counts as a crash; its request rejects with `ERR_WORKER_EXITED`.
   * @default 67108864
   */
  maxMessageSize?: number
  /**
   * How messages cross each worker's channel, as the Supervisor's `serialization`.
   * @default 'json'
   */
  serialization?: 'json' | 'advanced'
}

export interface PoolRequestOptions {
  /**
   * Ms from dispatch to the answer; `0` = none.
   * @default the pool's requestTimeout
   */
  timeout?: number
  /**
   * Ms the request may wait for a worker; `0` = none.
   * @default the pool's queueTimeout
   */
  queueTimeout?: number
  /** Aborting rejects with an `AbortError` (`code` `'ABORT_ERR'`, `cause` the signal's reason). */
  signal?: AbortSignal
  /**
   * Worker deaths the request may be in flight for.
   * @default the pool's maxAttempts
   */
  maxAttempts?: number
}

export type PoolState = 'idle' | 'starting' | 'running' | 'closing' | 'closed' | 'exhausted'

export type PoolWorkerState = 'starting' | 'ready' | 'busy' | 'recycling' | 'stopping' | 'restarting'

export interface PoolWorkerStats {
  /** The slot's index, kept by its replacements. */
  worker: number
  /** Null while the slot waits to restart. */
  pid: number | null
  state: PoolWorkerState
  inFlight: number
  /** Requests answered by the current process. */
  served: number
  /** Crashes of the slot. */
  crashes: number
  /** Consecutive restarts of the slot since its last sign of life. */
  restartCount: number
  /** Bytes of RSS of the process group at the last sample; null unless `maxMemory` is set. */
  rss: number | null
  /** Null while there is no process. */
  uptimeMs: number | null
  /** What the slot's last process that exited used; null before one did. */
  lastExitUsage: ResourceUsage | null
}

export interface PoolStats {
  state: PoolState
  queued: number
  inFlight: number
  /** Resolved requests. */
  completed: number
  /** Rejected requests: the sum of `rejected`. */
  failed: number
  rejected: {
    queueFull: number
    queueTimeout: number
    timeout: number
    aborted: number
    workerExited: number
    workerError: number
    exhausted: number
    closed: number
  }
  crashes: number
  restarts: number
  recycles: number
  /** From `request()` to the answer, over the last 1,000 resolved requests; null before one. */
  latencyMs: { p50: number | null; p99: number | null }
  workers: PoolWorkerStats[]
}

/** Which worker an event, message or chunk concerns. */
export interface PoolWorkerRef {
  worker: number
  pid: number
}

export interface PoolEvents {
  spawn: [info: PoolWorkerRef]
  exit: [info: PoolWorkerRef & WorkerExit]
  crashed: [info: PoolWorkerRef & WorkerExit & { restartCount: number }]
  restarting: [info: { worker: number; delay: number; attempt: number }]
  unresponsive: [info: PoolWorkerRef]
  recycle: [info: PoolWorkerRef & { reason: 'requests' | 'memory' | 'timeout' }]
  exhausted: [info: { message: string; crashes: number; window: number }]
  message: [message: unknown, from: PoolWorkerRef]
  stdout: [chunk: Buffer, from: PoolWorkerRef]
  stderr: [chunk: Buffer, from: PoolWorkerRef]
  /** Emitted only when there are listeners; otherwise it becomes a process warning. */
  error: [error: Error]
}

/**
 * Many supervised workers behind one bounded request queue: requests go to the least busy
 * ready worker, wait in FIFO order when all are busy, and are rejected at once when the queue
 * is full. A worker that dies is restarted; its requests are retried (`maxAttempts`) or
 * rejected with `ERR_WORKER_EXITED`. Too many crashes in `restartWindow` exhaust the pool.
 * Nothing of a closed or exhausted pool keeps Node alive.
 *
 * Errors of `request()`: `ERR_POOL_QUEUE_FULL`, `ERR_POOL_QUEUE_TIMEOUT`, `ERR_TIMEOUT`,
 * `ABORT_ERR`, `ERR_WORKER_EXITED` (with `attempts`, `pid`, `exitCode`, `signal` and, with
 * `stdio: 'pipe'`, `stderrTail`), `ERR_WORKER_REQUEST_FAILED` (or the worker's own code),
 * `ERR_POOL_EXHAUSTED`, `ERR_POOL_CLOSED`.
 *
 * @example
 * const pool = new Pool({ modulePath: './thumbnail-worker.js', size: 4, maxQueue: 100 })
 * app.post('/thumb', async (req, res) => {
 *   try {
 *     res.send(await pool.request({ image: req.body.toString('base64') }))
 *   } catch (error) {
 *     if (error.code === 'ERR_POOL_QUEUE_FULL') res.set('Retry-After', '1').sendStatus(503)
 *     else res.sendStatus(502)
 *   }
 * })
 */
export declare class Pool extends EventEmitter<PoolEvents> {
  /** Throws `TypeError`/`RangeError` with `ERR_INVALID_ARG_*` / `ERR_OUT_OF_RANGE` codes. */
  constructor(options: PoolOptions)
  /** Resolves once `size.min` workers are spawned; rejects if one cannot be. */
  start(): Promise<void>
  /** Sends `body` to a worker (starting the pool if needed) and resolves with its `result`. */
  request<Result = unknown>(body: unknown, options?: PoolRequestOptions): Promise<Result>
  /**
   * New requests reject with `ERR_POOL_CLOSED`. With `drain`, queued and in-flight requests
   * finish first; without, queued ones reject `ERR_POOL_CLOSED` and workers stop at once.
   * Resolves once no worker of the pool is left.
   */
  close(options?: {
    /** @default true */
    drain?: boolean
  }): Promise<void>
  /** A plain object, cheap: for a status page or metrics. */
  stats(): PoolStats
  readonly state: PoolState
  /** Live workers. */
  readonly size: number
}
