// Installs the demo's own dependencies (express, sharp) into examples/image-service/node_modules
// when they are missing or differ from its package-lock.json. Quick and silent when they are
// already there, so `npm run demo` and the test suite call it every time.
//
//   node examples/image-service/ensure-deps.mjs      (what the root `npm run demo` does first)
//   import { ensureDemoDeps } from '.../ensure-deps.mjs'
//
// tethered itself is not installed here: the demo loads it from the repository root by a
// relative path (see README.md, "The image-service demo", for why).
import { readFileSync, realpathSync } from 'node:fs'
import { spawnSync } from 'node:child_process'
import { join, dirname } from 'node:path'
import { fileURLToPath } from 'node:url'

export const DEMO_DIR = dirname(fileURLToPath(import.meta.url))

function readJson(path) {
  try {
    return JSON.parse(readFileSync(path, 'utf8'))
  } catch {
    return null
  }
}

/** Names of the dependencies whose installed version is missing or not the locked one. */
export function missingDemoDeps() {
  const manifest = readJson(join(DEMO_DIR, 'package.json'))
  const lock = readJson(join(DEMO_DIR, 'package-lock.json'))
  return Object.keys(manifest.dependencies).filter((name) => {
    const installed = readJson(join(DEMO_DIR, 'node_modules', name, 'package.json'))
    if (!installed) return true
    const locked = lock?.packages?.[`node_modules/${name}`]?.version
    return locked !== undefined && installed.version !== locked
  })
}

/**
 * Runs `npm install` in the demo folder when a dependency is missing or outdated. npm's output
 * goes to stderr (stdout may be a test runner's protocol). Throws when the install fails.
 */
export function ensureDemoDeps({ quiet = false } = {}) {
  const missing = missingDemoDeps()
  if (missing.length === 0) return false
  if (!quiet) process.stderr.write(`image-service demo: installing its dependencies (${missing.join(', ')}) with npm ...\n`)
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm'
  const result = spawnSync(npm, ['install', '--no-audit', '--no-fund', '--loglevel=error'], {
    cwd: DEMO_DIR,
    stdio: ['ignore', 2, 2],
    timeout: 600_000,
  })
  if (result.error) throw new Error(`image-service demo: could not run npm install: ${result.error.message}`)
  if (result.status !== 0) throw new Error(`image-service demo: npm install in ${DEMO_DIR} failed (exit ${result.status ?? result.signal})`)
  const still = missingDemoDeps()
  if (still.length > 0) throw new Error(`image-service demo: npm install finished but ${still.join(', ')} is still missing`)
  return true
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  try {
    ensureDemoDeps()
  } catch (error) {
    console.error(error.message)
    process.exit(1)
  }
}
