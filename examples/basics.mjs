// A tour of tethered's core: every way a command can end, told apart, and nothing left behind.
// Run with `node examples/basics.mjs` (after `npm install`).
import { spawnCollect, runProcess } from 'tethered'

const show = (title, value) => console.log(`\n== ${title}\n`, value)

// 1. A command that works: output and exit code, separately.
show('spawnCollect: stdout and stderr apart', await spawnCollect('sh', ['-c', 'echo to-stdout; echo to-stderr >&2']))

// 2. Every failure mode is a different, checkable outcome — none throws at you.
show('runProcess: command not found', await runProcess('no-such-command-xyz'))
show('runProcess: non-zero exit', await runProcess('sh', ['-c', 'echo failing >&2; exit 3']))

// 3. A timeout kills the whole process group — the grandchildren too.
const tree = await runProcess('sh', ['-c', 'sleep 60 & sleep 60 & wait'], { timeout: 300 })
show('runProcess: timeout kills the group', tree)

// 4. Output limits kill the producer instead of growing memory without bound.
try {
  await spawnCollect('head', ['-c', '1073741824', '/dev/zero'], { maxBuffer: 1024 * 1024, encoding: 'buffer' })
} catch (err) {
  show('spawnCollect: 1 GiB against a 1 MiB maxBuffer', {
    code: err.code,
    stream: err.stream,
    kept: err.stdout.length,
    signal: err.signal,
  })
}

// 5. AbortSignal cancels a running command.
try {
  await spawnCollect('sleep', ['60'], { signal: AbortSignal.timeout(200) })
} catch (err) {
  show('spawnCollect: aborted', { name: err.name, code: err.code, signal: err.signal })
}

console.log('\nEvery child above ran in its own process group, and with killOnParentExit (the')
console.log('default) none of them, nor their descendants, can outlive this process.')
