// The published types: a TypeScript file using every export, option and event compiles under
// `tsc --strict`, and every option the README's reference tables name exists in index.d.ts.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { dirname, join } from 'node:path'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')

test('a strict TypeScript program using the whole API compiles', { timeout: 120_000 }, () => {
  const tsc = join(root, 'node_modules', '.bin', 'tsc')
  try {
    execFileSync(tsc, ['-p', join(root, '__test__', 'types', 'tsconfig.json')], { encoding: 'utf8' })
  } catch (error) {
    assert.fail(`tsc failed:\n${error.stdout}${error.stderr}`)
  }
})

test('every option in the README tables is declared, with @default, in the types', () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8')
  const types = readFileSync(join(root, 'index.d.ts'), 'utf8') + readFileSync(join(root, 'lib', 'child.d.ts'), 'utf8')
  const tableOptions = new Set()
  for (const section of readme.split(/\n### /).filter((s) => /^(Options|`new Supervisor)/.test(s))) {
    for (const match of section.matchAll(/^\| `(\w+)`(?: \/ `(\w+)`)? \|/gm)) {
      tableOptions.add(match[1])
      if (match[2]) tableOptions.add(match[2])
    }
  }
  assert.ok(tableOptions.size >= 20, `found only ${[...tableOptions]}`)
  for (const name of tableOptions) {
    const declared = new RegExp(`@default[^*]*\\*/\\s*${name}\\?:|\\s${name}\\?:`, 's')
    assert.match(types, declared, `option ${name} is in the README but not in index.d.ts`)
    const documented = new RegExp(`@default[^/]*?\\*/\\s*${name}\\?:`, 's')
    if (!['modulePath', 'command', 'signal'].includes(name)) {
      assert.match(types, documented, `option ${name} has no @default in index.d.ts`)
    }
  }
})
