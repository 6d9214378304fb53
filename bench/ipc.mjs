// IPC benchmark: tethered's Supervisor against child_process.fork(), both with Node's own IPC
// in the same serialization to the same echo worker, in one run (the machine is noisy: compare
// within a run).
//   small, pipelined — N small messages sent at once, until all N echoes are back (messages/s)
//   small, one at a time — send, wait for the echo, repeat (round trips/s)
//   1 MiB, one at a time — the same with a 1 MiB string (round trips/s, ms per round trip)
//   advanced rows — serialization: 'advanced' on both sides; a 1 MiB Buffer crosses as bytes
// Build the release addon first: `npm run build`.
// Usage: node bench/ipc.mjs [runs=5] [scenario name filter, e.g. "1 MiB"]
import { fork } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Supervisor } from 'tethered'

const runs = Number(process.argv[2] ?? 5)
const only = process.argv[3] ?? ''
const worker = fileURLToPath(new URL('./fixtures/echo-worker.js', import.meta.url))
const SMALL = { type: 'job', id: 42, text: 'hello, worker' }
const MIB = 'x'.repeat(1024 * 1024)
const MIB_BUFFER = Buffer.alloc(1024 * 1024, 'x')

/** An echo worker behind either API, with one `send` and an `onMessage` hook. */
async function tethered(serialization) {
  // The echo worker answers no pings: health checks off, as a plain worker needs.
  const sup = new Supervisor({ modulePath: worker, healthCheckInterval: 0, serialization })
  await sup.start()
  const peer = { send: (message) => sup.send(message), onMessage: null, close: () => sup.stop() }
  sup.on('message', (message) => peer.onMessage(message))
  return peer
}

async function forked(serialization) {
  const child = fork(worker, { stdio: 'inherit', serialization })
  await new Promise((resolve) => child.once('spawn', resolve))
  const peer = {
    send: (message) => child.send(message),
    onMessage: null,
    close: () => new Promise((resolve) => {
      child.once('exit', resolve)
      child.disconnect()
    }),
  }
  child.on('message', (message) => peer.onMessage(message))
  return peer
}

/** Sends `count` messages at once; resolves with echoes per second once all are back. */
function pipelined(peer, count, message) {
  return new Promise((resolve) => {
    let echoed = 0
    const started = performance.now()
    peer.onMessage = () => {
      echoed += 1
      if (echoed === count) resolve(count / ((performance.now() - started) / 1000))
    }
    for (let i = 0; i < count; i++) peer.send(message)
  })
}

/** `count` round trips one after the other; resolves with round trips per second. */
async function sequential(peer, count, message) {
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    const echoed = new Promise((resolve) => (peer.onMessage = resolve))
    peer.send(message)
    await echoed
  }
  return count / ((performance.now() - started) / 1000)
}

const scenarios = [
  { name: 'small, pipelined (20,000 in flight)', mode: 'json', unit: 'msg/s', run: (peer) => pipelined(peer, 20_000, SMALL) },
  { name: 'small, one at a time (5,000)', mode: 'json', unit: 'rt/s', run: (peer) => sequential(peer, 5_000, SMALL) },
  { name: '1 MiB, one at a time (50)', mode: 'json', unit: 'rt/s', run: (peer) => sequential(peer, 50, MIB) },
  { name: 'advanced: small, one at a time (5,000)', mode: 'advanced', unit: 'rt/s', run: (peer) => sequential(peer, 5_000, SMALL) },
  { name: 'advanced: 1 MiB Buffer, one at a time (50)', mode: 'advanced', unit: 'rt/s', run: (peer) => sequential(peer, 50, MIB_BUFFER) },
]

const stats = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  return { min: sorted[0], median: sorted[Math.floor(sorted.length / 2)], max: sorted.at(-1) }
}
const fmt = (n) => (n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1))

const chosen = scenarios.filter((s) => s.name.includes(only))
const peersOf = {}
for (const mode of new Set(chosen.map((s) => s.mode))) {
  peersOf[mode] = { tethered: await tethered(mode), 'fork()': await forked(mode) }
}
const results = []
for (const scenario of chosen) {
  const peers = peersOf[scenario.mode]
  const samples = { tethered: [], 'fork()': [] }
  // Warm up both, then alternate so drift hits both alike.
  for (const peer of Object.values(peers)) await scenario.run(peer)
  for (let i = 0; i < runs; i++) {
    for (const [name, peer] of Object.entries(peers)) samples[name].push(await scenario.run(peer))
  }
  const t = stats(samples.tethered)
  const f = stats(samples['fork()'])
  results.push({ scenario: scenario.name, unit: scenario.unit, tethered: t, fork: f, ratio: t.median / f.median })
}
for (const peers of Object.values(peersOf)) for (const peer of Object.values(peers)) await peer.close()

console.log(`IPC round trips, ${runs} runs each (min / median / max), Node ${process.version}`)
for (const r of results) {
  console.log(`\n${r.scenario}`)
  for (const [name, s] of [['tethered Supervisor', r.tethered], ['child_process.fork()', r.fork]]) {
    console.log(`  ${name.padEnd(22)} ${fmt(s.min)} / ${fmt(s.median)} / ${fmt(s.max)} ${r.unit}`)
  }
  if (r.scenario.includes('1 MiB')) {
    console.log(`  median round trip: tethered ${(1000 / r.tethered.median).toFixed(2)} ms, fork() ${(1000 / r.fork.median).toFixed(2)} ms`)
  }
  console.log(`  tethered / fork() (medians): ${r.ratio.toFixed(2)}×`)
}
