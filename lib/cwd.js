'use strict'
// A `file:` URL given as `cwd` is made a path by Node's own `url.fileURLToPath`, so it is read
// exactly as Node reads it, errors included (ERR_INVALID_URL_SCHEME for `https:`, ...).
//
// This happens here, before the native side reads the options, because native code can reach
// `node:url` only through `process.getBuiltinModule`, which Node 18 and Node 20 before 20.16 do
// not have — and `engines` allows 18.17.
//
// Only a plain options object is copied (with the path in place of the URL). Anything else goes
// on untouched, so the native side still rejects it as it always has ("an instance of ...").
const { fileURLToPath } = require('node:url')

function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false
  const prototype = Object.getPrototypeOf(value)
  return prototype === Object.prototype || prototype === null
}

/**
 * `value` with its `cwd` made a path when `value` is a plain options object whose `cwd` is a URL;
 * any other value as given. Applied to both the `args` and `options` arguments of a call, since
 * `fn(command, options)` puts the options in the second place.
 */
function withPathCwd(value) {
  if (!isPlainObject(value) || !(value.cwd instanceof URL)) return value
  return { ...value, cwd: fileURLToPath(value.cwd) }
}

module.exports = { withPathCwd }
