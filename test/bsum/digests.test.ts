import t from 'tap'
import {
  DIGESTS_PER_RECORD,
  DigestReader,
  DigestWriter,
  parseSeed,
  randomSeed,
} from '../../packages/core/src/digests.js'
import { StreamKind } from '../../packages/core/src/format.js'
import { loadHash } from '../../packages/core/src/hash.js'
import { StreamReader } from '../../packages/core/src/read.js'
import { StreamWriter } from '../../packages/core/src/write.js'
import { parseStream, summary } from '../integration/bsync-lib.js'

// Digest streams in process: SUMS records of up to 8192 digests, the image
// digest in the end record, and reading them back in batches.

const B = 4096

/** The digest stream of an image of `size` bytes whose chunk n has the digest n + 1000. */
async function digestStream(size: number, seed = 7n): Promise<Buffer> {
  const hash = await loadHash()
  const pieces: Buffer[] = []
  const w = new StreamWriter(
    hash,
    { write: (b) => void pieces.push(b) },
    {
      kind: StreamKind.DIGEST,
      size,
      blockSize: B,
      seed,
    },
  )
  await w.start()
  const d = new DigestWriter(hash, w, B, seed)
  for (let at = 0, n = 0; at < size; at += B, n++) await d.add(BigInt(n + 1000), Math.min(B, size - at))
  await d.end()
  return Buffer.concat(pieces)
}

void t.test('records of 8192 digests; a short last chunk ends one', async (t) => {
  const cases: [number, string[]][] = [
    [0, []],
    [1, ['SUMS 0+1']],
    [B, ['SUMS 0+4096']],
    [8191 * B + 1, [`SUMS 0+${8191 * B + 1}`]],
    [8192 * B, [`SUMS 0+${8192 * B}`]],
    [8192 * B + 5, [`SUMS 0+${8192 * B}`, `SUMS ${8192 * B}+5`]],
    [16384 * B, [`SUMS 0+${8192 * B}`, `SUMS ${8192 * B}+${8192 * B}`]],
  ]
  const hash = await loadHash()
  for (const [size, records] of cases) {
    const s = await parseStream(await digestStream(size))
    t.same(summary(s.records), records, `${size} bytes`)
    const all = Buffer.concat(s.records.map((r) => r.payload))
    t.equal(all.length, Math.ceil(size / B) * 8)
    t.equal(s.end.imageDigest, hash.digest(all, 7n), 'image digest: xxh64 of the digests in order')
  }
  t.equal(DIGESTS_PER_RECORD, 8192)
})

async function take(reader: DigestReader, n: number): Promise<bigint[]> {
  const buf = Buffer.alloc(n * 8)
  await reader.fill(buf)
  return Array.from({ length: n }, (_, k) => buf.readBigUInt64LE(k * 8))
}

void t.test('DigestReader hands out the digests in batches of any size, and checks the end', async (t) => {
  for (const size of [B * 10030 + 17, 8192 * B, 1]) {
    const reader = new DigestReader(await StreamReader.open([await digestStream(size)]))
    t.equal(reader.header.size, size)
    const n = Math.ceil(size / B)
    const got: bigint[] = []
    for (let i = 0, step = 1; i < n; i += step, step = step * 3 + 1)
      got.push(...(await take(reader, Math.min(step, n - i))))
    t.same(
      got,
      Array.from({ length: n }, (_, i) => BigInt(i + 1000)),
      `${size} bytes: ${n} chunks`,
    )
    await reader.finish()
  }

  // Part of the chunks only (the new image is smaller): finish reads the rest.
  const bytes = await digestStream(15000 * B)
  const reader = new DigestReader(await StreamReader.open([bytes]))
  t.same(await take(reader, 1), [1000n])
  await reader.finish()
  const cut = new DigestReader(await StreamReader.open([bytes.subarray(0, bytes.length - 1)]))
  t.same(await take(cut, 2), [1000n, 1001n])
  await t.rejects(cut.finish(), { code: 'ETRUNCATED' }, 'a cut stream fails even past what was needed')
})

void t.test('DigestWriter.addMany: batches across records make the same stream as one digest at a time', async (t) => {
  const hash = await loadHash()
  for (const size of [1, B * 8192, B * 8192 + 1, B * 20000 - 3]) {
    const n = Math.ceil(size / B)
    const all = Buffer.alloc(n * 8)
    for (let i = 0; i < n; i++) all.writeBigUInt64LE(BigInt(i + 1000), i * 8)
    const pieces: Buffer[] = []
    const w = new StreamWriter(
      hash,
      { write: (b) => void pieces.push(b) },
      { kind: StreamKind.DIGEST, size, blockSize: B, seed: 7n },
    )
    await w.start()
    const d = new DigestWriter(hash, w, B, 7n)
    for (let i = 0, step = 5000; i < n; i += step) {
      const m = Math.min(step, n - i)
      await d.addMany(all.subarray(i * 8, (i + m) * 8), Math.min(size, (i + m) * B) - i * B)
    }
    await d.end()
    t.ok(Buffer.concat(pieces).equals(await digestStream(size)), `${size} bytes`)
  }
})

void t.test('DigestReader takes only digest streams', async (t) => {
  const hash = await loadHash()
  const pieces: Buffer[] = []
  const w = new StreamWriter(
    hash,
    { write: (b) => void pieces.push(b) },
    { kind: StreamKind.BLOCK, size: 0, blockSize: B },
  )
  await w.start()
  await w.end()
  const reader = await StreamReader.open(pieces)
  t.throws(() => new DigestReader(reader), {
    code: 'EINPUT',
    message: 'expected a digest stream (from bsum) on standard input, got a block stream',
  })
})

void t.test('parseSeed and randomSeed', (t) => {
  t.equal(parseSeed('0'), 0n)
  t.equal(parseSeed('123'), 123n)
  t.equal(parseSeed('0xfF'), 255n)
  t.equal(parseSeed('0xffffffffffffffff'), 2n ** 64n - 1n)
  for (const bad of ['0x10000000000000000', '18446744073709551616', '-1', '1e3', ' 1', 'x', '']) {
    t.throws(() => parseSeed(bad), { code: 'EUSAGE', exitCode: 2 }, JSON.stringify(bad))
  }
  const seeds = new Set(Array.from({ length: 20 }, () => randomSeed()))
  t.equal(seeds.size, 20)
  for (const s of seeds) t.ok(s >= 0n && s < 2n ** 64n)
  t.end()
})
