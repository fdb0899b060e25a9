import t from 'tap'
import {
  DIGESTS_PER_RECORD,
  DigestReader,
  DigestWriter,
  parseSeed,
  randomSeed,
} from '../../packages/core/src/digests.js'
import { StreamKind } from '../../packages/core/src/format.js'
import { StreamReader } from '../../packages/core/src/read.js'
import { StreamWriter, type ByteSink } from '../../packages/core/src/write.js'
import { randomBytes } from '../lib/data.js'
import { ArraySink, build, chunkDigests, digestStream, hash, parseAll } from './streams.js'

async function first(reader: DigestReader): Promise<bigint> {
  const one = Buffer.alloc(8)
  await reader.fill(one)
  return one.readBigUInt64LE(0)
}

void t.test('parseSeed takes a 64-bit unsigned number, decimal or hex', (t) => {
  t.equal(parseSeed('0'), 0n)
  t.equal(parseSeed('12345'), 12345n)
  t.equal(parseSeed('0xff'), 255n)
  t.equal(parseSeed('0xFFFFFFFFFFFFFFFF'), 2n ** 64n - 1n)
  t.equal(parseSeed('18446744073709551615'), 2n ** 64n - 1n)
  for (const bad of ['18446744073709551616', '0x10000000000000000', '-1', '', 'abc', '1e3', '0x', '0b1', ' 1', '1.0']) {
    t.throws(() => parseSeed(bad), {
      name: 'UsageError',
      message: `--seed ${JSON.stringify(bad)} is not a 64-bit unsigned number`,
    })
  }
  t.end()
})

void t.test('randomSeed gives unguessable 64-bit seeds', (t) => {
  const seeds = new Set<bigint>()
  for (let i = 0; i < 100; i++) {
    const s = randomSeed()
    t.ok(s >= 0n && s < 2n ** 64n)
    seeds.add(s)
  }
  t.equal(seeds.size, 100)
  t.end()
})

void t.test('DigestWriter reuses a record buffer only once the sink has let go of it', async (t) => {
  // Holds what it is given until settled, as stdout does while the pipe is full.
  class LazySink implements ByteSink {
    held: Buffer[] = []
    out: Buffer[] = []
    /** The memory of every full SUMS payload written. */
    records = new Set<ArrayBufferLike>()
    write(chunk: Buffer): void {
      this.held.push(chunk)
      if (chunk.length === DIGESTS_PER_RECORD * 8) this.records.add(chunk.buffer)
    }
    settled(): void {
      this.out.push(...this.held.map((b) => Buffer.from(b)))
      this.held = []
    }
  }
  const B = 512
  const seed = 9n
  // Digests of no image in particular: the writer frames what it is given.
  const digests = randomBytes((DIGESTS_PER_RECORD * 5 + 3) * 8, 11)
  const size = (digests.length / 8 - 1) * B + 100
  const write = async (sink: ByteSink) => {
    const w = new StreamWriter(hash, sink, { kind: StreamKind.DIGEST, size, blockSize: B, seed })
    await w.start()
    const d = new DigestWriter(hash, w, B, seed)
    for (let at = 0; at < digests.length; at += 8000) {
      const batch = digests.subarray(at, at + 8000)
      await d.addMany(Buffer.from(batch), Math.min(size - (at / 8) * B, (batch.length / 8) * B))
    }
    await d.end()
  }
  const sink = new LazySink()
  await write(sink)
  sink.settled()
  const plain = new ArraySink()
  await write(plain)
  t.same(Buffer.concat(sink.out), plain.bytes, 'the stream of a writer that allocates per record')
  t.equal(sink.records.size, 2, 'five full records written from two buffers in turn')
  const none = new StreamWriter(hash, new ArraySink(), { kind: StreamKind.DIGEST, size: 0, blockSize: B })
  t.equal(await none.settled(), false, 'a sink that cannot tell says so: DigestWriter allocates')
})

void t.test('DigestWriter and DigestReader round-trip the digests of any image size', async (t) => {
  const B = 4096
  const seed = 0x5eedn
  const sizes = [0, 1, 100, B, B + 1, B * DIGESTS_PER_RECORD, B * DIGESTS_PER_RECORD + 1, B * 1025 + 7, B * 1024]
  for (const size of sizes) {
    const image = randomBytes(size, size)
    const buf = await digestStream(image, B, seed)
    const expected = chunkDigests(image, B, seed)
    const items = parseAll(buf)
    const recs = items.flatMap((i) => (i.type === 'record' ? [i.record] : []))
    t.equal(recs.length, Math.ceil(expected.length / DIGESTS_PER_RECORD), `${size}: ${recs.length} records`)
    t.ok(
      recs.every((r) => r.payload.length <= DIGESTS_PER_RECORD * 8),
      `${size}: at most ${DIGESTS_PER_RECORD} digests a record`,
    )
    const reader = new DigestReader(await StreamReader.open([buf], hash))
    t.equal(reader.header.size, size)
    // Batches of uneven sizes, some across record boundaries.
    const got: bigint[] = []
    for (let i = 0, n = 1; i < expected.length; i += n, n = (n * 7) % 3001) {
      const batch = Buffer.alloc(Math.min(n, expected.length - i) * 8)
      await reader.fill(batch)
      for (let k = 0; k < batch.length; k += 8) got.push(batch.readBigUInt64LE(k))
    }
    t.same(
      got,
      expected.map((e) => e.digest),
      `${size} bytes`,
    )
    await reader.finish()
  }
})

void t.test('DigestReader.finish reads the digests past a shrunk image, and checks the end', async (t) => {
  const image = randomBytes(4096 * 600, 9)
  const buf = await digestStream(image, 4096, 1n)
  const reader = new DigestReader(await StreamReader.open([buf], hash))
  t.equal(await first(reader), chunkDigests(image.subarray(0, 4096), 4096, 1n)[0]?.digest)
  await reader.finish()
  // The same with the end record cut off.
  const cut = new DigestReader(await StreamReader.open([buf.subarray(0, buf.length - 1)], hash))
  await first(cut)
  await t.rejects(cut.finish(), { code: 'ETRUNCATED' })
  // And with a digest changed: the image digest in the end record catches it.
  const forged = await build(
    { kind: StreamKind.DIGEST, flags: 1, size: 8192, blockSize: 4096, seed: 1n },
    (w) => w.sums(0, 8192, Buffer.alloc(16, 1)),
    hash.digest(Buffer.alloc(16, 2), 1n),
  )
  const r = new DigestReader(await StreamReader.open([forged], hash))
  await first(r)
  await t.rejects(r.finish(), { code: 'EBADSTREAM', message: /image digest does not match/ })
})

void t.test('DigestReader refuses a stream of another kind', async (t) => {
  for (const [kind, name] of [
    [StreamKind.BLOCK, 'block'],
    [StreamKind.DELTA, 'delta'],
    [StreamKind.UNDO, 'undo'],
  ] as const) {
    const buf = await build({ kind, size: 0, blockSize: 4096 }, async () => {})
    const reader = await StreamReader.open([buf], hash)
    t.throws(() => new DigestReader(reader), {
      name: 'BlockpipeError',
      code: 'EINPUT',
      exitCode: 1,
      message: `expected a digest stream (from bsum) on standard input, got a ${name} stream`,
    })
  }
})
