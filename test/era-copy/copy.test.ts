import { closeSync, openSync, writeSync, ftruncateSync } from 'node:fs'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import t from 'tap'
import {
  MAX_RECORD_LENGTH,
  Progress,
  StreamKind,
  StreamReader,
  StreamWriter,
  close,
  loadHash,
  openSource,
  type EraRangeWriter,
  type StreamRecord,
} from '@blockpipe/core'
import { DATA_RECORD, ExtentCopier, SLICE, eraRangeRecords, type Extent } from '../../packages/era-copy/src/copy.js'
import { randomBytes } from '../lib/data.js'

const MiB = 1024 * 1024

interface Copied {
  records: { type: string; offset: number; length: number }[]
  /** The image the records rebuild: zeros where nothing was sent. */
  image: Buffer
}

/** Writes `image` to a file, copies `extents` of it through ExtentCopier, and reads the records back. */
async function copy(
  dir: string,
  image: Buffer | { sparse: number },
  extents: Extent[],
  progress?: Progress,
  settled?: () => void,
): Promise<Copied> {
  const path = join(dir, 'src.img')
  const fd = openSync(path, 'w')
  if (Buffer.isBuffer(image)) writeSync(fd, image)
  else ftruncateSync(fd, image.sparse)
  closeSync(fd)
  const dev = openSource(path)
  const hash = await loadHash()
  const chunks: Buffer[] = []
  const writer = new StreamWriter(
    hash,
    // With `settled`, the sink copies what it is given: it holds nothing once written.
    settled === undefined
      ? { write: (b: Buffer) => void chunks.push(b) }
      : { write: (b: Buffer) => void chunks.push(Buffer.from(b)), settled },
    { kind: StreamKind.BLOCK, size: dev.size, blockSize: 4096 },
  )
  await writer.start()
  const copier = new ExtentCopier(dev, writer, progress)
  try {
    for (const e of extents) await copier.copy(e)
  } finally {
    close(dev)
  }
  await writer.end()
  const reader = await StreamReader.open([Buffer.concat(chunks)], hash)
  const rebuilt = Buffer.alloc(Buffer.isBuffer(image) ? image.length : 0)
  const records: Copied['records'] = []
  for await (const rec of reader.records()) {
    const r: StreamRecord = rec
    records.push({ type: r.type, offset: r.offset, length: r.length })
    if (r.type === 'DATA') r.payload.copy(rebuilt, r.offset)
  }
  if (reader.end === undefined) throw new Error('no end record')
  return { records, image: rebuilt }
}

/** `image` with everything outside `extents` zeroed: what a copy of those extents rebuilds. */
function only(image: Buffer, extents: Extent[]): Buffer {
  const out = Buffer.alloc(image.length)
  for (const e of extents) image.copy(out, e.offset, e.offset, e.offset + e.length)
  return out
}

void t.test('zeros are found per 64 KiB slice, exactly to the last byte', async (t) => {
  const img = randomBytes(8 * SLICE, 1)
  img.fill(0, 1 * SLICE, 2 * SLICE) // slice 1: zeros
  img.fill(0, 2 * SLICE, 3 * SLICE)
  img[3 * SLICE - 1] = 1 // slice 2: zeros but its last byte
  img.fill(0, 3 * SLICE, 4 * SLICE)
  img[3 * SLICE] = 1 // slice 3: zeros but its first byte
  img.fill(0, 4 * SLICE, 6 * SLICE) // slices 4, 5: zeros
  img.fill(0, 6 * SLICE + 1, 7 * SLICE) // slice 6: zeros after a random first byte
  img[6 * SLICE] = 7
  const got = await copy(t.testdir(), img, [{ offset: 0, length: img.length }])
  t.strictSame(got.records, [
    { type: 'DATA', offset: 0, length: SLICE },
    { type: 'ZERO', offset: SLICE, length: SLICE },
    { type: 'DATA', offset: 2 * SLICE, length: 2 * SLICE },
    { type: 'ZERO', offset: 4 * SLICE, length: 2 * SLICE },
    { type: 'DATA', offset: 6 * SLICE, length: 2 * SLICE },
  ])
  t.ok(got.image.equals(img), 'the records rebuild the image')
})

void t.test('DATA records are at most 1 MiB', async (t) => {
  const img = randomBytes(3 * MiB + MiB / 2 + 100, 2)
  const got = await copy(t.testdir(), img, [{ offset: 0, length: img.length }])
  t.strictSame(
    got.records.map((r) => [r.type, r.offset, r.length]),
    [
      ['DATA', 0, MiB],
      ['DATA', MiB, MiB],
      ['DATA', 2 * MiB, MiB],
      ['DATA', 3 * MiB, MiB / 2 + 100],
    ],
  )
  t.equal(DATA_RECORD, MiB)
  t.ok(got.image.equals(img))
})

void t.test('ZERO records are at most the format limit', async (t) => {
  const size = 40 * MiB + 12288
  const got = await copy(t.testdir(), { sparse: size }, [{ offset: 0, length: size }])
  t.strictSame(
    got.records.map((r) => [r.type, r.offset, r.length]),
    [
      ['ZERO', 0, MAX_RECORD_LENGTH],
      ['ZERO', MAX_RECORD_LENGTH, MAX_RECORD_LENGTH],
      ['ZERO', 2 * MAX_RECORD_LENGTH, size - 2 * MAX_RECORD_LENGTH],
    ],
  )
})

void t.test('extents not aligned to slices, and a partial last block', async (t) => {
  // 136-sector era blocks: 69632 bytes, not a power of two.
  const block = 136 * 512
  const size = 10 * block - 1000
  const img = randomBytes(size, 3)
  img.fill(0, 3 * block, 5 * block) // blocks 3 and 4: zeros
  const extents = [
    { offset: 0, length: 2 * block },
    { offset: 3 * block, length: 3 * block },
    { offset: 9 * block, length: size - 9 * block },
  ]
  const got = await copy(t.testdir(), img, extents)
  t.strictSame(got.records, [
    { type: 'DATA', offset: 0, length: 2 * block },
    { type: 'ZERO', offset: 3 * block, length: 2 * block - ((2 * block) % SLICE) },
    // The slice holding the end of block 4 and the start of block 5.
    { type: 'DATA', offset: 5 * block - ((2 * block) % SLICE), length: block + ((2 * block) % SLICE) },
    { type: 'DATA', offset: 9 * block, length: size - 9 * block },
  ])
  t.ok(got.image.equals(only(img, extents)), 'the records rebuild exactly the extents')
})

void t.test('runs never join across extents', async (t) => {
  const img = Buffer.alloc(6 * SLICE)
  randomBytes(SLICE, 4).copy(img, 0)
  randomBytes(SLICE, 5).copy(img, 4 * SLICE)
  const extents = [
    { offset: 0, length: 2 * SLICE }, // data then zeros
    { offset: 3 * SLICE, length: SLICE }, // zeros, not adjacent
    { offset: 4 * SLICE, length: SLICE }, // data, adjacent
    { offset: 5 * SLICE, length: SLICE }, // zeros
  ]
  const got = await copy(t.testdir(), img, extents)
  t.strictSame(got.records, [
    { type: 'DATA', offset: 0, length: SLICE },
    { type: 'ZERO', offset: SLICE, length: SLICE },
    { type: 'ZERO', offset: 3 * SLICE, length: SLICE },
    { type: 'DATA', offset: 4 * SLICE, length: SLICE },
    { type: 'ZERO', offset: 5 * SLICE, length: SLICE },
  ])
  t.ok(got.image.equals(img))
})

void t.test('a payload handed to the writer is never overwritten by the next read', async (t) => {
  // A sink that keeps the buffers it is given (as stdout may) and compares at the end.
  const img = randomBytes(3 * MiB, 6)
  const got = await copy(t.testdir(), img, [{ offset: 0, length: img.length }])
  t.ok(got.image.equals(img))
})

void t.test('a sink that lets go of what it is given: one buffer serves every record', async (t) => {
  const img = randomBytes(3 * MiB + 5 * SLICE, 9)
  img.fill(0, MiB, MiB + SLICE)
  let settles = 0
  const got = await copy(t.testdir(), img, [{ offset: 0, length: img.length }], undefined, () => void settles++)
  t.ok(got.image.equals(img))
  t.equal(settles, 3, 'before each read that follows a DATA record: three of the four')
})

void t.test('the old format: the same records, each payload copied out', async (t) => {
  const written: { offset: number; data: Buffer | number }[] = []
  const writer = {
    data: (offset: number, data: Buffer) => Promise.resolve(void written.push({ offset, data })),
    zero: (offset: number, length: number) => Promise.resolve(void written.push({ offset, data: length })),
  } as unknown as EraRangeWriter
  const path = join(t.testdir(), 'src.img')
  const img = randomBytes(2 * SLICE, 10)
  img.fill(0, SLICE)
  const fd = openSync(path, 'w')
  writeSync(fd, img)
  closeSync(fd)
  const dev = openSource(path)
  const records = eraRangeRecords(writer)
  await records.settled()
  const copier = new ExtentCopier(dev, records)
  await copier.copy({ offset: 0, length: img.length })
  close(dev)
  t.equal(copier.dataBytes, SLICE)
  t.same(written, [
    { offset: 0, data: img.subarray(0, SLICE) },
    { offset: SLICE, data: SLICE },
  ])
})

void t.test('progress is reported as the extents are read', async (t) => {
  let text = ''
  const out = new Writable({
    write(chunk: Buffer, _enc: BufferEncoding, cb: () => void) {
      text += chunk.toString()
      cb()
    },
  })
  const img = randomBytes(4 * SLICE, 7)
  await copy(
    t.testdir(),
    img,
    [{ offset: 0, length: img.length }],
    new Progress('era-copy', img.length, { out, interval: 0 }),
  )
  t.match(text, /^era-copy: 64.0 KiB of 256.0 KiB \(25%\)/)
  t.match(text, /era-copy: 256.0 KiB of 256.0 KiB \(100%\)/)
})

void t.test('a source that ends before its extent is a device error', async (t) => {
  const img = randomBytes(SLICE, 8)
  await t.rejects(copy(t.testdir(), img, [{ offset: 0, length: 2 * SLICE }]), {
    code: 'EDEVICE',
    message: /src\.img: ended at byte 65536 while reading \(did it shrink\?\)/,
  })
})
