'use strict'
// The streaming Child: Node streams over the pull-based native child (src/bindings/stream.rs).
//
// Backpressure: the native side never reads a pipe on its own. `_read()` asks for one chunk:
// when the pipe holds data, it is read right here on the JS thread, straight into a new
// JS-owned Buffer of the size available (up to 1 MiB, the pipe's size); when the pipe is empty,
// the native side waits for it (off the JS thread) and `_read` tries again. Until the consumer
// wants more, nothing is read, the pipe fills and the child's write blocks: memory stays at about
// one chunk per stream, whatever the child writes.
//
// Each stream has one native operation in flight at a time: Node calls `_read` again only after
// a push, and `_write`/`_writev` only after the previous callback. The native side does not rely
// on it — waits on one pipe take turns there (src/stream.rs, `Slot::turn`) — but it keeps a
// stream's chunks in order without any bookkeeping here.
//
// Documented behaviour (the types in child.d.ts say the same to users):
// - `exited` resolves `{ exitCode, signal, timedOut, limit, resourceUsage }` once the leader is
//   reaped, for every way a started process ends (exit code, signal, timeout, a limit). It
//   rejects in two cases only: the command could not start (Node's spawn error shape: code,
//   errno, syscall, path, spawnargs), and the AbortSignal fired (AbortError, code ABORT_ERR, after the group was killed and the leader
//   reaped; it carries exitCode/signal/pid when a process had started). `exited` is marked as
//   handled, so a program that never looks at it gets no unhandled rejection.
// - The same error is emitted as 'error' on the Child, but only when the Child has 'error'
//   listeners: nothing is thrown at a program that only awaits `exited`.
// - `pid` is set when spawn() returns (the launcher answers the JS thread directly), and
//   undefined only when the command could not start: `if (!child.pid)` means what it means with
//   child_process. 'spawn' follows on the next tick, as in Node.
// - When the command could not start: `pid` stays undefined, `exitCode` is the negative errno
//   (as Node's), stdout/stderr end (empty), stdin is destroyed without an error (a write to it
//   fails through its callback only).
// - 'close' (exitCode, signalCode) comes after 'exit' (or the failed start) and after stdout
//   and stderr closed, as Node's. Like Node, once the leader exited an output stream nobody
//   ever read is resumed (its data dropped) so that 'close' is not held up by it.
// - Destroying stdout or stderr closes tethered's end of that pipe and sends no signal. The child
//   sees EPIPE (or dies of SIGPIPE, its default) the next time it writes to that stream, as in a
//   shell pipeline. To stop the child, call `kill()`.
// - When the leader exits, stdin is closed (and destroyed without an error, as Node does).
//   A write the child did not take because it exited fails with EPIPE as an 'error' on stdin.
// - Destroying stdin closes it: the child reads EOF.
const { EventEmitter } = require('node:events')
const { Readable, Writable } = require('node:stream')
const binding = require('../binding.js')
const { withPathCwd } = require('./cwd.js')

// Chunks read in a row on the JS thread before yielding to the event loop (setImmediate), so a
// child that writes as fast as we read cannot starve timers and other I/O.
const SYNC_READS_IN_A_ROW = 4

class ChildReadable extends Readable {
  #native
  #fd
  #inARow = 0

  constructor(native, fd) {
    super()
    this.#native = native
    this.#fd = fd
  }

  _read() {
    if (this.#inARow >= SYNC_READS_IN_A_ROW) {
      this.#inARow = 0
      setImmediate(() => this.#pull())
    } else {
      this.#pull()
    }
  }

  // One chunk: read now when the pipe has data, otherwise wait natively until it has.
  #pull() {
    if (this.destroyed) return
    let chunk
    try {
      chunk = this.#native.tryRead(this.#fd)
    } catch (err) {
      this.destroy(err)
      return
    }
    if (chunk === undefined) {
      this.#inARow = 0
      this.#native.waitReadable(this.#fd).then(
        () => this.#pull(),
        (err) => this.destroy(err),
      )
      return
    }
    this.#inARow++
    this.push(chunk)
  }

  _destroy(err, callback) {
    this.#native.closeOutput(this.#fd)
    callback(err)
  }
}

class ChildWritable extends Writable {
  #native

  constructor(native) {
    super()
    this.#native = native
  }

  _write(chunk, _encoding, callback) {
    this.#send(chunk, callback)
  }

  _writev(chunks, callback) {
    this.#send(chunks.length === 1 ? chunks[0].chunk : Buffer.concat(chunks.map((c) => c.chunk)), callback)
  }

  // What fits into the pipe now is written on the JS thread; the rest waits natively for room
  // (and, right after spawn(), for the launcher to start the child).
  #send(buffer, callback) {
    const failed = (err) => {
      if (err.syscall === 'write') {
        callback(err)
      } else {
        // The child never started: that is `exited`'s to report. The stream just goes away.
        this.destroy()
        callback()
      }
    }
    let written
    try {
      written = this.#native.tryWrite(buffer)
    } catch (err) {
      failed(err)
      return
    }
    if (written === buffer.length) {
      callback()
      return
    }
    this.#native.write(buffer.subarray(written)).then(() => callback(), failed)
  }

  _final(callback) {
    this.#native.closeStdin()
    callback()
  }

  _destroy(err, callback) {
    this.#native.closeStdin()
    callback(err)
  }
}

class Child extends EventEmitter {
  #native
  // 'close' waits for the exit (or the failed start) and for stdout and stderr to close.
  #closesNeeded = 1

  constructor(native) {
    super()
    this.#native = native
    const [stdin, stdout, stderr] = native.piped
    this.pid = native.pid ?? undefined
    this.exitCode = null
    this.signalCode = null
    this.killed = false
    this.stdin = stdin ? new ChildWritable(native) : null
    this.stdout = stdout ? new ChildReadable(native, 1) : null
    this.stderr = stderr ? new ChildReadable(native, 2) : null
    this.stdio = [this.stdin, this.stdout, this.stderr]
    for (const output of [this.stdout, this.stderr]) {
      if (output === null) continue
      this.#closesNeeded++
      output.on('close', () => this.#maybeClose())
    }
    if (this.pid !== undefined) {
      process.nextTick(() => this.emit('spawn'))
    } else {
      // Nothing will read stdin: writes fail through their callbacks, never as an 'error'
      // event that would crash a program which only awaits `exited`.
      this.#closeStdin()
    }
    this.exited = native.wait().then(
      (exit) => {
        this.exitCode = exit.exitCode
        this.signalCode = exit.signal
        this.#closeStdin()
        this.emit('exit', exit.exitCode, exit.signal)
        this.#ended()
        return exit
      },
      (err) => {
        if (err.code === 'ABORT_ERR') {
          this.exitCode = err.exitCode ?? null
          this.signalCode = err.signal ?? null
        } else if (this.pid === undefined && typeof err.errno === 'number') {
          this.exitCode = err.errno
        }
        this.#closeStdin()
        if (this.listenerCount('error') > 0) this.emit('error', err)
        if (this.pid !== undefined) this.emit('exit', this.exitCode, this.signalCode)
        this.#ended()
        throw err
      },
    )
    // Handled here so that a program that never awaits `exited` gets no unhandled rejection;
    // whoever awaits it still sees the rejection.
    this.exited.catch(() => {})
  }

  // Sends `signal` (default 'SIGTERM') to the child's whole process group; whether it was
  // delivered. `kill(0)` sends nothing and says whether the leader still runs. As in Node,
  // `killed` becomes true once a kill() call succeeded (kill(0) included). An unknown signal
  // throws a TypeError.
  kill(signal) {
    const delivered = this.#native.kill(signal)
    if (delivered) this.killed = true
    return delivered
  }

  #closeStdin() {
    if (this.stdin && !this.stdin.destroyed) this.stdin.destroy()
  }

  // The leader is gone (or never ran): outputs nobody ever read are drained so they can end, as
  // Node does, then 'close' may follow.
  #ended() {
    for (const output of [this.stdout, this.stderr]) {
      if (output && output.readableFlowing === null && !output.readableDidRead) output.resume()
    }
    this.#maybeClose()
  }

  #maybeClose() {
    if (--this.#closesNeeded === 0) this.emit('close', this.exitCode, this.signalCode)
  }
}

// Not a Promise API: an invalid argument throws here, synchronously. A command that cannot start
// is reported through `exited`.
function spawn(command, args, options) {
  return new Child(binding.spawnStream(command, withPathCwd(args), withPathCwd(options)))
}

module.exports = { Child, spawn }
