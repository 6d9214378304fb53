// Builds the launcher binary (crates/launcher, a crate of its own that `napi build` does not
// build) and copies it next to the .node file, where the addon looks for it at run time.
// `node scripts/build-launcher.mjs release|debug`; release uses the workspace's release profile.
import { spawnSync } from 'node:child_process'
import { copyFileSync, chmodSync, renameSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const LAUNCHER = 'tethered-launcher'
const release = process.argv[2] === 'release'

// Cargo's artifact messages say where the binary went, whatever the target directory.
const args = ['build', '--package', LAUNCHER, '--message-format=json-render-diagnostics']
if (release) args.push('--release')
const cargo = spawnSync('cargo', args, {
  cwd: root,
  stdio: ['ignore', 'pipe', 'inherit'],
  encoding: 'utf8',
  maxBuffer: 64 << 20,
})
if (cargo.status !== 0) {
  console.error(`build-launcher: \`cargo ${args.join(' ')}\` failed (${cargo.error ?? `exit ${cargo.status}`})`)
  process.exit(1)
}
const built = cargo.stdout
  .split('\n')
  .filter((line) => line.startsWith('{'))
  .map((line) => JSON.parse(line))
  .find((message) => message.reason === 'compiler-artifact' && message.target.name === LAUNCHER && message.executable)
  ?.executable
if (!built) {
  console.error(`build-launcher: cargo built no ${LAUNCHER} executable`)
  process.exit(1)
}
// Copied beside, then renamed over: a launcher still running keeps its (replaced) file.
const dest = join(root, LAUNCHER)
const partial = `${dest}.${process.pid}`
copyFileSync(built, partial)
chmodSync(partial, 0o755)
renameSync(partial, dest)
