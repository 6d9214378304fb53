// Helpers for the Pool tests: a pool that is cleaned up after its test, its events recorded,
// and ways to wait for them and to watch the pool's size over time.
import { once } from 'node:events'
import { Pool } from 'tethered'
import { fixture, killGroup, pidAlive, waitFor } from './helpers.mjs'

export const POOL_EVENTS = ['spawn', 'exit', 'crashed', 'restarting', 'unresponsive', 'recycle', 'exhausted', 'error', 'message']

/** Small delays where the behaviour allows, so the suite stays quick on a busy machine. */
export const QUICK = { restartDelay: 50, healthCheckTimeout: 500, stopTimeout: 2_000 }

/**
 * A Pool of `fixtureName` (a worker in fixtures/, pool-worker.js by default) with QUICK and
 * `options`. Every event is recorded in `events` as { name, value, info, at }; every worker pid
 * in `pids`. After the test it is closed without drain and every group it started is SIGKILLed.
 */
export function makePool(t, options = {}, fixtureName = 'pool-worker.js') {
  const pool = new Pool({ modulePath: fixture(fixtureName), ...QUICK, ...options })
  const events = []
  const pids = []
  for (const name of POOL_EVENTS) {
    pool.on(name, (value, info) => events.push({ name, value, info, at: performance.now() }))
  }
  pool.on('spawn', ({ pid }) => pids.push(pid))
  t.after(async () => {
    await pool.close({ drain: false }).catch(() => {})
    for (const pid of pids) killGroup(pid)
  })
  return { pool, events, pids }
}

/** The next `name` event of `emitter` (its first argument), or a failure after `timeout` ms. */
export async function nextEvent(emitter, name, timeout = 10_000) {
  const [value] = await once(emitter, name, { signal: AbortSignal.timeout(timeout) }).catch((error) => {
    throw new Error(`no '${name}' event within ${timeout} ms`, { cause: error })
  })
  return value
}

/** The next 'message' from a worker for which `match(message)` is true. */
export function nextMessage(pool, match, timeout = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      pool.off('message', onMessage)
      reject(new Error(`no matching message within ${timeout} ms`))
    }, timeout)
    function onMessage(message) {
      if (!match(message)) return
      clearTimeout(timer)
      pool.off('message', onMessage)
      resolve(message)
    }
    pool.on('message', onMessage)
  })
}

/** The recorded events called `name`, their first argument each. */
export function eventsNamed(events, name) {
  return events.filter((e) => e.name === name).map((e) => e.value)
}

/** Waits until at least `count` events called `name` were recorded; returns them all. */
export function recorded(events, name, count = 1, timeout = 10_000) {
  return waitFor(
    () => {
      const found = eventsNamed(events, name)
      return found.length >= count && found
    },
    { timeout, what: `${count} '${name}' event(s)` },
  )
}

/** Waits until none of `pids` is alive. */
export function allGone(pids, timeout = 5_000) {
  return waitFor(() => pids.every((pid) => !pidAlive(pid)), { timeout, what: `pids ${pids} to be gone` })
}

/**
 * Samples `pool.size` and the live worker processes every `interval` ms until stopped; `min()`
 * is the smallest size seen — a dip in capacity shows here.
 */
export function watchSize(pool, interval = 5) {
  const sizes = []
  const timer = setInterval(() => sizes.push(pool.size), interval)
  return {
    sizes,
    stop: () => clearInterval(timer),
    min: () => Math.min(...sizes),
    max: () => Math.max(...sizes),
  }
}
