// Property tests (fast-check) over the arguments and options of every JS entry point:
// spawnCollect, runProcess, spawn and its Child (kill, stdin write/end), Supervisor (constructor,
// start, send, request, stop) and Pool (constructor, request, close).
//
// The property is the contract of README "Error codes": whatever it is given, a call either
// works or fails with a typed error — a TypeError/RangeError/Error whose `code` is documented —
// and never throws something untyped, aborts Node or hangs. Two kinds of input: arbitrary JS
// values in place of any argument, and near-valid options (a valid set with a few options
// replaced by a wrong type, NaN, a negative or huge number, a NUL byte, a getter that throws...).
// An exception thrown by the caller's own getter or proxy trap is the one case passed through
// untouched, as Node's own functions do; it must arrive as the very object thrown.
//
// Real processes run, so every case must also end all it started: calls are awaited, children
// killed, supervisors stopped, pools closed, and each test checks that nothing is left — no
// process carrying this file's marker, no child of the launcher, no zombie child of ours.
// Valid timings run as given (up to Number.MAX_SAFE_INTEGER ms), except those a case would
// have to wait out — stopTimeout, a drain's request timeouts, the sleeper's own — which are
// clamped to a second: a valid wait of a day is a wait, not a bug. The constructor properties,
// which start nothing, try every value unclamped.
//
// The seed is fixed, so a failure is reproducible: fast-check prints the seed, the path and the
// smallest counterexample it found. TETHERED_PROPERTY_SEED=<n> explores other inputs.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { inspect, types } from 'node:util'
import fc from 'fast-check'
import { spawnCollect, runProcess, spawn, Supervisor, Pool } from 'tethered'
import {
  childrenOf, fixture, isLauncher, killGroup, killMarked, launchersOf, processesWithMarker, settlesWithin,
  sleep, uniqueMarker, waitFor, zombieChildren,
} from './helpers.mjs'

const SEED = Number(process.env.TETHERED_PROPERTY_SEED) || 0x7e7e_2024

/** Runs `property` from the fixed seed; a failure reports seed, path and counterexample. */
function check(property, numRuns) {
  return fc.assert(property, { seed: SEED, numRuns, includeErrorInReport: true })
}

// Every process a case starts carries this in its argv, so a survivor can be found.
const MARK = uniqueMarker('property')
const SLEEPER = { command: '/bin/sh', args: ['-c', 'sleep 30', MARK] }

// Cases per property, chosen so that the file takes well under a minute on a busy 2-core machine:
// the cases that spawn Node workers cost the most.
const COLLECT_RUNS = 400
const STREAM_RUNS = 200
const CONSTRUCTOR_RUNS = 500
const SUPERVISOR_RUNS = 50
const POOL_RUNS = 50

/** A call that has not settled by then is a hang. */
const HANG_MS = 15_000
/** Timings a case would wait out are clamped to this many ms. */
const TIMING_CAP = 1_000

// ---------------------------------------------------------------------------------------------
// What a failure may be.

const ARGUMENT_ERRORS = { ERR_INVALID_ARG_TYPE: TypeError, ERR_INVALID_ARG_VALUE: TypeError, ERR_OUT_OF_RANGE: RangeError }
/** Node's `url.fileURLToPath` errors, which a `cwd` given as a URL gets (as Node's spawn does). */
const URL_ERRORS = ['ERR_INVALID_URL_SCHEME', 'ERR_INVALID_FILE_URL_HOST', 'ERR_INVALID_FILE_URL_PATH']
/** An errno name: a command that could not start, or a failed pipe operation. */
const ERRNO = /^E[A-Z0-9]+$/

/** What the test's throwing getters and proxy traps throw: passed through untouched, or a bug. */
const THROWN_BY_CALLER = new Error('thrown by a getter of the test')
const throwFromCaller = () => {
  throw THROWN_BY_CALLER
}

/**
 * Fails the property unless `error` is one that `allowed` (codes; 'errno' for spawn errors) or
 * the argument contract permits (a value the serialization cannot carry is one:
 * ERR_INVALID_ARG_VALUE).
 */
function assertTypedError(error, allowed, what) {
  if (error === THROWN_BY_CALLER) return
  const code = error?.code
  if (Object.hasOwn(ARGUMENT_ERRORS, code)) {
    assert.ok(error instanceof ARGUMENT_ERRORS[code], `${what}: ${code} is a ${error?.constructor?.name}`)
    assert.match(error.message, /^The (value of )?"[^"]+"/, `${what}: the message does not name the argument`)
    return
  }
  assert.ok(error instanceof Error, `${what}: rejected with a non-Error ${inspect(error)}`)
  if (allowed.includes(code)) return
  if (allowed.includes('errno') && typeof code === 'string' && ERRNO.test(code) && String(error.syscall).startsWith('spawn')) return
  assert.fail(`${what}: undocumented error ${error.name} ${inspect(code)}: ${error.message}`)
}

/** `{ ok, value }` or `{ ok: false, error }` of `promise`; a promise that does not settle fails. */
async function settle(promise, what, ms = HANG_MS) {
  try {
    return { ok: true, value: await settlesWithin(promise, ms, what) }
  } catch (error) {
    if (error instanceof Error && error.message === `${what} did not settle within ${ms} ms`) {
      assert.fail(`hang: ${error.message}`)
    }
    return { ok: false, error }
  }
}

/** Like `settle` for a function that may also throw synchronously (which a Promise API must not). */
async function settleCall(call, what, ms) {
  let promise
  try {
    promise = call()
  } catch (error) {
    assert.fail(`${what} threw synchronously: ${inspect(error)}`)
  }
  assert.ok(promise instanceof Promise, `${what} returned no promise`)
  return settle(promise, what, ms)
}

// ---------------------------------------------------------------------------------------------
// Nothing left behind.

/** Live processes a case left: marked ones, children of the launcher, our children but it. */
function survivors() {
  const launcherChildren = launchersOf().flatMap((launcher) => childrenOf(launcher))
  const ownChildren = childrenOf(process.pid).filter((pid) => !isLauncher(pid))
  return [...new Set([...processesWithMarker(MARK), ...launcherChildren, ...ownChildren])]
}

/** Fails (after killing them) when processes started by the cases are still there. */
async function assertNothingLeft(what) {
  try {
    await waitFor(() => survivors().length === 0 && zombieChildren().length === 0, { timeout: 5_000, what })
  } catch {
    const left = survivors()
    const zombies = zombieChildren()
    killMarked(MARK)
    for (const pid of left) killGroup(pid)
    assert.fail(`${what}: left running ${inspect(left)}, zombies ${inspect(zombies)}`)
  }
}

// ---------------------------------------------------------------------------------------------
// Arbitrary values.

/** An object whose `key` getter throws (enumerable, so reading the options reaches it). */
function getterThatThrows(key) {
  const object = { [fc.toStringMethod]: () => `{ get ${key}() { throw } }` }
  Object.defineProperty(object, key, { get: throwFromCaller, enumerable: true })
  return object
}

/**
 * A proxy whose traps throw for every property name. Symbols are left alone, so that
 * fast-check can ask it for its description (and its clone method: none).
 */
function proxyThatThrows() {
  const describe = () => 'Proxy(every trap throws)'
  return new Proxy({}, {
    get: (_, key) => (typeof key === 'symbol' ? (key === fc.toStringMethod ? describe : undefined) : throwFromCaller()),
    has: (_, key) => (typeof key === 'symbol' ? key === fc.toStringMethod : throwFromCaller()),
    ownKeys: throwFromCaller,
    getOwnPropertyDescriptor: throwFromCaller,
    getPrototypeOf: throwFromCaller,
    set: throwFromCaller,
  })
}

/** An AbortSignal, made fresh for each case: none yet, already aborted, soon, or later. */
const abortSignal = fc.constantFrom('pending', 'pending', 'pending', 'aborted', 'soon', 'later').map((when) => {
  if (when === 'aborted') return AbortSignal.abort(new Error('aborted by the test'))
  if (when === 'soon') return AbortSignal.timeout(5)
  if (when === 'later') return AbortSignal.timeout(200)
  return new AbortController().signal
})

const awkwardNumber = fc.constantFrom(
  NaN, Infinity, -Infinity, -1, -0, 0, 0.5, 1.5, -(2 ** 31), 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 64,
  Number.MAX_VALUE, Number.MIN_VALUE,
)
/** Strings that are harmless wherever they land, a command line or a shell's path included. */
const awkwardString = fc.constantFrom(
  '', ' ', '\0', 'a\0b', 'é€😀', '\ud800', 'SIGKILL', 'SIGNOPE', 'sigterm', 'utf8', 'buffer', 'latin1',
  'pipe', 'ignore', 'json', 'advanced', 'always', 'never', '10', 'true', '/', '/nonexistent-tethered',
  'tethered-no-such-command', 'x'.repeat(128 * 1024 + 1), // one byte past the kernel's limit for an argument
)
const awkwardObject = fc.constantFrom(
  () => Symbol('s'), () => 10n, () => function named() {}, () => () => {}, () => [], () => [1], () => ['a\0'],
  () => [undefined], () => ({}), () => Object.create(null), () => ({ A: 1 }), () => ({ 'A=B': 'x' }),
  () => ({ '': 'x' }), () => ({ 'K\0': 'v' }), () => Buffer.from('buf'), () => new Uint8Array([1, 2]),
  () => new Float64Array(1), () => new ArrayBuffer(4), () => new DataView(new ArrayBuffer(2)),
  () => new Date(NaN), () => new Map([['a', 1]]), () => new Set([1]), () => /re/, () => new Error('e'),
  () => new URL('file:///tmp'), () => new URL('http://example.invalid/'), () => new URL('file:///a%2Fb'),
  () => new AbortController(), () => AbortSignal.abort(), () => Promise.resolve(1), () => new String('s'),
  () => new Number(1), () => ({ valueOf: throwFromCaller, toString: throwFromCaller }),
  () => getterThatThrows('a'), proxyThatThrows,
).map((make) => make())

/** Values that are no free text: safe where a string would run as a program or a shell line. */
const inertValue = fc.oneof(
  fc.constantFrom(undefined, null, true, false),
  awkwardNumber,
  fc.integer(),
  awkwardString,
  awkwardObject,
)

/** Anything at all, random text included. */
const anyValue = fc.oneof(
  { weight: 3, arbitrary: inertValue },
  { weight: 2, arbitrary: fc.anything({
    maxDepth: 2, maxKeys: 4, withBigInt: true, withBoxedValues: true, withDate: true, withMap: true,
    withSet: true, withNullPrototype: true, withTypedArray: true, withSparseArray: true, stringUnit: 'binary',
  }) },
  { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 12 }) },
  { weight: 1, arbitrary: fc.double() },
)

/** `arbitrary`'s value one time in `n`, null otherwise. */
function oneTimeIn(n, arbitrary) {
  return fc.oneof({ weight: n - 1, arbitrary: fc.constant(null) }, { weight: 1, arbitrary })
}

/**
 * Near-valid options: a valid set (from `valid`, a record of the documented options), then up to
 * `maxChanges` options (`names`, which include an unknown one) given another value, maybe one of them
 * turned into a getter that throws, and now and then the whole object replaced by anything.
 * Options in `inert` (those run as a program) never get free text.
 */
function nearValidOptions(valid, names, { inert = [], maxChanges = 3 } = {}) {
  const change = fc.tuple(fc.constantFrom(...names), anyValue, inertValue)
    .map(([name, value, inertOne]) => [name, inert.includes(name) ? inertOne : value])
  return fc.record({
    base: valid,
    changes: fc.array(change, { maxLength: maxChanges }),
    getter: oneTimeIn(10, fc.constantFrom(...names)),
    whole: oneTimeIn(12, anyValue),
  }).map(({ base, changes, getter, whole }) => {
    if (whole !== null) return { options: whole, own: false }
    const options = { ...base }
    for (const [name, value] of changes) options[name] = value
    if (getter !== null) {
      // fast-check's report of a counterexample must not run into the getter.
      const { [getter]: _, ...rest } = options
      const shown = `${fc.stringify(rest).slice(0, -1)}, get ${getter}() { throw } }`
      Object.defineProperty(options, fc.toStringMethod, { value: () => shown })
      Object.defineProperty(options, getter, { get: throwFromCaller, enumerable: true, configurable: true })
    }
    return { options, own: true }
  })
}

/** Sets `name`, a throwing getter included. */
function setOption(options, name, value) {
  Object.defineProperty(options, name, { value, enumerable: true, writable: true, configurable: true })
}

/**
 * Timings a case would wait out: long values of `names` (Infinity included), left out ones
 * (their defaults are long) and, for `zeroMeansNone`, 0 become TIMING_CAP.
 */
function clampTimings(options, names, zeroMeansNone = []) {
  for (const name of names) {
    const descriptor = Object.getOwnPropertyDescriptor(options, name)
    if (descriptor !== undefined && !('value' in descriptor)) continue // a throwing getter stays
    const value = options[name]
    const tooLong = typeof value === 'number' && value > TIMING_CAP
    if (value === undefined || tooLong || (value === 0 && zeroMeansNone.includes(name))) {
      options[name] = TIMING_CAP
    }
  }
  return options
}

// ---------------------------------------------------------------------------------------------
// The valid options, as documented.

/** A valid number of ms: mostly short, sometimes as long as an integer option may be. */
function milliseconds(min, max) {
  return fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min, max }) },
    { weight: 1, arbitrary: fc.constantFrom(2 ** 31, Number.MAX_SAFE_INTEGER) },
  )
}

const limits = fc.record({
  memory: fc.constantFrom(2 ** 30, 2 ** 40),
  cpuTime: fc.integer({ min: 1, max: 10 }),
  openFiles: fc.integer({ min: 32, max: 1024 }),
  fileSize: fc.constantFrom(0, 1 << 20),
  coreDump: fc.constant(0),
}, { requiredKeys: [] })

const confinement = {
  limits,
  noNewPrivileges: fc.boolean(),
  uid: fc.constant(process.getuid()),
  gid: fc.constant(process.getgid()),
}

const spawnOptions = {
  ...confinement,
  cwd: fc.constantFrom('/', '/tmp', '', '.', '/nonexistent-tethered', new URL('file:///tmp')),
  shell: fc.constantFrom(false, false, false, true, '', '/bin/sh'),
  env: fc.constantFrom({}, { A: '1' }, { HOME: undefined }, { PATH: '/nonexistent-tethered' }),
  extendEnv: fc.boolean(),
  timeout: milliseconds(0, 1_000),
  killSignal: fc.constantFrom('SIGKILL', 'SIGTERM', 'SIGINT', 'SIGCONT', 9, 15),
  forceKillAfter: milliseconds(0, 500),
  signal: abortSignal,
  killOnParentExit: fc.boolean(),
}
const SPAWN_OPTION_NAMES = [...Object.keys(spawnOptions), 'unknownOption']

const collectOptions = fc.record({
  ...spawnOptions,
  maxBuffer: fc.constantFrom(1, 3, 1024, Infinity),
  input: fc.constantFrom('', 'abc', Buffer.from('x\n'), new Uint8Array(2)),
  encoding: fc.constantFrom('utf8', 'buffer'),
}, { requiredKeys: [] })
const COLLECT_OPTION_NAMES = [...SPAWN_OPTION_NAMES, 'maxBuffer', 'input', 'encoding', 'stdio']

const stdioMode = fc.constantFrom('pipe', 'ignore', null, undefined)
const streamOptions = fc.record({
  ...spawnOptions,
  stdio: fc.oneof(fc.constantFrom('pipe', 'ignore'), fc.array(stdioMode, { maxLength: 3 })),
}, { requiredKeys: [] })
const STREAM_OPTION_NAMES = [...SPAWN_OPTION_NAMES, 'stdio']

// The commands a case runs. Random text is never a command: it could name a real program.
const program = fc.oneof(
  { weight: 8, arbitrary: fc.constantFrom(
    { command: 'true', args: [] },
    { command: 'printf', args: ['abc'] },
    { command: 'cat', args: [] },
    SLEEPER,
  ) },
  { weight: 1, arbitrary: fc.record({ command: inertValue, args: fc.constant([]) }) },
  { weight: 1, arbitrary: fc.record({
    command: fc.constant('true'),
    args: fc.oneof(anyValue, fc.array(anyValue, { maxLength: 3 })),
  }) },
)

/**
 * How the arguments are passed: all three, options in the args place (as Node allows),
 * or the command alone.
 */
const argumentForm = fc.constantFrom('full', 'full', 'full', 'options-second', 'command-only')

function callArguments(form, { command, args }, options) {
  if (form === 'options-second') return [command, options]
  if (form === 'command-only') return [command]
  return [command, args, options]
}

/**
 * The options and program of a case. The sleeper is the one program that waits for its
 * timings: where nothing else ends it (`bounded`: the collecting calls), it runs only with
 * options this test built, a short timeout and a clamped forceKillAfter; under spawn() the
 * case's own kill() ends it.
 */
function prepare(run, { bounded }) {
  const { options, own } = run.options
  if (run.program !== SLEEPER || !bounded) return { options, target: run.program }
  if (!own || run.form !== 'full') return { options, target: { command: 'true', args: [] } }
  clampTimings(options, ['forceKillAfter'])
  setOption(options, 'timeout', 300)
  return { options, target: SLEEPER }
}

// ---------------------------------------------------------------------------------------------
// spawnCollect and runProcess.

const COLLECT_FAILURES = ['ERR_MAX_BUFFER', 'ABORT_ERR', 'errno', ...URL_ERRORS]
const RUN_PROCESS_FAILURES = [...URL_ERRORS]
const RUN_PROCESS_RESULT_ERRORS = ['ERR_MAX_BUFFER', 'ERR_TIMEOUT', 'ABORT_ERR']

const collectCase = fc.record({
  runProcess: fc.boolean(),
  program,
  form: argumentForm,
  options: nearValidOptions(collectOptions, COLLECT_OPTION_NAMES, { inert: ['shell'] }),
})

test('spawnCollect and runProcess: any arguments resolve or reject with a typed error, never hang', { timeout: 180_000 }, async () => {
  let resolved = 0
  await check(fc.asyncProperty(collectCase, async (run) => {
    const { options, target } = prepare(run, { bounded: true })
    const name = run.runProcess ? 'runProcess' : 'spawnCollect'
    const fn = run.runProcess ? runProcess : spawnCollect
    const outcome = await settleCall(() => fn(...callArguments(run.form, target, options)), name)
    if (!outcome.ok) {
      assertTypedError(outcome.error, run.runProcess ? RUN_PROCESS_FAILURES : COLLECT_FAILURES, name)
    } else if (run.runProcess) {
      resolved += 1
      const result = outcome.value
      assert.equal(typeof result.ok, 'boolean', `${name} resolved without ok: ${inspect(result)}`)
      if (result.error !== undefined) {
        const code = result.error.code
        assert.ok(RUN_PROCESS_RESULT_ERRORS.includes(code) || ERRNO.test(code), `${name}: result error ${inspect(result.error)}`)
      }
    } else {
      resolved += 1
      assert.ok('exitCode' in outcome.value && 'signal' in outcome.value, `${name} resolved with ${inspect(outcome.value)}`)
    }
  }), COLLECT_RUNS)
  // The mix must really run commands, not only refuse arguments.
  assert.ok(resolved >= COLLECT_RUNS / 5, `only ${resolved} of ${COLLECT_RUNS} calls resolved`)
  await assertNothingLeft('after spawnCollect/runProcess')
})

// ---------------------------------------------------------------------------------------------
// spawn, and what a Child offers: kill, stdin write/end.

/** Node's own stream errors, which a Child's stdin gives as any Writable does. */
const STDIN_FAILURES = [
  'EPIPE', 'ERR_STREAM_WRITE_AFTER_END', 'ERR_STREAM_DESTROYED', 'ERR_STREAM_NULL_VALUES',
  'ERR_INVALID_ARG_TYPE', 'ERR_UNKNOWN_ENCODING', 'ERR_STREAM_ALREADY_FINISHED',
]

const childAction = fc.oneof(
  fc.record({ kind: fc.constant('kill'), signal: fc.oneof(fc.constantFrom(undefined, 0, 'SIGTERM', 'SIGCONT', 'SIGUSR1', 15), anyValue) }),
  fc.record({ kind: fc.constant('write'), chunk: fc.oneof(fc.constantFrom('abc\n', Buffer.from('xyz'), new Uint8Array(3)), anyValue) }),
  fc.record({ kind: fc.constant('end'), chunk: fc.constantFrom(undefined, 'bye\n', null) }),
  fc.constant({ kind: 'destroy-stdout' }),
  fc.constant({ kind: 'pause', ms: 20 }),
)

const streamCase = fc.record({
  program,
  form: argumentForm,
  options: nearValidOptions(streamOptions, STREAM_OPTION_NAMES, { inert: ['shell'] }),
  actions: fc.array(childAction, { maxLength: 4 }),
})

/** Runs one action on `child`; a failure must be typed. */
async function act(child, action, streamErrors) {
  switch (action.kind) {
    case 'kill':
      try {
        assert.equal(typeof child.kill(action.signal), 'boolean')
      } catch (error) {
        assertTypedError(error, [], `kill(${inspect(action.signal)})`)
      }
      break
    case 'write':
    case 'end': {
      if (child.stdin === null) break
      const method = action.kind
      try {
        child.stdin[method](action.chunk, (error) => error && streamErrors.push(error))
      } catch (error) {
        assertTypedError(error, STDIN_FAILURES, `stdin.${method}(${inspect(action.chunk)})`)
      }
      break
    }
    case 'destroy-stdout':
      child.stdout?.destroy()
      break
    case 'pause':
      await sleep(action.ms)
  }
}

test('spawn and its Child: any arguments and calls give a Child or a typed error; every child ends', { timeout: 120_000 }, async () => {
  let started = 0
  await check(fc.asyncProperty(streamCase, async (run) => {
    const { options, target } = prepare(run, { bounded: false })
    let child
    try {
      child = spawn(...callArguments(run.form, target, options))
    } catch (error) {
      assertTypedError(error, URL_ERRORS, 'spawn')
      return
    }
    if (child.pid !== undefined) started += 1
    const streamErrors = []
    const closed = new Promise((resolve) => child.once('close', resolve))
    child.on('error', () => {}) // the same error `exited` rejects with, checked below
    for (const stream of [child.stdin, child.stdout, child.stderr]) stream?.on('error', (error) => streamErrors.push(error))
    child.stdout?.resume()
    child.stderr?.resume()
    try {
      for (const action of run.actions) await act(child, action, streamErrors)
    } finally {
      // Ended here through its own kill(), whatever the actions did.
      child.kill('SIGKILL')
    }
    const exited = await settle(child.exited, 'exited')
    if (!exited.ok) assertTypedError(exited.error, ['ABORT_ERR', 'errno'], 'exited')
    await settle(closed, "'close'")
    for (const error of streamErrors) {
      assert.ok(error instanceof Error && (STDIN_FAILURES.includes(error.code) || ERRNO.test(error.code)), `stream error ${inspect(error)}`)
    }
  }), STREAM_RUNS)
  assert.ok(started >= STREAM_RUNS / 5, `only ${started} of ${STREAM_RUNS} children started`)
  await assertNothingLeft('after spawn')
})

// ---------------------------------------------------------------------------------------------
// Supervisor.

/**
 * A valid wait for an answer or a worker: mostly long enough for a Node worker to boot on a
 * busy machine, sometimes short enough to expire; 0 (none) is clamped where a drain waits.
 */
const requestWait = fc.oneof(
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 200 }) },
  { weight: 3, arbitrary: fc.constant(TIMING_CAP) },
)

const supervisorValid = {
  ...confinement,
  args: fc.constantFrom([], ['a', 'b']),
  execArgv: fc.constantFrom([], ['--no-warnings'], ['--max-old-space-size=64']),
  env: fc.constantFrom({}, { TETHERED_TEST_VALUE: 'x' }),
  cwd: fc.constantFrom('/', '/tmp', process.cwd()),
  restartDelay: milliseconds(0, 200),
  maxRestartDelay: milliseconds(0, 500),
  healthCheckInterval: milliseconds(0, 500),
  healthCheckTimeout: milliseconds(1, 1_000),
  stopTimeout: milliseconds(1, 1_000),
  killSignal: fc.constantFrom('SIGTERM', 'SIGKILL', 'SIGINT'),
  stdio: fc.constantFrom('ignore', 'pipe'),
  maxMessageSize: fc.constantFrom(1 << 20, 2 ** 26),
  serialization: fc.constantFrom('json', 'advanced'),
}
/** Valid options with the worker: `execArgv` is for module workers only. */
function withWorker([chosen, options]) {
  const result = { ...options, ...chosen }
  if ('command' in chosen) delete result.execArgv
  return result
}

/** The worker of a case: a module worker mostly; a command that sleeps, exits or is missing. */
const worker = fc.constantFrom(
  { modulePath: fixture('worker-echo.js') },
  { modulePath: fixture('worker-echo.js') },
  { modulePath: fixture('pool-worker.js') },
  { command: SLEEPER.command, args: SLEEPER.args },
  { command: 'true' },
  { command: 'tethered-no-such-command' },
)
const supervisorOptions = fc.tuple(worker, fc.record({
  ...supervisorValid,
  restart: fc.constantFrom('on-failure', 'always'),
  maxRestarts: fc.integer({ min: 0, max: 5 }),
}, { requiredKeys: ['stdio'] })).map(withWorker)
const SUPERVISOR_OPTION_NAMES = [
  ...Object.keys(supervisorValid), 'restart', 'maxRestarts', 'modulePath', 'command', 'unknownOption',
]
/** What stop() waits for: the rest (restart delays, health checks) it cancels. */
const SUPERVISOR_TIMINGS = ['stopTimeout']
/** Run as a program: never free text. */
const WORKER_INERT = ['command', 'args', 'execArgv', 'modulePath']

const message = fc.oneof(
  { weight: 3, arbitrary: anyValue },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('echo'), value: anyValue }) },
  { weight: 1, arbitrary: fc.constant({ op: 'exit', code: 3 }) },
  { weight: 1, arbitrary: fc.constant(null).map(() => {
    const circular = { op: 'echo' }
    circular.self = circular
    return circular
  }) },
)

const requestOptions = nearValidOptions(fc.record({ timeout: requestWait }, { requiredKeys: [] }), ['timeout', 'unknownOption'], { maxChanges: 1 })

const supervisorCall = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('send'), message }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('request'), message, options: fc.option(requestOptions, { freq: 3 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'start' }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'stop' }) },
)

const SEND_FAILURES = ['ERR_IPC_CHANNEL_CLOSED']
const SUPERVISOR_FAILURES = {
  start: ['errno', 'ERR_INVALID_STATE'],
  stop: [],
  send: SEND_FAILURES,
  request: [...SEND_FAILURES, 'ERR_WORKER_REQUEST_FAILED', 'ERR_WORKER_EXITED', 'ERR_TIMEOUT'],
}
/** What a supervisor or pool may emit as 'error'. */
const EVENT_ERRORS = ['ERR_IPC_MALFORMED_MESSAGE', 'ERR_IPC_MESSAGE_TOO_LARGE', 'errno']

test('new Supervisor: any options construct one or throw a typed error', () => {
  const options = nearValidOptions(supervisorOptions, SUPERVISOR_OPTION_NAMES)
  check(fc.property(options, ({ options: given }) => {
    let sup
    try {
      sup = new Supervisor(given)
    } catch (error) {
      assertTypedError(error, [], 'new Supervisor')
      return
    }
    assert.equal(sup.state, 'idle')
    assert.equal(sup.pid, null)
  }), CONSTRUCTOR_RUNS)
})

test('Supervisor: start, send, request and stop with any arguments settle typed; stop ends the worker', { timeout: 180_000 }, async () => {
  const supervisorCase = fc.record({
    options: nearValidOptions(supervisorOptions, SUPERVISOR_OPTION_NAMES, { inert: WORKER_INERT, maxChanges: 1 }),
    calls: fc.array(supervisorCall, { maxLength: 4 }),
  })
  let running = 0
  await check(fc.asyncProperty(supervisorCase, async (run) => {
    const { options, own } = run.options
    if (own) clampTimings(options, SUPERVISOR_TIMINGS)
    let sup
    try {
      sup = new Supervisor(options)
    } catch (error) {
      assertTypedError(error, [], 'new Supervisor')
      return
    }
    const eventErrors = []
    sup.on('error', (error) => eventErrors.push(error))
    const started = settleCall(() => sup.start(), 'start()')
    const pending = run.calls.map((call) => {
      const what = `${call.kind}()`
      const invoke = () => {
        if (call.kind === 'send') return sup.send(call.message)
        if (call.kind === 'request') {
          if (call.options === null) return sup.request(call.message)
          return sup.request(call.message, call.options.options)
        }
        return sup[call.kind]()
      }
      return started.then(() => settleCall(invoke, what)).then((outcome) => ({ call, outcome }))
    })
    // Let the calls run a little, then stop whatever is still going on.
    await Promise.race([Promise.all(pending), sleep(1_000)])
    const stopped = await settleCall(() => sup.stop(), 'stop()')
    if (!stopped.ok) assertTypedError(stopped.error, SUPERVISOR_FAILURES.stop, 'stop()')
    const start = await started
    if (start.ok) running += 1
    if (!start.ok) assertTypedError(start.error, SUPERVISOR_FAILURES.start, 'start()')
    for (const { call, outcome } of await Promise.all(pending)) {
      if (!outcome.ok) assertTypedError(outcome.error, SUPERVISOR_FAILURES[call.kind], `${call.kind}()`)
    }
    // A start() the case made after its stop() (the machine was slow) may have started a worker
    // again: stop() once more, which must leave none.
    const stoppedAgain = await settleCall(() => sup.stop(), 'stop() again')
    if (!stoppedAgain.ok) assertTypedError(stoppedAgain.error, SUPERVISOR_FAILURES.stop, 'stop() again')
    assert.equal(sup.pid, null, 'a worker pid after stop() resolved')
    for (const error of eventErrors) assertTypedError(error, EVENT_ERRORS, "'error' event")
    await assertNothingLeft('after stop()')
  }), SUPERVISOR_RUNS)
  assert.ok(running >= SUPERVISOR_RUNS / 4, `only ${running} of ${SUPERVISOR_RUNS} supervisors started`)
})

// ---------------------------------------------------------------------------------------------
// Pool.

/** A pool's worker: one that answers, one that exits at once, one that cannot start. */
const poolWorker = fc.constantFrom(
  { modulePath: fixture('pool-worker.js') },
  { modulePath: fixture('pool-worker.js') },
  { modulePath: fixture('pool-worker.js') },
  { command: 'true' },
  { command: 'tethered-no-such-command' },
)

const poolOptions = fc.tuple(poolWorker, fc.record({
  ...supervisorValid,
  size: fc.oneof(
    fc.integer({ min: 1, max: 2 }),
    fc.integer({ min: 0, max: 1 }).chain((min) => fc.record({ min: fc.constant(min), max: fc.integer({ min: Math.max(min, 1), max: 2 }) })),
  ),
  idleTimeout: milliseconds(1, 1_000),
  concurrency: fc.integer({ min: 1, max: 3 }),
  maxQueue: fc.constantFrom(1, 8, Infinity),
  requestTimeout: requestWait,
  queueTimeout: requestWait,
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  maxRestarts: fc.constantFrom(0, 3, Infinity),
  restartWindow: milliseconds(1, 60_000),
  recycleAfter: fc.integer({ min: 0, max: 3 }),
  maxMemory: fc.constantFrom(2 ** 30, 2 ** 40),
  memoryCheckInterval: milliseconds(10, 1_000),
}, { requiredKeys: ['stdio', 'requestTimeout', 'queueTimeout'] })).map(withWorker)
const POOL_OPTION_NAMES = [
  ...Object.keys(supervisorValid), 'size', 'idleTimeout', 'concurrency', 'maxQueue', 'requestTimeout',
  'queueTimeout', 'maxAttempts', 'maxRestarts', 'restartWindow', 'recycleAfter', 'maxMemory',
  'memoryCheckInterval', 'modulePath', 'command', 'unknownOption',
]
/** What close() waits for (a drain waits for queued and in-flight requests). */
const POOL_TIMINGS = ['stopTimeout', 'requestTimeout', 'queueTimeout']

/** An ordinary object of data properties only: one this test may read without a getter firing. */
function isPlainData(value) {
  if (value === null || typeof value !== 'object' || types.isProxy(value)) return false
  if (Object.getPrototypeOf(value) !== Object.prototype) return false
  return Object.values(Object.getOwnPropertyDescriptors(value)).every((descriptor) => 'value' in descriptor)
}

/** At most two workers per case: a valid size of 64 would be 64 Node processes. */
function clampSize(options) {
  const descriptor = Object.getOwnPropertyDescriptor(options, 'size')
  if (descriptor === undefined || !('value' in descriptor)) return
  const cap = (n) => (typeof n === 'number' && n > 2 ? 2 : n)
  const size = descriptor.value
  if (size === undefined) options.size = 1
  else if (typeof size === 'number') options.size = cap(size)
  else if (isPlainData(size)) {
    options.size = { ...size, min: cap(size.min), max: cap(size.max) }
  }
}

const poolRequestOptions = nearValidOptions(fc.record({
  timeout: requestWait,
  queueTimeout: requestWait,
  signal: abortSignal,
  maxAttempts: fc.integer({ min: 1, max: 3 }),
}, { requiredKeys: [] }), ['timeout', 'queueTimeout', 'signal', 'maxAttempts', 'unknownOption'], { maxChanges: 1 })

const poolBody = fc.oneof(
  { weight: 2, arbitrary: anyValue },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('echo'), value: fc.jsonValue({ maxDepth: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('echo'), value: anyValue }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('sleep'), ms: fc.integer({ min: 0, max: 300 }) }) },
  { weight: 1, arbitrary: fc.constant({ op: 'crash' }) },
)

const POOL_REQUEST_FAILURES = [
  'ERR_POOL_QUEUE_FULL', 'ERR_POOL_QUEUE_TIMEOUT', 'ERR_TIMEOUT', 'ABORT_ERR', 'ERR_WORKER_EXITED',
  'ERR_WORKER_REQUEST_FAILED', 'ERR_POOL_EXHAUSTED', 'ERR_POOL_CLOSED', 'errno',
]

/** What a drain waits for, per request. */
const REQUEST_WAITS = ['timeout', 'queueTimeout']

const POOL_START_FAILURES = ['errno', 'ERR_POOL_CLOSED', 'ERR_POOL_EXHAUSTED']

test('new Pool: any options construct one or throw a typed error', () => {
  const options = nearValidOptions(poolOptions, POOL_OPTION_NAMES)
  check(fc.property(options, ({ options: given }) => {
    let pool
    try {
      pool = new Pool(given)
    } catch (error) {
      assertTypedError(error, [], 'new Pool')
      return
    }
    assert.equal(pool.state, 'idle')
    assert.equal(pool.size, 0)
  }), CONSTRUCTOR_RUNS)
})

test('Pool: start, request and close with any arguments settle typed; close ends every worker', { timeout: 180_000 }, async () => {
  const poolCase = fc.record({
    options: nearValidOptions(poolOptions, POOL_OPTION_NAMES, { inert: WORKER_INERT, maxChanges: 1 }),
    start: fc.boolean(),
    requests: fc.array(fc.record({ body: poolBody, options: fc.option(poolRequestOptions, { freq: 2 }) }), { minLength: 1, maxLength: 4 }),
    closeOptions: fc.option(fc.oneof(fc.record({ drain: fc.boolean() }), anyValue), { freq: 3 }),
  })
  let withWorkers = 0
  await check(fc.asyncProperty(poolCase, async (run) => {
    const { options, own } = run.options
    if (own) {
      clampTimings(options, POOL_TIMINGS, ['requestTimeout', 'queueTimeout'])
      clampSize(options)
    }
    let pool
    try {
      pool = new Pool(options)
    } catch (error) {
      assertTypedError(error, [], 'new Pool')
      return
    }
    const eventErrors = []
    pool.on('error', (error) => eventErrors.push(error))
    pool.once('spawn', () => {
      withWorkers += 1
    })
    const started = run.start ? settleCall(() => pool.start(), 'start()') : undefined
    const pending = run.requests.map(({ body, options: given }) => settleCall(() => {
      if (given === null) return pool.request(body)
      return pool.request(body, given.own ? clampTimings(given.options, REQUEST_WAITS, REQUEST_WAITS) : given.options)
    }, 'request()'))
    await Promise.race([Promise.all(pending), sleep(3_000)])
    const closeArguments = run.closeOptions === null ? [] : [run.closeOptions]
    const closed = await settleCall(() => pool.close(...closeArguments), 'close()')
    if (!closed.ok) assertTypedError(closed.error, [], 'close()')
    for (const outcome of await Promise.all(pending)) {
      if (!outcome.ok) assertTypedError(outcome.error, POOL_REQUEST_FAILURES, 'request()')
    }
    const start = await started
    if (start?.ok === false) assertTypedError(start.error, POOL_START_FAILURES, 'start()')
    if (closed.ok) assert.equal(pool.size, 0, 'workers left after close() resolved')
    for (const error of eventErrors) assertTypedError(error, EVENT_ERRORS, "'error' event")
    // A close() refused for its arguments closed nothing: close it as documented.
    if (!closed.ok) await settleCall(() => pool.close({ drain: false }), 'close({ drain: false })')
    await assertNothingLeft('after close()')
  }), POOL_RUNS)
  // The mix must really run workers, not only refuse options.
  assert.ok(withWorkers >= POOL_RUNS / 5, `only ${withWorkers} of ${POOL_RUNS} pools started a worker`)
})
