// Types of tethered/worker, the optional helper for a worker run by a tethered Supervisor.
// Requiring it answers health checks; outside a supervised process it does nothing.

/**
 * Answers each `supervisor.request(body)` with `await handler(body)`; a throw (or rejection)
 * becomes the request's rejection, with the error's `message` and `code`. Without a handler
 * the helper leaves request envelopes to the worker's own `process.on('message')`.
 */
export function onRequest<Body = any, Result = unknown>(handler: (body: Body) => Result | Promise<Result>): void

/** Runs `hook` when `supervisor.stop()` asks the worker to shut down; then the worker exits. */
export function onShutdown(hook: () => void | Promise<void>): void
