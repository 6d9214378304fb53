// Copies the launcher binary that `napi build` compiled (cargo builds every target of the
// crate, under target/<triple>/<profile>/) next to the .node file, where the addon looks for
// it at run time.
import { copyFileSync, chmodSync, existsSync, readdirSync, statSync } from 'node:fs'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const profile = process.argv[2] === 'release' ? 'release' : 'debug'
const targetDir = process.env.CARGO_TARGET_DIR ?? join(root, 'target')
const candidates = [join(targetDir, profile, 'tethered-launcher')]
for (const entry of existsSync(targetDir) ? readdirSync(targetDir) : []) {
  candidates.push(join(targetDir, entry, profile, 'tethered-launcher'))
}
const built = candidates
  .filter((path) => existsSync(path))
  .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]
if (!built) {
  console.error(`place-launcher: no ${profile} tethered-launcher under ${targetDir}; did \`napi build\` run?`)
  process.exit(1)
}
const dest = join(root, 'tethered-launcher')
copyFileSync(built, dest)
chmodSync(dest, 0o755)
