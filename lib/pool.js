'use strict'
// The Pool's EventEmitter face. The native side (src/pool, src/bindings/pool.rs) validates the
// options, runs the workers, the queue, timers, restarts and recycling, and hands over notices
// in batches; this file turns them into events and settled promises, encodes and decodes bodies,
// results and messages in the serialization chosen (lib/serialization.js), and keeps each
// request's AbortSignal, which only JavaScript can hear.
const { EventEmitter } = require('node:events')
const { NativePool } = require('../binding.js')
const { bugReport, guarded, emitError } = require('./deliver.js')
const { codecs } = require('./serialization.js')

class Pool extends EventEmitter {
  #native
  /**
   * Promises of start/close/request calls not yet settled, by call id; a request's entry also
   * holds its AbortSignal and the listener added to it.
   */
  #calls = new Map()
  #codec

  constructor(options) {
    super()
    this.#native = new NativePool(options)
    this.#codec = codecs[this.#native.serialization]
  }

  get state() {
    return this.#native.state
  }

  get size() {
    return this.#native.size
  }

  start() {
    return new Promise((resolve, reject) => {
      const id = this.#native.start(this.#deliver)
      this.#calls.set(id, { resolve, reject })
    })
  }

  // Never throws: invalid options, a full queue, a closed pool or a signal that had already
  // fired reject the returned promise.
  request(body, options) {
    return new Promise((resolve, reject) => {
      const signal = options !== null && typeof options === 'object' ? options.signal : undefined
      let id
      try {
        id = this.#native.request(this.#codec.request(body), options, this.#deliver)
      } catch (error) {
        if (error?.code === 'ABORT_ERR') error.cause = signal.reason
        throw error
      }
      const call = { resolve, reject, signal, onAbort: undefined }
      if (signal !== undefined) {
        call.onAbort = () => this.#native.abort(id)
        signal.addEventListener('abort', call.onAbort, { once: true })
      }
      this.#calls.set(id, call)
    })
  }

  close(options) {
    return new Promise((resolve, reject) => {
      const id = this.#native.close(options)
      if (id === null) resolve()
      else this.#calls.set(id, { resolve, reject })
    })
  }

  stats() {
    return this.#native.stats()
  }

  /** Receives a batch of notices from the native side, in order. */
  #deliver = (notices) => {
    for (const notice of notices) {
      if (notice.kind === 'messages') {
        const from = { worker: notice.worker, pid: notice.pid }
        for (const data of notice.data) guarded(() => this.emit('message', this.#codec.decode(data), from))
      } else {
        guarded(() => this.#handle(notice))
      }
    }
  }

  #handle(notice) {
    switch (notice.kind) {
      case 'settled':
        this.#settle(notice)
        break
      case 'warning':
        // The native side found a bug of its own while taking in a batch.
        bugReport(notice.value)
        break
      case 'error':
        emitError(this, notice.value)
        break
      case 'stdout':
      case 'stderr':
        this.emit(notice.kind, notice.value, { worker: notice.worker, pid: notice.pid })
        break
      default:
        this.emit(notice.kind, notice.value)
    }
  }

  #settle(notice) {
    const call = this.#calls.get(notice.call)
    if (call === undefined) {
      // Cannot happen: every id comes from a call made above, and ids never repeat. Were it
      // to happen, it is a bug to report, not a reason to crash the host process.
      bugReport(`tethered: a settlement for call ${notice.call}, which is not waiting for one`)
      return
    }
    this.#calls.delete(notice.call)
    if (call.onAbort !== undefined) call.signal.removeEventListener('abort', call.onAbort)
    if (notice.error !== undefined) {
      if (notice.error.code === 'ABORT_ERR' && call.signal !== undefined) {
        notice.error.cause = call.signal.reason
      }
      call.reject(notice.error)
    } else {
      call.resolve(notice.data === undefined ? undefined : this.#codec.result(notice.data))
    }
  }
}

module.exports = { Pool }
