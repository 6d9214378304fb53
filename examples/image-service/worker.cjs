'use strict'
// The thumbnail worker. tethered's Pool runs several of these, each with Node and a real Node
// IPC channel; the tethered/worker helper answers the pool's health checks and shutdown and
// hands each request() body to the handler below. The pool gives a worker one upload at a time.
//
// It is CommonJS, like the documented `require('tethered/worker')`: a CommonJS main module runs
// to its end (handlers registered) before Node reads the first message from the IPC channel, so
// a request sent the moment the worker spawned is answered, not missed.
//
// In your own app this line is `require('tethered/worker')`; the demo loads the package from
// the repository root it lives in (see README.md, "The image-service demo").
const { onRequest } = require('../../worker.js')
const sharp = require('sharp')

// Every upload is a new image: libvips's operation cache would only hold memory (and the pool
// replaces a worker whose RSS passes maxMemory).
sharp.cache(false)

/** The longest side of a thumbnail, in pixels. */
const THUMBNAIL_SIZE = 128

onRequest(async ({ image, name }) => {
  // Wall-clock times (comparable across processes) of this worker's part, so the demo can show
  // uploads being worked on at the same time by different workers.
  const started = performance.timeOrigin + performance.now()
  // The pool runs with serialization: 'advanced', so the upload arrives as the Buffer it was.
  let output
  try {
    // sharp's own guard (about 268 megapixels) is lifted: the worker's memory and CPU limits
    // (see server.mjs) bound what a file can cost, and they hold for every decoder, native
    // code included, whatever a file claims in its header.
    output = await sharp(image, { limitInputPixels: false })
      .rotate() // honour EXIF orientation
      .resize(THUMBNAIL_SIZE, THUMBNAIL_SIZE, { fit: 'inside', withoutEnlargement: true })
      .png()
      .toBuffer({ resolveWithObject: true })
  } catch (error) {
    // What production image workers do on a decoder failure they do not trust themselves to
    // survive (libvips/libjpeg state after a corrupt file, a native abort): leave at once. No
    // answer is sent; the Pool sees the exit, rejects the request that was in flight with
    // ERR_WORKER_EXITED (with this line in its stderrTail) and starts a fresh worker in this
    // slot, while the other workers go on serving.
    process.stderr.write(`worker ${process.pid}: cannot decode ${name ?? 'the upload'} (${error.message.split('\n')[0]}); exiting\n`)
    process.exit(1)
  }
  return {
    thumbnail: output.data,
    format: output.info.format,
    width: output.info.width,
    height: output.info.height,
    pid: process.pid,
    started,
    finished: performance.timeOrigin + performance.now(),
  }
})
