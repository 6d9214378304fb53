'use strict'
// tethered/worker: the optional helper for a worker run by a tethered Supervisor. Requiring it
// answers health checks ({type:'ping'} → {type:'pong'}); `onRequest` answers request()
// envelopes; `onShutdown` runs before the worker leaves when stop() asks it to. A worker can
// do all of this itself with process.on('message') / process.send — the envelopes are:
//   in:  { tethered: 'request', id, body }
//   out: { tethered: 'response', id, result }  or  { tethered: 'response', id, error: { message, code } }
// Outside a supervised process (no IPC channel) requiring it does nothing.

let requestHandler = null
let shutdownHook = null
let shuttingDown = false

/** Answers each request with `await handler(body)`; a throw becomes the request's rejection. */
function onRequest(handler) {
  if (typeof handler !== 'function') throw new TypeError('onRequest(handler): handler must be a function')
  requestHandler = handler
}

/** Runs `hook` (it may return a promise) when the supervisor asks the worker to shut down. */
function onShutdown(hook) {
  if (typeof hook !== 'function') throw new TypeError('onShutdown(hook): hook must be a function')
  shutdownHook = hook
}

function reply(message) {
  // With a callback, a channel that closed meanwhile is reported to it instead of throwing.
  if (process.connected) process.send(message, () => {})
}

async function answer(id, body) {
  try {
    reply({ tethered: 'response', id, result: await requestHandler(body) })
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error)
    const code = error && typeof error.code === 'string' ? error.code : undefined
    reply({ tethered: 'response', id, error: { message, code } })
  }
}

async function shutDown() {
  if (shuttingDown) return
  shuttingDown = true
  try {
    if (shutdownHook) await shutdownHook()
  } catch (error) {
    console.error('tethered/worker: the onShutdown hook failed:', error)
    process.exitCode ??= 1
  }
  process.exit()
}

if (typeof process.send === 'function') {
  process.on('message', (message) => {
    if (message === null || typeof message !== 'object') return
    if (message.type === 'ping') reply({ type: 'pong' })
    else if (message.type === 'shutdown') shutDown()
    else if (message.tethered === 'request' && requestHandler && Number.isSafeInteger(message.id) && message.id > 0) {
      answer(message.id, message.body)
    }
  })
}

module.exports = { onRequest, onShutdown }
