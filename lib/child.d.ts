// Types of the streaming spawn() (lib/child.js); index.d.ts re-exports them.
import type { EventEmitter } from 'node:events'
import type { Readable, Writable } from 'node:stream'
import type { LimitName, ResourceUsage, SignalName, SpawnOptions } from '../index'

export type StdioMode = 'pipe' | 'ignore' | 'inherit'

/**
 * `SpawnOptions` plus `stdio`. Unlike the collecting calls, a stream has no default timeout.
 * As with Node's `spawn()`, `null` options are a TypeError (`ERR_INVALID_ARG_TYPE`); `null`
 * args are no args.
 */
export interface StreamOptions extends SpawnOptions {
  /**
   * Milliseconds before the child's whole process group is killed with `killSignal`;
   * `0` means none. `exited` then resolves with `timedOut: true`.
   * @default 0
   */
  timeout?: number
  /**
   * stdin, stdout, stderr: `'pipe'` gives a stream, `'ignore'` connects /dev/null, `'inherit'`
   * this process's own fd. One mode for all three, or an array of up to three (missing or
   * `null` = `'pipe'`).
   * @default 'pipe'
   */
  stdio?: StdioMode | [StdioMode?, StdioMode?, StdioMode?]
}

/** How the leader of the child's process group ended. */
export interface ExitInfo {
  /** The exit code, or null when a signal ended it. */
  exitCode: number | null
  /** The signal that ended it, or null. */
  signal: SignalName | null
  /** Whether `timeout` passed and tethered killed the group. */
  timedOut: boolean
  /** The limit the kernel ended it for (its signal says so), or null. */
  limit: LimitName | null
  resourceUsage: ResourceUsage
}

/**
 * A started (or failed) streaming child.
 *
 * Backpressure: the pipes are read only when `stdout`/`stderr` want data, up to 1 MiB per read;
 * a consumer that stops reading leaves the child blocked in its write, and memory bounded.
 *
 * Destroying `stdout`/`stderr` closes tethered's end of that pipe and signals nothing: the child
 * gets EPIPE (or dies of SIGPIPE, its default) the next time it writes there, as in a shell
 * pipeline. Call `kill()` to stop it. An output stream ends when every process holding the pipe
 * closed it: a descendant that keeps it open keeps the stream open.
 *
 * Output nobody reads stays in its pipe (the child blocks once the pipe is full) and the pipe is
 * closed when the stream ends, is destroyed, or the Child is garbage-collected.
 *
 * When the leader exits, `stdin` is closed and destroyed (without an error), so an untouched
 * stdin holds no fd. A write the child did not take fails with EPIPE as an 'error' on `stdin`.
 *
 * `pid` is a number when `spawn()` returns (the call waits for the launcher's answer: about
 * the cost of one spawn), and undefined only when the command could not start: `if (!child.pid)`
 * detects a failed start as with `child_process`. Then `exitCode` is the negative errno (as
 * Node's), `stdout`/`stderr` end empty and `stdin` is already destroyed (writes fail through
 * their callbacks, never as an 'error' event).
 *
 * Events, as Node names them: 'spawn' (started; on the next tick), 'exit' (exitCode, signal)
 * when the leader was reaped, 'close' (exitCode, signal) after 'exit' (or the failed start) once
 * stdout and stderr closed — output nobody ever read is then drained, as Node does — and
 * 'error' with the error `exited` rejects with, emitted only when the Child has 'error'
 * listeners.
 */
export declare class Child extends EventEmitter {
  /** The child's pid, also its process group id; undefined only when it could not start. */
  readonly pid: number | undefined
  /** `[stdin, stdout, stderr]`, as Node's `subprocess.stdio`. */
  readonly stdio: [Writable | null, Readable | null, Readable | null]
  /** null unless stdio[0] is 'pipe'. */
  readonly stdin: Writable | null
  /** null unless stdio[1] is 'pipe'. Chunks are Buffers; `setEncoding` works as in Node. */
  readonly stdout: Readable | null
  /** null unless stdio[2] is 'pipe'. */
  readonly stderr: Readable | null
  /**
   * Settles once the leader is reaped, and resolves for every way a started process ends (exit
   * code, signal, timeout). Rejects only when the command could not start — an Error with
   * Node's spawn-error fields (code such as 'ENOENT', errno, syscall 'spawn <command>', path,
   * spawnargs) — when `options.signal` aborted it — an AbortError (code 'ABORT_ERR') carrying
   * `exitCode`, `signal` and `pid`, after the group was killed and the leader reaped — and with
   * `ERR_LAUNCHER_EXITED` if the launcher died while the process ran (or before it answered the
   * spawn), or `ERR_LAUNCHER_START` if no launcher could be started (its binary is missing or
   * cannot run, or 5 in a row died before answering: spawns are then refused for 5 s). An
   * AbortError's `cause` is the signal's `reason`. The rejection is marked handled: a program
   * that never awaits `exited` gets no unhandled rejection.
   */
  readonly exited: Promise<ExitInfo>
  /** Set when the leader was reaped; the negative errno when the command could not start. */
  readonly exitCode: number | null
  /** Set when the leader was reaped. */
  readonly signalCode: SignalName | null
  /** Whether a `kill()` call succeeded (as Node's, `kill(0)` included). */
  readonly killed: boolean
  /**
   * Sends `signal` to the child's whole process group (no escalation); whether it was delivered:
   * false once the leader was reaped or when it never started. `kill(0)` sends nothing and
   * says whether the leader still runs. An unknown signal throws a TypeError.
   * @default 'SIGTERM'
   */
  kill(signal?: SignalName | number): boolean

  on(event: 'spawn', listener: () => void): this
  on(event: 'exit', listener: (exitCode: number | null, signal: SignalName | null) => void): this
  on(event: 'close', listener: (exitCode: number | null, signal: SignalName | null) => void): this
  on(event: 'error', listener: (err: Error) => void): this
  on(event: string | symbol, listener: (...args: any[]) => void): this
}

/**
 * Starts `command` with streaming stdio. Invalid arguments throw synchronously (TypeError /
 * RangeError with Node's codes); a command that cannot start is reported through `exited`.
 */
export declare function spawn(command: string, args?: readonly string[], options?: StreamOptions): Child
export declare function spawn(command: string, options?: StreamOptions): Child
