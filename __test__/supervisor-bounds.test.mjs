// The Supervisor stays consistent and bounded when its worker misbehaves: what a 'message'
// listener reads already reflects that message; a worker that prints or sends faster than JS
// takes it in is held back at its pipe or channel; a message over maxMessageSize kills it.
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { test } from 'node:test'
import { tempDir } from './helpers.mjs'
import { nextEvent, supervise } from './supervisor-helpers.mjs'

test('a message that resets the restart count shows the reset to its listener', async (t) => {
  // The race it guards against is lost only some of the time: try a few workers.
  for (let round = 0; round < 6; round++) {
    const tmp = tempDir()
    t.after(tmp.remove)
    const { sup } = supervise(t, 'worker-crash-then-say.js', {
      restartDelay: 0,
      maxRestarts: 5,
      healthCheckInterval: 0,
      env: { COUNT_FILE: join(tmp.dir, 'count'), CRASHES: '2' },
    })
    const counts = []
    sup.on('crashed', ({ restartCount }) => counts.push(restartCount))
    const seen = new Promise((resolve) => {
      sup.on('message', (message) => resolve({ message, restartCount: sup.restartCount }))
    })
    await sup.start()
    const { message, restartCount } = await seen
    assert.deepEqual(message, { said: 3 })
    assert.deepEqual(counts, [0, 1], 'the count before each crash')
    assert.equal(restartCount, 0, `round ${round}: the listener sees the count this message reset`)
    await sup.stop()
  }
})
