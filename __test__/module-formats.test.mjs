// The package loads through its name both ways — ESM `import` and CJS `require` (package
// self-reference through "exports") — and both give the same functions.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { dirname } from 'node:path'
import * as esm from 'tethered'
import esmDefault, { spawnCollect, runProcess, spawn } from 'tethered'

const require = createRequire(import.meta.url)
const packageRoot = dirname(dirname(fileURLToPath(import.meta.url)))

test('ESM named exports are functions', () => {
  assert.equal(typeof spawnCollect, 'function')
  assert.equal(typeof runProcess, 'function')
  assert.equal(typeof spawn, 'function')
  assert.equal(esm.spawnCollect, spawnCollect)
})

test('require("tethered") gives the very same functions as import', () => {
  const cjs = require('tethered')
  assert.equal(typeof cjs.spawnCollect, 'function')
  assert.equal(cjs.spawnCollect, spawnCollect)
  assert.equal(cjs.runProcess, runProcess)
  assert.equal(cjs.spawn, spawn)
  assert.equal(esmDefault, cjs, 'the default export is the CommonJS module')
  assert.equal(require.resolve('tethered'), require.resolve('../index.js'))
})

test('a separate CommonJS process can require("tethered") and run a command', async () => {
  const { spawnCollect: run } = require('tethered')
  const script = `
    const t = require('tethered');
    t.spawnCollect('echo', ['from-cjs']).then((r) => process.stdout.write(JSON.stringify({ keys: Object.keys(t).sort(), out: r.stdout })));
  `
  const r = await run(process.execPath, ['-e', script], { cwd: packageRoot })
  assert.equal(r.exitCode, 0, r.stderr)
  const parsed = JSON.parse(r.stdout)
  assert.deepEqual(parsed.keys, ['Pool', 'Supervisor', 'runProcess', 'spawn', 'spawnCollect'])
  assert.equal(parsed.out, 'from-cjs\n')
})

test('a separate ESM process can import "tethered" and run a command', async () => {
  const script = `
    import { spawnCollect, runProcess } from 'tethered';
    import { createRequire } from 'node:module';
    const cjs = createRequire(process.cwd() + '/')('tethered');
    const r = await runProcess('echo', ['from-esm']);
    process.stdout.write(JSON.stringify({ same: cjs.spawnCollect === spawnCollect && cjs.runProcess === runProcess, out: r.stdout, ok: r.ok }));
  `
  const r = await spawnCollect(process.execPath, ['--input-type=module', '-e', script], { cwd: packageRoot })
  assert.equal(r.exitCode, 0, r.stderr)
  assert.deepEqual(JSON.parse(r.stdout), { same: true, out: 'from-esm\n', ok: true })
})
