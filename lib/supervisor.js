'use strict'
// The Supervisor's EventEmitter face. The native side (src/supervisor, src/bindings/supervisor.rs)
// validates the options, runs the worker, its channel, timers and restarts, and hands over
// notices in batches; this file only turns them into events and settled promises, and encodes
// and decodes messages in the serialization chosen (lib/serialization.js).
const { EventEmitter } = require('node:events')
const { NativeSupervisor } = require('../binding.js')
const { bugReport, guarded, emitError } = require('./deliver.js')
const { codecs } = require('./serialization.js')

class Supervisor extends EventEmitter {
  #native
  /** Promises of start/stop/send/request calls not yet settled, by call id. */
  #calls = new Map()
  #codec

  constructor(options) {
    super()
    this.#native = new NativeSupervisor(options)
    this.#codec = codecs[this.#native.serialization]
  }

  get pid() {
    return this.#native.pid ?? null
  }

  get state() {
    return this.#native.state
  }

  get restartCount() {
    return this.#native.restartCount
  }

  get connected() {
    return this.#native.connected
  }

  start() {
    return this.#call(() => this.#native.start(this.#deliver))
  }

  stop() {
    return this.#call(() => this.#native.stop())
  }

  // Like every method here, never throws: a message the serialization cannot carry or a
  // missing worker rejects the returned promise.
  send(message) {
    return this.#call(() => this.#native.send(this.#codec.message(message)))
  }

  request(message, options) {
    return this.#call(() => this.#native.request(this.#codec.request(message, 'message'), options))
  }

  /** Runs a native call; its outcome arrives later as a `settled` notice (null: done already). */
  #call(invoke) {
    return new Promise((resolve, reject) => {
      const id = invoke()
      if (id === null || id === undefined) resolve()
      else this.#calls.set(id, { resolve, reject })
    })
  }

  /** Receives a batch of notices from the native side, in order. */
  #deliver = (notices) => {
    for (const notice of notices) {
      if (notice.kind === 'messages') {
        for (const data of notice.data) guarded(() => this.emit('message', this.#codec.decode(data)))
      } else {
        guarded(() => this.#handle(notice))
      }
    }
  }

  #handle(notice) {
    switch (notice.kind) {
      case 'settled': {
        const call = this.#calls.get(notice.call)
        if (call === undefined) {
          // Cannot happen: every id comes from a call made above, and ids never repeat. Were it
          // to happen, it is a bug to report, not a reason to crash the host process.
          bugReport(`tethered: a settlement for call ${notice.call}, which is not waiting for one`)
          break
        }
        this.#calls.delete(notice.call)
        if (notice.error !== undefined) call.reject(notice.error)
        else call.resolve(notice.data === undefined ? undefined : this.#codec.result(notice.data))
        break
      }
      case 'warning':
        // The native side found a bug of its own while taking in a batch.
        bugReport(notice.value)
        break
      case 'error':
        emitError(this, notice.value)
        break
      default:
        this.emit(notice.kind, notice.value)
    }
  }
}

module.exports = { Supervisor }
