'use strict'
// What the EventEmitter faces (lib/supervisor.js, lib/pool.js) share when they take in a batch
// of notices from the native side.

/** Tells the operator about a bug of tethered, as a process warning. */
function bugReport(message) {
  process.emitWarning(`${message}; please report this bug`, 'TetheredBugWarning')
}

/**
 * Runs `deliver`; if a listener throws, that is its own uncaught exception, as with any
 * emitter, and the rest of the batch (settlements included) is still delivered.
 */
function guarded(deliver) {
  try {
    deliver()
  } catch (error) {
    process.nextTick(() => {
      throw error
    })
  }
}

/**
 * Emits an 'error' event, or a process warning when nobody listens: an 'error' nobody listens
 * for would crash the process, and a supervisor or pool must not.
 */
function emitError(emitter, error) {
  if (emitter.listenerCount('error') > 0) emitter.emit('error', error)
  else process.emitWarning(error)
}

module.exports = { bugReport, guarded, emitError }
