// Types of tethered/worker, the optional helper for a worker run by a tethered Supervisor or Pool.
// Requiring it answers health checks; outside a supervised process it does nothing.

/** What a request handler gets besides the body. */
export interface RequestContext {
  /**
   * Aborted when the request is cancelled (a Pool's request timed out or was aborted); its
   * `reason` is an Error with `name: 'AbortError'` and `code: 'ABORT_ERR'`. Stop the work when
   * it fires: the worker's slot stays taken until the handler settles, and once cancelled the
   * request is answered with that ABORT_ERR error whatever the handler returns.
   */
  signal: AbortSignal
}

/**
 * Answers each `request(body)` with `await handler(body, { signal })`; a throw (or rejection)
 * becomes the request's rejection, with the error's `message` and `code`. Without a handler
 * the helper leaves request and cancel envelopes to the worker's own `process.on('message')`.
 */
export function onRequest<Body = any, Result = unknown>(
  handler: (body: Body, context: RequestContext) => Result | Promise<Result>,
): void

/** Runs `hook` when `supervisor.stop()` asks the worker to shut down; then the worker exits. */
export function onShutdown(hook: () => void | Promise<void>): void
