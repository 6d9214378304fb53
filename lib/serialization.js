'use strict'
// How messages are turned into what crosses the native side, in each of Node's serialization
// modes. The native side only frames and routes: it never builds a message, so the encoding
// and decoding of both modes happen here, with JSON or with V8's own serializer.
//
// 'advanced' must be exactly what a worker's `process.on('message')` reads, i.e. what Node's
// fork() writes: V8's serializer as Node's child-process channel extends it. That extension
// sends an ArrayBufferView (Buffer, typed array, DataView) as a host object marked 0 and then
// written as node:v8's DefaultSerializer writes it, and any other host object marked 1 and
// sent as a plain copy of its own properties. Reading mirrors it; a Buffer read back is a view
// into the payload the native side handed over, not a copy.
const v8 = require('node:v8')

const ARRAY_BUFFER_VIEW = 0
const OTHER_HOST_OBJECT = 1

/** What V8's serializer throws for a value it cannot carry (a function, a symbol). */
class UncloneableError extends Error {}

class ChannelSerializer extends v8.DefaultSerializer {
  _getDataCloneError(message) {
    return new UncloneableError(message)
  }

  _writeHostObject(object) {
    if (ArrayBuffer.isView(object)) {
      this.writeUint32(ARRAY_BUFFER_VIEW)
      super._writeHostObject(object)
    } else {
      this.writeUint32(OTHER_HOST_OBJECT)
      this.writeValue({ ...object })
    }
  }
}

class ChannelDeserializer extends v8.DefaultDeserializer {
  _readHostObject() {
    return this.readUint32() === ARRAY_BUFFER_VIEW ? super._readHostObject() : this.readValue()
  }
}

/** A v8 payload (version header included) of `value`; throws an UncloneableError for what V8 cannot carry. */
function serialize(value) {
  const serializer = new ChannelSerializer()
  serializer.writeHeader()
  serializer.writeValue(value)
  return serializer.releaseBuffer()
}

function deserialize(payload) {
  const deserializer = new ChannelDeserializer(payload)
  deserializer.readHeader()
  return deserializer.readValue()
}

// A request's envelope is serialized here, body and all, so V8 writes the body once and its
// object references stay right. Its id is not known yet: a double placeholder (8 bytes, fixed
// width) takes its place, and the native side writes the id over it (src/ipc/advanced.rs).
const ID_PLACEHOLDER = 0.5

/**
 * `encode`, where a value the mode cannot carry (a BigInt or a cycle for JSON, a function or a
 * symbol for V8) becomes a TypeError with code ERR_INVALID_ARG_VALUE naming the argument (as the
 * caller names it, else `argument`), the encoder's error as its cause. What the caller's own code
 * throws while being encoded (a getter, a toJSON) passes through untouched.
 */
function typed(encode, argument) {
  return (value, name = argument) => {
    try {
      return encode(value)
    } catch (error) {
      const uncarriable =
        error instanceof UncloneableError || (error instanceof TypeError && /BigInt|circular structure/.test(error.message))
      if (!uncarriable) throw error
      const typedError = new TypeError(`The "${name}" argument cannot be serialized: ${error.message}`, { cause: error })
      typedError.code = 'ERR_INVALID_ARG_VALUE'
      throw typedError
    }
  }
}

/** For each mode: a message and a request body as the native side takes them, and back. */
const codecs = {
  json: {
    message: typed((value) => JSON.stringify(value), 'message'),
    request: typed((body) => JSON.stringify(body), 'body'),
    decode: (json) => JSON.parse(json),
    // A result arrives as the JSON text of `result` alone.
    result: (json) => JSON.parse(json),
  },
  advanced: {
    message: typed(serialize, 'message'),
    request: typed((body) => serialize({ tethered: 'request', id: ID_PLACEHOLDER, body }), 'body'),
    decode: deserialize,
    // A result arrives inside its whole response (references in it count from the envelope).
    result: (payload) => deserialize(payload).result,
  },
}

module.exports = { codecs }
