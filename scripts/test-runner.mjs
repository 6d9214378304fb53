// `node --test --test-concurrency=2 <files>` for a Node that lacks the flag (18.17 to 20.9): the
// same files through `node:test`'s run() with the same concurrency, reported by the spec
// reporter, exit code 1 when any test failed. Without it such a Node runs one file at a time on
// a 2-core machine, and the matrix takes twice as long. Used by scripts/node-matrix.mjs.
import { run } from 'node:test'
import { spec } from 'node:test/reporters'

const CONCURRENCY = 2

let failed = false
const tests = run({ files: process.argv.slice(2), concurrency: CONCURRENCY })
tests.on('test:fail', () => {
  failed = true
})
tests.on('end', () => {
  process.exitCode = failed ? 1 : 0
})
// `spec` is a reporter class on some Node versions and a ready transform on others.
tests.compose(typeof spec === 'function' && spec.prototype ? new spec() : spec).pipe(process.stdout)
