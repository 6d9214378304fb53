'use strict'
// tethered/worker: the optional helper for a worker run by a tethered Supervisor or Pool.
// Requiring it answers health checks ({type:'ping'} → {type:'pong'}); `onRequest` answers
// request() envelopes; `onShutdown` runs before the worker leaves when stop() asks it to. A
// worker can do all of this itself with process.on('message') / process.send — the envelopes are:
//   in:  { tethered: 'request', id, body }
//   in:  { tethered: 'cancel', id }      (a Pool gave up on the request: timeout or abort)
//   out: { tethered: 'response', id, result }  or  { tethered: 'response', id, error: { message, code } }
// Outside a supervised process (no IPC channel) requiring it does nothing.
//
// Cancellation: each request gets its own AbortController, whose signal reaches the handler as
// `handler(body, { signal })` (a handler that takes only `body` simply never sees it). A cancel
// aborts that signal; the request is still answered exactly once, when its handler settles, and
// that answer is then an ABORT_ERR error whatever the handler produced. The answer waits for the
// handler on purpose: the Pool keeps the worker's slot taken until the answer arrives, so a
// handler that stops when told frees the slot at once, and one that ignores the signal keeps the
// slot until it finishes — or until the Pool decides the worker is stuck and replaces it.

let requestHandler = null
let shutdownHook = null
let shuttingDown = false
/** The AbortController of every request whose handler has not settled yet, by request id. */
const running = new Map()

/**
 * Answers each request with `await handler(body, { signal })`; a throw becomes the request's
 * rejection. `signal` aborts when the request is cancelled.
 */
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

function errorAnswer(error) {
  const message = error instanceof Error ? error.message : String(error)
  const code = error && typeof error.code === 'string' ? error.code : undefined
  return { message, code }
}

async function answer(id, body) {
  const controller = new AbortController()
  // Registered before the handler runs, so a cancel read right after the request finds it.
  running.set(id, controller)
  let outcome
  try {
    outcome = { result: await requestHandler(body, { signal: controller.signal }) }
  } catch (error) {
    outcome = { error: errorAnswer(error) }
  }
  running.delete(id)
  if (controller.signal.aborted) outcome = { error: errorAnswer(controller.signal.reason) }
  reply({ tethered: 'response', id, ...outcome })
}

function cancel(id) {
  const controller = running.get(id)
  // An id not running was answered already: its answer and the cancel crossed on the way.
  if (controller === undefined || controller.signal.aborted) return
  // The shape of Node's own AbortError (name and code), so the answer carries code ABORT_ERR.
  const reason = Object.assign(new Error(`request ${id} was cancelled`), { name: 'AbortError', code: 'ABORT_ERR' })
  controller.abort(reason)
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

const isRequestId = (id) => Number.isSafeInteger(id) && id > 0

if (typeof process.send === 'function') {
  process.on('message', (message) => {
    if (message === null || typeof message !== 'object') return
    if (message.type === 'ping') reply({ type: 'pong' })
    else if (message.type === 'shutdown') shutDown()
    else if (requestHandler && isRequestId(message.id)) {
      if (message.tethered === 'request') answer(message.id, message.body)
      else if (message.tethered === 'cancel') cancel(message.id)
    }
  })
}

module.exports = { onRequest, onShutdown }
