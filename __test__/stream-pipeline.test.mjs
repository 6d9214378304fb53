// stream.pipeline(): one tethered child into another, into a file, into an HTTP response; and
// what destroying a Readable does (closes tethered's end of the pipe, signals nothing).
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createReadStream, createWriteStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { get, createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { ending, MiB, sleep, tracker } from './fixtures/stream-helpers.mjs'

let dir
let input
let inputHash
let small
let smallHash
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tethered-stream-'))
  input = join(dir, 'input.bin')
  const data = randomBytes(48 * MiB)
  writeFileSync(input, data)
  inputHash = createHash('sha256').update(data).digest('hex')
  small = join(dir, 'small.bin')
  writeFileSync(small, data.subarray(0, 6 * MiB))
  smallHash = createHash('sha256').update(data.subarray(0, 6 * MiB)).digest('hex')
})
after(() => rmSync(dir, { recursive: true, force: true }))

const sha256 = async (stream) => {
  const hash = createHash('sha256')
  for await (const chunk of stream) hash.update(chunk)
  return hash.digest('hex')
}

test('pipeline(childA.stdout, childB.stdin) carries the exact bytes', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const a = start('cat', [input])
  const b = start('cat')
  const [, outputHash] = await Promise.all([pipeline(a.stdout, b.stdin), sha256(b.stdout)])
  assert.equal(outputHash, inputHash)
  assert.equal((await a.exited).exitCode, 0)
  assert.equal((await b.exited).exitCode, 0)
})

test('a chain of three: file → child → child → child → file', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const a = start('cat')
  const b = start('gzip', ['-1'])
  const c = start('gunzip')
  const output = join(dir, 'chain.bin')
  await Promise.all([
    pipeline(createReadStream(small), a.stdin),
    pipeline(a.stdout, b.stdin),
    pipeline(b.stdout, c.stdin),
    pipeline(c.stdout, createWriteStream(output)),
  ])
  assert.equal(await sha256(createReadStream(output)), smallHash)
  for (const child of [a, b, c]) assert.equal((await child.exited).exitCode, 0)
})

test('pipeline into an HTTP response', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const server = createServer(async (req, res) => {
    const child = start('cat', [input])
    res.setHeader('content-type', 'application/octet-stream')
    await pipeline(child.stdout, res)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const [response] = await once(get(`http://127.0.0.1:${server.address().port}/`), 'response')
  assert.equal(response.statusCode, 200)
  assert.equal(await sha256(response), inputHash)
})

test('a client that disconnects: the Readable is destroyed and the child dies of SIGPIPE', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  let child
  let served
  const server = createServer((req, res) => {
    child = start('cat', ['/dev/zero'])
    served = pipeline(child.stdout, res).catch((err) => err)
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.after(() => server.close())
  const request = get(`http://127.0.0.1:${server.address().port}/`)
  const [response] = await once(request, 'response')
  let received = 0
  for await (const chunk of response) {
    received += chunk.length
    if (received > 4 * MiB) break
  }
  request.destroy()
  const err = await served
  assert.ok(err instanceof Error, 'the pipeline reports the disconnect')
  assert.equal(child.stdout.destroyed, true)
  // tethered sent nothing: the child's next write met a closed pipe.
  assert.deepEqual(ending(await child.exited), { exitCode: null, signal: 'SIGPIPE', timedOut: false })
})

test('destroying stdout signals nothing: a child ignoring SIGPIPE sees EPIPE and decides', async (t) => {
  const { start, cleanup } = tracker()
  t.after(cleanup)
  const child = start('sh', ['-c', 'trap "" PIPE; while :; do echo x || exit 9; done'])
  await once(child.stdout, 'data')
  child.stdout.destroy()
  assert.deepEqual(ending(await child.exited), { exitCode: 9, signal: null, timedOut: false })

  const yes = start('yes')
  await once(yes.stdout, 'readable')
  yes.stdout.destroy()
  await sleep(10)
  assert.deepEqual(ending(await yes.exited), { exitCode: null, signal: 'SIGPIPE', timedOut: false })
})
