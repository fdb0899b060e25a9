import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { everyOffset } from './cut.js'
import { blockStream } from './lib.js'

// era-apply and a block stream cut at every byte offset (see cut.ts).
t.setTimeout(30 * 60 * 1000)

void t.test('era-apply: a full block stream cut at every byte offset', async (t) => {
  // DATA, ZERO and DATA records covering an image that grows from 400 to 514
  // bytes; every other offset goes to a target that does not exist yet.
  const image = Buffer.alloc(514)
  randomBytes(1, 1).copy(image, 0)
  randomBytes(1, 2).copy(image, 513)
  const stream = await blockStream(
    image,
    [
      [0, 1],
      [1, 512],
      [513, 1],
    ],
    { full: true },
  )
  await everyOffset(t, { program: 'era-apply', oldImage: randomBytes(400, 3), newImage: image, stream, creates: true })
})
