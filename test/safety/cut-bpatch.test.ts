import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { everyOffset } from './cut.js'
import { deltaStream } from './lib.js'

// bpatch and a delta cut at every byte offset (see cut.ts).
t.setTimeout(30 * 60 * 1000)

void t.test('bpatch: a delta cut at every byte offset', async (t) => {
  // 512-byte chunks: a ZERO chunk, an unchanged one, a ZERO chunk, and a
  // DATA chunk that grows the image by a byte (its base is 2 bytes long).
  const oldImage = randomBytes(1538, 8)
  const newImage = Buffer.concat([oldImage.subarray(0, 1536), randomBytes(3, 9)])
  newImage.fill(0, 0, 512)
  newImage.fill(0, 1024, 1536)
  const stream = await deltaStream(oldImage, newImage, 512)
  await everyOffset(t, { program: 'bpatch', oldImage, newImage, stream, creates: false })
})
