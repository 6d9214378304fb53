// Backpressure end to end: a consumer that does not keep up stops the child at the pipe, and the
// memory of this process stays bounded whatever the child writes.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { Writable } from 'node:stream'
import { finished, pipeline } from 'node:stream/promises'
import { alive, bytesWritten, ending, eventually, MiB, peakRssGrowth, procStat, sleep, tracker } from './fixtures/stream-helpers.mjs'

const GiB = 1024 * MiB

test('1 GiB through stdout into a slow consumer: peak RSS grows by less than 96 MiB', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const { result, growthMiB } = await peakRssGrowth(async (sample) => {
    const child = start('head', ['-c', String(GiB), '/dev/zero'], { stdio: ['ignore', 'pipe', 'inherit'] })
    let bytes = 0
    let chunks = 0
    // Slow: every chunk takes a timer tick, far slower than `head` writes.
    const slowConsumer = new Writable({
      write(chunk, _encoding, callback) {
        bytes += chunk.length
        if (++chunks % 16 === 0) sample()
        setTimeout(callback, 1)
      },
    })
    await pipeline(child.stdout, slowConsumer)
    return { bytes, chunks, exit: await child.exited }
  })
  assert.equal(result.bytes, GiB)
  assert.deepEqual(ending(result.exit), { exitCode: 0, signal: null, timedOut: false })
  // Typically +44 MiB (1 MiB chunks that the GC frees when it gets to them); without
  // backpressure it would be the whole GiB. The margin is for a GC that runs late on a loaded
  // machine (+67 MiB was seen once in CI).
  assert.ok(growthMiB < 96, `peak RSS grew by ${growthMiB.toFixed(1)} MiB`)
  t.diagnostic(`${result.chunks} chunks (avg ${(GiB / result.chunks / 1024).toFixed(0)} KiB), peak RSS +${growthMiB.toFixed(1)} MiB`)
})

test('a child writing forever is paused by backpressure (blocked, alive, memory flat), then killed', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('cat', ['/dev/zero'], { stdio: ['ignore', 'pipe', 'inherit'] })
  let received = 0
  child.stdout.on('data', (chunk) => {
    received += chunk.length
    if (received >= 16 * MiB) child.stdout.pause()
  })
  assert.ok(await eventually(() => child.stdout.isPaused(), 10_000), 'the consumer paused')
  // Let the pipe fill: from then on the child cannot write.
  await sleep(300)
  const writtenBefore = bytesWritten(child.pid)
  const receivedBefore = received
  const { growthMiB } = await peakRssGrowth(async () => sleep(1000))
  assert.equal(bytesWritten(child.pid), writtenBefore, 'the child is blocked in write(2)')
  assert.equal(received, receivedBefore, 'nothing is read while paused')
  assert.ok(alive(child.pid), 'the child did not die')
  assert.equal(procStat(child.pid)[0], 'S', 'the child sleeps (in pipe_write)')
  assert.ok(growthMiB < 8, `RSS grew by ${growthMiB.toFixed(1)} MiB while paused`)
  // Unbounded output was never buffered: what was written is what was read plus the pipe and
  // at most a few reads in flight.
  assert.ok(writtenBefore - receivedBefore <= 4 * MiB, `${writtenBefore - receivedBefore} bytes unaccounted`)

  assert.equal(child.kill(), true)
  assert.deepEqual(ending(await child.exited), { exitCode: null, signal: 'SIGTERM', timedOut: false })
  assert.equal(child.kill(), false, 'nothing left to signal')
})

test('100 MiB into stdin with drain handling arrive intact', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('sha256sum', [], { stdio: ['pipe', 'pipe', 'inherit'] })
  const output = []
  child.stdout.on('data', (chunk) => output.push(chunk))
  const block = randomBytes(MiB)
  const expected = createHash('sha256')
  let waitsForDrain = 0
  let mostBuffered = 0
  for (let i = 0; i < 1600; i++) {
    // 64 KiB pieces at varying offsets, so the content is not periodic in the piece size.
    const piece = block.subarray((i * 7919) % (MiB - 65536), ((i * 7919) % (MiB - 65536)) + 65536)
    expected.update(piece)
    const more = child.stdin.write(piece)
    mostBuffered = Math.max(mostBuffered, child.stdin.writableLength)
    if (!more) {
      waitsForDrain++
      await once(child.stdin, 'drain')
    }
  }
  child.stdin.end()
  assert.deepEqual(ending(await child.exited), { exitCode: 0, signal: null, timedOut: false })
  await finished(child.stdout)
  assert.equal(Buffer.concat(output).toString().split(' ')[0], expected.digest('hex'))
  assert.ok(waitsForDrain > 0, 'write() asked to wait for drain')
  assert.ok(mostBuffered <= child.stdin.writableHighWaterMark + 65536, `${mostBuffered} bytes buffered`)
})

test('stdin honours highWaterMark: a child that does not read stalls the writer', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('sleep', ['30'], { stdio: ['pipe', 'ignore', 'ignore'] })
  const piece = Buffer.alloc(64 * 1024)
  let accepted = 0
  for (;;) {
    accepted += piece.length
    if (child.stdin.write(piece)) continue
    const drained = await Promise.race([once(child.stdin, 'drain').then(() => true), sleep(300).then(() => false)])
    if (!drained) break
    assert.ok(accepted < 16 * MiB, `${accepted} bytes accepted by a child that reads nothing`)
  }
  // The pipe (1 MiB) took what it could; the rest waits in the stream, and 'drain' never comes.
  assert.ok(accepted <= 2 * MiB, `${accepted} bytes accepted`)
  assert.ok(child.stdin.writableLength > 0)
  child.kill('SIGKILL')
  assert.equal((await child.exited).signal, 'SIGKILL')
})
