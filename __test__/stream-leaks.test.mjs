// No fd and no zombie left behind: after 1000 streaming children, and for streams nobody read.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import { spawn } from 'tethered'
import { eventually, openFds, ownZombies, sleep } from './fixtures/stream-helpers.mjs'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc')

async function warmUp() {
  const child = spawn('true')
  child.stdout.resume()
  child.stderr.resume()
  await child.exited
  await sleep(50)
}

test('1000 streaming children leave no fd and no zombie', async () => {
  await warmUp()
  const fdsBefore = openFds()
  let next = 0
  let outputs = 0
  // 25 at a time; stdin stays untouched (closed for the user when each child exits).
  async function worker() {
    while (next < 1000) {
      const i = next++
      const child = spawn('sh', ['-c', 'echo "out $1"; echo "err $1" >&2', 'sh', String(i)])
      const read = async (stream) => {
        let text = ''
        for await (const chunk of stream) text += chunk
        return text
      }
      const [out, err, exit] = await Promise.all([read(child.stdout), read(child.stderr), child.exited])
      assert.equal(out, `out ${i}\n`)
      assert.equal(err, `err ${i}\n`)
      assert.equal(exit.exitCode, 0)
      assert.equal(child.stdin.destroyed, true)
      outputs++
    }
  }
  await Promise.all(Array.from({ length: 25 }, worker))
  assert.equal(outputs, 1000)
  assert.ok(await eventually(() => openFds() <= fdsBefore), `fds: ${fdsBefore} before, ${openFds()} after`)
  assert.deepEqual(ownZombies(), [])
})

test('streams nobody reads are drained after the exit, as Node does, and release their pipes', async () => {
  await warmUp()
  const fdsBefore = openFds()
  await (async () => {
    const children = Array.from({ length: 100 }, () => spawn('echo', ['unread']))
    await Promise.all(children.map((child) => once(child, 'close')))
  })()
  const released = await eventually(() => {
    gc()
    return openFds() <= fdsBefore
  }, 10_000)
  assert.ok(released, `fds: ${fdsBefore} before, ${openFds()} after gc`)
  assert.deepEqual(ownZombies(), [])
})
