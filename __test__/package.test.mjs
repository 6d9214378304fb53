// The package installs like a real one: `npm pack` holds exactly what a user needs, and that
// tarball, installed with `npm install <tarball>` into a fresh Express app, works from
// `require`, from `import`, under `tsc --strict`, and inside an Express route.
// Needs the built addon (`npm install` builds it) and the npm registry (express, typescript,
// @types/node are installed into the temporary app).
import { describe, it, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, statSync, writeFileSync, copyFileSync, readFileSync, realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'
import { tempDir, killGroup, waitFor, sameProcessAlive } from './helpers.mjs'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const NODE_FILE = 'tethered.linux-x64-gnu.node'
const LAUNCHER = 'tethered-launcher'

/** What a user needs, and nothing else. */
const EXPECTED_FILES = [
  'README.md',
  'package.json',
  'index.js',
  'index.mjs',
  'index.d.ts',
  'binding.js',
  'lib/child.js',
  'lib/child.d.ts',
  'lib/cwd.js',
  'lib/supervisor.js',
  'lib/pool.js',
  'lib/deliver.js',
  'lib/serialization.js',
  'worker.js',
  'worker.d.ts',
  NODE_FILE,
  LAUNCHER,
].sort()
const FORBIDDEN_PREFIXES = ['src/', '__test__/', 'bench/', 'examples/', 'target/', 'node_modules/', 'scripts/', 'npm/']

// Everything this file starts runs in its own process group (detached), so a timeout or a
// failure can kill the whole tree by its id.
const liveGroups = new Set()
const dirs = []

/** npm's lifecycle variables (set when this runs under `npm test`) would point npm at the repo. */
function cleanEnv() {
  const env = { ...process.env }
  for (const key of Object.keys(env)) {
    if (/^npm_(package_|lifecycle_|config_local_prefix$)/i.test(key) || key === 'INIT_CWD') delete env[key]
  }
  return env
}

/** Runs a command to its end; resolves { code, signal, stdout, stderr, timedOut } (never rejects). */
function run(command, args, { cwd, timeout = 60_000 } = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd, env: cleanEnv(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let timedOut = false
    child.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
    if (child.pid) liveGroups.add(child.pid)
    const timer = setTimeout(() => {
      timedOut = true
      killGroup(child.pid)
    }, timeout)
    const finish = (code, signal, error) => {
      clearTimeout(timer)
      // Whatever the command left behind in its group goes with it.
      killGroup(child.pid)
      liveGroups.delete(child.pid)
      if (error) stderr += `\n${error.stack}`
      resolve({ code, signal, stdout, stderr, timedOut })
    }
    child.on('error', (error) => finish(null, null, error))
    child.on('close', (code, signal) => finish(code, signal))
  })
}

function describeRun(what, result) {
  const how = result.timedOut ? 'timed out' : `exited with code ${result.code}, signal ${result.signal}`
  return `${what} ${how}\n--- stdout ---\n${result.stdout}\n--- stderr ---\n${result.stderr}`
}

/** Runs `node [flags] <script>` in the app and returns its last stdout line parsed as JSON. */
async function runNodeScript(cwd, script, flags = []) {
  const result = await run(process.execPath, [...flags, script], { cwd, timeout: 60_000 })
  assert.ok(result.code === 0 && !result.timedOut, describeRun(`node ${[...flags, script].join(' ')}`, result))
  const lines = result.stdout.trim().split('\n')
  return JSON.parse(lines[lines.length - 1])
}

// Node before 18.19 and 20.6 has `import.meta.resolve` only behind a flag, and returns a Promise
// from it (hence the `await` in esm.mjs).
const IMPORT_META_RESOLVE_FLAGS = typeof import.meta.resolve === 'function' ? [] : ['--experimental-import-meta-resolve']

after(() => {
  for (const pgid of liveGroups) killGroup(pgid)
  liveGroups.clear()
  for (const dir of dirs) dir.remove()
})

describe('the npm package', { timeout: 240_000 }, () => {
  let tarball
  let packed

  before(async () => {
    for (const name of [NODE_FILE, LAUNCHER]) {
      assert.ok(
        existsSync(join(root, name)),
        `${name} is missing from ${root}: build the addon first (\`npm install\` builds it in its prepare step, or \`npm run build\`)`,
      )
    }
    const dest = tempDir()
    dirs.push(dest)
    const result = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dest.dir], {
      cwd: root,
      timeout: 60_000,
    })
    assert.equal(result.code, 0, describeRun('npm pack', result))
    ;[packed] = JSON.parse(result.stdout)
    tarball = join(dest.dir, packed.filename)
    assert.ok(existsSync(tarball), `npm pack reported ${packed.filename} but ${tarball} does not exist`)
  })

  it('npm pack holds exactly what a user needs', () => {
    const paths = packed.files.map((file) => file.path).sort()
    const forbidden = paths.filter((path) => FORBIDDEN_PREFIXES.some((prefix) => path.startsWith(prefix)))
    assert.deepEqual(forbidden, [], 'development files leaked into the tarball')
    const missing = EXPECTED_FILES.filter((path) => !paths.includes(path))
    const extra = paths.filter((path) => !EXPECTED_FILES.includes(path))
    assert.deepEqual({ missing, extra }, { missing: [], extra: [] }, 'the tarball holds other files than a user needs')

    const launcher = packed.files.find((file) => file.path === LAUNCHER)
    assert.ok((launcher.mode & 0o111) === 0o111, `${LAUNCHER} is packed with mode ${launcher.mode.toString(8)}, not executable`)
    const addon = packed.files.find((file) => file.path === NODE_FILE)
    assert.equal(addon.size, statSync(join(root, NODE_FILE)).size, `the packed ${NODE_FILE} is not the built one`)

    // Every path package.json points users at is in the tarball.
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
    const targets = [pkg.main, pkg.types]
    const collect = (value) => {
      if (typeof value === 'string') targets.push(value)
      else if (value && typeof value === 'object') Object.values(value).forEach(collect)
    }
    collect(pkg.exports)
    for (const target of targets) {
      assert.ok(paths.includes(target.replace(/^\.\//, '')), `package.json points at ${target}, which is not packed`)
    }
  })

  describe('installed from the tarball into a fresh Express app', () => {
    let app

    before(
      async () => {
        const dir = tempDir()
        dirs.push(dir)
        app = dir.dir
        writeFileSync(
          join(app, 'package.json'),
          JSON.stringify(
            {
              name: 'tethered-package-test-app',
              version: '1.0.0',
              private: true,
              dependencies: { express: '^5.0.0', tethered: `file:${tarball}` },
              devDependencies: { typescript: '^5.0.0', '@types/node': '^20.0.0' },
            },
            null,
            2,
          ),
        )
        const result = await run(
          'npm',
          ['install', '--no-audit', '--no-fund', tarball, 'express@5', 'typescript@5', '@types/node@20'],
          { cwd: app, timeout: 180_000 },
        )
        if (result.code !== 0) {
          const output = result.stdout + result.stderr
          if (result.timedOut) {
            assert.fail(`npm install did not finish within 180 s; is the npm registry reachable?\n${describeRun('npm install', result)}`)
          }
          if (/ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|network|FETCH_ERROR/i.test(output)) {
            assert.fail(`the npm registry is unreachable, so the package test cannot install express/typescript:\n${describeRun('npm install', result)}`)
          }
          assert.fail(describeRun('npm install', result))
        }
        const installed = join(app, 'node_modules', 'tethered')
        for (const file of EXPECTED_FILES) {
          assert.ok(existsSync(join(installed, file)), `npm install did not put ${file} in node_modules/tethered`)
        }
        // An installed copy, not a link back to the repository.
        assert.equal(realpathSync(installed), installed, 'node_modules/tethered is a link, not an installed copy')
      },
      { timeout: 200_000 },
    )

    it('works from require(): spawnCollect, runProcess, spawn and a Supervisor with a tethered/worker', async () => {
      writeFileSync(
        join(app, 'worker.cjs'),
        `const { onRequest } = require('tethered/worker')
onRequest(async (body) => ({ doubled: body.n * 2, pid: process.pid }))
`,
      )
      writeFileSync(
        join(app, 'cjs.cjs'),
        `'use strict'
const { readFileSync, readdirSync, readlinkSync } = require('node:fs')
const path = require('node:path')
const tethered = require('tethered')
const { spawnCollect, runProcess, spawn, Supervisor } = tethered

function starttime(pid) {
  const text = readFileSync('/proc/' + pid + '/stat', 'utf8')
  return Number(text.slice(text.lastIndexOf(')') + 2).split(' ')[19])
}
function launchers() {
  const found = []
  for (const name of readdirSync('/proc').filter((n) => /^\\d+$/.test(n))) {
    try {
      const stat = readFileSync('/proc/' + name + '/stat', 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      if (ppid !== process.pid) continue
      const exe = readlinkSync('/proc/' + name + '/exe')
      if (path.basename(exe) === 'tethered-launcher') found.push({ pid: Number(name), exe, starttime: starttime(name) })
    } catch {}
  }
  return found
}

async function main() {
  const collected = await spawnCollect('echo', ['from-cjs'])
  const failed = await runProcess('sh', ['-c', 'echo oops >&2; exit 3'])
  const child = spawn('cat', [], { stdio: ['pipe', 'pipe', 'pipe'] })
  let catOut = ''
  child.stdout.setEncoding('utf8').on('data', (chunk) => (catOut += chunk))
  child.stdin.end('through cat')
  const catExit = await child.exited
  await new Promise((resolve) => (child.stdout.readableEnded ? resolve() : child.stdout.on('end', resolve)))

  const sup = new Supervisor({ modulePath: path.join(__dirname, 'worker.cjs'), maxRestarts: 0 })
  await sup.start()
  const workerPid = sup.pid
  const workerStart = starttime(workerPid)
  const answer = await sup.request({ n: 21 }, { timeout: 10000 })
  await sup.stop()
  let workerGone = true
  try { workerGone = starttime(workerPid) !== workerStart || /^\\S+ \\(.*\\) [ZX]/.test(readFileSync('/proc/' + workerPid + '/stat', 'utf8')) } catch {}

  console.log(JSON.stringify({
    resolved: require.resolve('tethered'),
    workerResolved: require.resolve('tethered/worker'),
    addon: Object.keys(require.cache).filter((k) => k.endsWith('.node')),
    collected: { stdout: collected.stdout, exitCode: collected.exitCode },
    failed: { ok: failed.ok, code: failed.code, stderr: failed.stderr },
    cat: { out: catOut, exitCode: catExit.exitCode },
    answer,
    workerPid,
    workerGone,
    state: sup.state,
    launchers: launchers(),
  }))
}
main().catch((error) => { console.error(error); process.exit(1) })
`,
      )
      const out = await runNodeScript(app, 'cjs.cjs')
      const pkgDir = join(app, 'node_modules', 'tethered')
      assert.equal(out.resolved, join(pkgDir, 'index.js'))
      assert.equal(out.workerResolved, join(pkgDir, 'worker.js'))
      assert.deepEqual(out.addon, [join(pkgDir, NODE_FILE)], 'the addon was not loaded from the installed package')
      assert.deepEqual(out.collected, { stdout: 'from-cjs\n', exitCode: 0 })
      assert.deepEqual(out.failed, { ok: false, code: 3, stderr: 'oops\n' })
      assert.deepEqual(out.cat, { out: 'through cat', exitCode: 0 })
      assert.equal(out.answer.doubled, 42)
      assert.equal(out.answer.pid, out.workerPid)
      assert.equal(out.workerGone, true, 'the worker outlived stop()')
      assert.equal(out.state, 'stopped')
      assert.ok(out.launchers.length >= 1, 'no tethered-launcher ran under the script')
      for (const launcher of out.launchers) {
        assert.equal(launcher.exe, join(pkgDir, LAUNCHER), 'the launcher did not come from the installed package')
        // The launcher goes with its Node process.
        await waitFor(() => !sameProcessAlive(launcher), { timeout: 10_000, what: `launcher ${launcher.pid} to exit` })
      }
    })

    it('works from import', async () => {
      writeFileSync(
        join(app, 'esm.mjs'),
        `import { spawnCollect, runProcess, spawn, Supervisor } from 'tethered'
import tethered from 'tethered'

const result = await spawnCollect('echo', ['from-esm'])
console.log(JSON.stringify({
  stdout: result.stdout,
  exitCode: result.exitCode,
  resolved: await import.meta.resolve('tethered'),
  kinds: [typeof spawnCollect, typeof runProcess, typeof spawn, typeof Supervisor],
  sameAsDefault: tethered.spawnCollect === spawnCollect,
}))
`,
      )
      const out = await runNodeScript(app, 'esm.mjs', IMPORT_META_RESOLVE_FLAGS)
      assert.equal(out.stdout, 'from-esm\n')
      assert.equal(out.exitCode, 0)
      assert.equal(fileURLToPath(out.resolved), join(app, 'node_modules', 'tethered', 'index.mjs'))
      assert.deepEqual(out.kinds, ['function', 'function', 'function', 'function'])
      assert.equal(out.sameAsDefault, true)
    })

    it('type-checks under tsc --strict (NodeNext) against the installed types', async () => {
      // The repo's types test program, compiled here against node_modules/tethered: as a
      // CommonJS module (.ts) and as an ES module (.mts).
      copyFileSync(join(root, '__test__', 'types', 'usage.ts'), join(app, 'usage.ts'))
      copyFileSync(join(root, '__test__', 'types', 'usage.ts'), join(app, 'usage.mts'))
      writeFileSync(
        join(app, 'tsconfig.json'),
        JSON.stringify(
          {
            compilerOptions: {
              strict: true,
              noEmit: true,
              target: 'ES2022',
              module: 'NodeNext',
              moduleResolution: 'NodeNext',
              types: ['node'],
              skipLibCheck: false,
            },
            files: ['usage.ts', 'usage.mts'],
          },
          null,
          2,
        ),
      )
      const tsc = join(app, 'node_modules', '.bin', 'tsc')
      const result = await run(tsc, ['--strict', '--noEmit', '-p', 'tsconfig.json', '--traceResolution'], {
        cwd: app,
        timeout: 120_000,
      })
      assert.equal(result.code, 0, describeRun('tsc', { ...result, stdout: result.stdout.split('\n').filter((l) => /error/.test(l)).join('\n') }))
      // The types came from the installed package, not from the repository.
      const resolvedTo = [...result.stdout.matchAll(/Module name 'tethered' was successfully resolved to '([^']+)'/g)].map((m) => m[1])
      assert.ok(resolvedTo.length >= 2, `tsc did not report resolving 'tethered' twice:\n${resolvedTo}`)
      for (const file of resolvedTo) assert.equal(file, join(app, 'node_modules', 'tethered', 'index.d.ts'))
    })

    it('serves an Express route that calls runProcess', async () => {
      writeFileSync(
        join(app, 'server.mjs'),
        `import express from 'express'
import { runProcess } from 'tethered'

const app = express()
app.get('/hi', async (req, res) => {
  const result = await runProcess('echo', ['hi'])
  if (!result.ok) return res.status(500).json(result)
  res.type('text/plain').send(result.stdout)
})
const server = app.listen(0, '127.0.0.1', (error) => {
  if (error) throw error
  console.log(JSON.stringify({ port: server.address().port }))
})
process.on('SIGTERM', () => {
  server.close(() => process.exit(0))
  server.closeAllConnections()
})
`,
      )
      const server = spawn(process.execPath, ['server.mjs'], {
        cwd: app,
        env: cleanEnv(),
        detached: true,
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      liveGroups.add(server.pid)
      let stdout = ''
      let stderr = ''
      server.stdout.setEncoding('utf8').on('data', (chunk) => (stdout += chunk))
      server.stderr.setEncoding('utf8').on('data', (chunk) => (stderr += chunk))
      const exited = new Promise((resolve) => server.on('close', (code, signal) => resolve({ code, signal })))
      try {
        const port = await Promise.race([
          waitFor(() => /"port":(\d+)/.exec(stdout)?.[1], { timeout: 30_000, what: 'the Express app to listen' }),
          exited.then(({ code, signal }) => {
            throw new Error(`the Express app exited (code ${code}, signal ${signal}) before listening:\n${stderr}`)
          }),
        ])
        const response = await fetch(`http://127.0.0.1:${port}/hi`, { signal: AbortSignal.timeout(20_000) })
        const body = await response.text()
        assert.equal(response.status, 200, body)
        assert.equal(body, 'hi\n')

        server.kill('SIGTERM')
        let timer
        const end = await Promise.race([
          exited,
          new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), 15_000))),
        ])
        clearTimeout(timer)
        assert.deepEqual(end, { code: 0, signal: null }, `the Express app did not close cleanly:\n${stderr}`)
      } finally {
        killGroup(server.pid)
        liveGroups.delete(server.pid)
      }
    })
  })
})
