// Helpers for the Supervisor tests: a supervisor that is cleaned up after its test, and ways to
// wait for and record its events.
import { once } from 'node:events'
import { Supervisor } from 'tethered'
import { fixture, killGroup, pidAlive, waitFor } from './helpers.mjs'

export const EVENTS = ['spawn', 'exit', 'crashed', 'restarting', 'exhausted', 'unresponsive', 'error', 'message']

/**
 * A Supervisor for `fixtureName` (a worker in fixtures/) with `options`. Every event is
 * recorded in `events` as { name, value, at }; every worker pid in `pids`. After the test it is
 * stopped and every group it started is SIGKILLed.
 */
export function supervise(t, fixtureName, options = {}) {
  const sup = new Supervisor({ modulePath: fixture(fixtureName), ...options })
  const events = []
  const pids = []
  for (const name of EVENTS) {
    sup.on(name, (value) => events.push({ name, value, at: performance.now() }))
  }
  sup.on('spawn', ({ pid }) => pids.push(pid))
  t.after(async () => {
    await sup.stop().catch(() => {})
    for (const pid of pids) killGroup(pid)
  })
  return { sup, events, pids }
}

/** The next `name` event of `sup`, or a failure after `timeout` ms. */
export async function nextEvent(sup, name, timeout = 10_000) {
  const [value] = await once(sup, name, { signal: AbortSignal.timeout(timeout) }).catch((error) => {
    throw new Error(`no '${name}' event within ${timeout} ms`, { cause: error })
  })
  return value
}

/**
 * The value of the `nth` (0-based) recorded `name` event, waiting for it. Unlike `nextEvent`, it
 * cannot miss an event delivered in the same batch as the one awaited before it.
 */
export async function recordedEvent(events, name, nth = 0, timeout = 10_000) {
  const found = () => events.filter((e) => e.name === name)[nth]
  await waitFor(() => found() !== undefined, { timeout, what: `'${name}' event #${nth + 1}` })
  return found().value
}

/** The next message for which `match(message)` is true. */
export async function nextMessage(sup, match, timeout = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      sup.off('message', onMessage)
      reject(new Error(`no matching message within ${timeout} ms`))
    }, timeout)
    function onMessage(message) {
      if (!match(message)) return
      clearTimeout(timer)
      sup.off('message', onMessage)
      resolve(message)
    }
    sup.on('message', onMessage)
  })
}

/** Waits until none of `pids` is alive. */
export function allGone(pids, timeout = 5_000) {
  return waitFor(() => pids.every((pid) => !pidAlive(pid)), { timeout, what: `pids ${pids} to be gone` })
}

/** Names of the recorded events, in order, leaving out 'message'. */
export function names(events) {
  return events.filter((e) => e.name !== 'message').map((e) => e.name)
}
