import t from 'tap'
import { CorruptStreamError, TrailingDataError, TruncatedStreamError } from '../../packages/core/src/errors.js'
import { DIGESTS_PER_RECORD } from '../../packages/core/src/digests.js'
import { FLAG_FULL, HEADER_SIZE, RECORD_HEADER_SIZE, StreamKind } from '../../packages/core/src/format.js'
import { StreamParser, type StreamItem, type StreamRecord } from '../../packages/core/src/parse.js'
import { prng } from '../lib/data.js'
import {
  build,
  chunkDigests,
  digestStream,
  hash,
  parseAll,
  parseError,
  rawHeader,
  rawStream,
  sampleStream,
} from './streams.js'

const records = (items: StreamItem[]): StreamRecord[] => items.flatMap((i) => (i.type === 'record' ? [i.record] : []))
const headerOf = (items: StreamItem[]) => (items[0]?.type === 'header' ? items[0].header : undefined)
const endOf = (items: StreamItem[]) => {
  const last = items[items.length - 1]
  return last?.type === 'end' ? last.end : undefined
}

void t.test('a block stream round-trips: header, metadata, FULL flag, DATA and ZERO records, totals', async (t) => {
  const a = Buffer.alloc(1000, 0xab)
  const b = Buffer.from('the last bytes')
  const init = {
    kind: StreamKind.BLOCK,
    flags: FLAG_FULL,
    size: 3024,
    blockSize: 1024,
    metadata: { producer: 'era-copy 0.1.0', source: '/dev/vg/data', 'written-since': '7' },
  }
  const buf = await build(init, async (w) => {
    await w.data(0, a)
    await w.zero(1000, 2010)
    await w.data(3010, b)
  })
  const p = new StreamParser(hash)
  t.equal(p.header, undefined)
  t.equal(p.done, false)
  p.push(buf)
  const items: StreamItem[] = []
  for (let item = p.next(); item !== null; item = p.next()) items.push(item)
  p.finish()
  t.equal(p.done, true)
  t.equal(p.next(), null, 'nothing after the end')
  p.push(Buffer.alloc(0))
  p.finish()
  t.same(
    items.map((i) => i.type),
    ['header', 'record', 'record', 'record', 'end'],
  )
  const h = headerOf(items)
  t.same(h, { ...p.header })
  t.match(h, { version: 1, kind: 1, flags: FLAG_FULL, size: 3024, baseSize: 0, blockSize: 1024, seed: 0n })
  t.same(h?.metadata, init.metadata)
  const recs = records(items)
  t.same(
    recs.map((r) => [r.type, r.offset, r.length, r.payloadLength, r.index, r.position, r.flags]),
    [
      ['DATA', 0, 1000, 1000, 0, h?.byteLength, 0],
      ['ZERO', 1000, 2010, 0, 1, (h?.byteLength as number) + 48 + 1000, 0],
      ['DATA', 3010, 14, 14, 2, (h?.byteLength as number) + 96 + 1000, 0],
    ],
  )
  t.ok(recs[0]?.payload.equals(a))
  t.equal(recs[1]?.payload.length, 0)
  t.ok(recs[2]?.payload.equals(b))
  t.same(endOf(items), {
    records: 3,
    payloadBytes: 1014,
    dataBytes: 1014,
    zeroBytes: 2010,
    size: 3024,
    imageDigest: 0n,
  })
  t.equal(p.position, buf.length)
  t.equal(p.records, 3)
  t.equal(p.covered, 3024)
  t.same(p.totals, { payloadBytes: 1014, dataBytes: 1014, zeroBytes: 2010 })
  t.equal(p.chain, buf.readBigUInt64LE(buf.length - 48 - 8), 'the chain ends at the end record checksum')
})

void t.test('a delta stream round-trips with base digests and its image digest', async (t) => {
  const seed = 0x1234n
  const buf = await build(
    { kind: StreamKind.DELTA, size: 10000, baseSize: 5000, blockSize: 4096, seed },
    async (w) => {
      await w.data(0, Buffer.alloc(4096, 1), { length: 4096, digest: 11n })
      await w.zero(4096, 4096, { length: 904, digest: 22n })
      await w.data(8192, Buffer.alloc(1808, 3))
    },
    0xabcdefn,
  )
  const items = parseAll(buf)
  t.match(headerOf(items), { kind: StreamKind.DELTA, size: 10000, baseSize: 5000, blockSize: 4096, seed })
  t.same(
    records(items).map((r) => [r.type, r.offset, r.length, r.flags, r.baseLength, r.baseDigest]),
    [
      ['DATA', 0, 4096, 1, 4096, 11n],
      ['ZERO', 4096, 4096, 1, 904, 22n],
      ['DATA', 8192, 1808, 0, 0, 0n],
    ],
  )
  t.same(endOf(items), {
    records: 3,
    payloadBytes: 4096 + 1808,
    dataBytes: 4096 + 1808,
    zeroBytes: 4096,
    size: 10000,
    imageDigest: 0xabcdefn,
  })
})

void t.test('a digest stream round-trips; its image digest is checked', async (t) => {
  const image = Buffer.alloc(4096 * (DIGESTS_PER_RECORD + 88) + 100)
  for (let i = 0; i < image.length; i++) image[i] = (i * 31) >> 5
  const seed = 99n
  const buf = await digestStream(image, 4096, seed)
  const items = parseAll(buf)
  t.match(headerOf(items), { kind: StreamKind.DIGEST, flags: FLAG_FULL, size: image.length, blockSize: 4096, seed })
  const recs = records(items)
  t.same(
    recs.map((r) => [r.type, r.offset, r.length, r.payloadLength]),
    [
      ['SUMS', 0, 4096 * DIGESTS_PER_RECORD, DIGESTS_PER_RECORD * 8],
      ['SUMS', 4096 * DIGESTS_PER_RECORD, 4096 * 88 + 100, 89 * 8],
    ],
  )
  const digests = chunkDigests(image, 4096, seed)
  const payload = Buffer.concat(recs.map((r) => r.payload))
  t.same(
    digests.map((d, i) => payload.readBigUInt64LE(i * 8)),
    digests.map((d) => d.digest),
  )
  t.equal(endOf(items)?.imageDigest, hash.digest(payload, seed))
  t.same(endOf(items), {
    records: 2,
    payloadBytes: (DIGESTS_PER_RECORD + 89) * 8,
    dataBytes: 0,
    zeroBytes: 0,
    size: image.length,
    imageDigest: hash.digest(payload, seed),
  })
  // An empty image has no records, and the digest of nothing.
  const empty = parseAll(await digestStream(Buffer.alloc(0), 4096, seed))
  t.equal(records(empty).length, 0)
  t.equal(endOf(empty)?.imageDigest, hash.digest(Buffer.alloc(0), seed))
})

void t.test('an undo stream round-trips with its base size', async (t) => {
  const buf = await build(
    { kind: StreamKind.UNDO, size: 8192, baseSize: 12288, blockSize: 4096, metadata: { target: '/dev/sdb' } },
    async (w) => {
      await w.zero(0, 10)
      await w.data(4000, Buffer.from('old contents'))
    },
  )
  const items = parseAll(buf)
  t.match(headerOf(items), { kind: StreamKind.UNDO, size: 8192, baseSize: 12288, metadata: { target: '/dev/sdb' } })
  t.same(
    records(items).map((r) => [r.type, r.offset, r.length, r.payload.toString()]),
    [
      ['ZERO', 0, 10, ''],
      ['DATA', 4000, 12, 'old contents'],
    ],
  )
  t.equal(endOf(items)?.records, 2)
})

void t.test('a stream fed one byte at a time, or in random pieces, parses the same as whole', async (t) => {
  const streams = [
    await sampleStream(),
    await digestStream(Buffer.alloc(4096 * 3 + 1, 7), 4096, 5n),
    await build({ kind: StreamKind.DELTA, size: 1024, baseSize: 512, blockSize: 512 }, async (w) => {
      await w.data(0, Buffer.alloc(512, 9), { length: 512, digest: 1n })
      await w.zero(512, 512)
    }),
  ]
  for (const buf of streams) {
    const whole = parseAll(buf)
    t.same(parseAll(buf, Array<number>(buf.length).fill(1)), whole, 'one byte at a time')
    for (const seed of [1, 2, 3, 42, 1234]) {
      const rnd = prng(seed)
      const pieces: number[] = []
      for (let n = 0; n < buf.length;) {
        const piece = 1 + Math.floor(rnd() * (rnd() < 0.5 ? 8 : 300))
        pieces.push(piece)
        n += piece
      }
      t.same(parseAll(buf, pieces), whole, `random pieces, seed ${seed}`)
    }
    // Pushing many pieces before asking for items makes no difference either.
    const p = new StreamParser(hash)
    for (const b of buf) p.push(Uint8Array.of(b))
    const items: StreamItem[] = []
    for (let item = p.next(); item !== null; item = p.next()) items.push(item)
    p.finish()
    t.same(items, whole, 'all pushed first')
  }
})

/** Where each item of a stream starts: the header, each record, the end record; and the stream length. */
function boundaries(buf: Buffer): { header: number; starts: number[] } {
  const items = parseAll(buf)
  const h = headerOf(items) as NonNullable<ReturnType<typeof headerOf>>
  const starts = records(items).map((r) => r.position)
  const last = records(items).at(-1) as StreamRecord
  starts.push(last.position + RECORD_HEADER_SIZE + last.payloadLength)
  return { header: h.byteLength, starts }
}

void t.test('a stream cut at every byte offset is truncated, never a success', async (t) => {
  const buf = await sampleStream()
  const { header, starts } = boundaries(buf)
  t.equal(starts.length, 4, 'three records and the end record')
  for (let cut = 0; cut < buf.length; cut++) {
    const e = parseError(buf.subarray(0, cut))
    if (!(e instanceof TruncatedStreamError) || e.code !== 'ETRUNCATED') {
      t.fail(`cut at ${cut}: ${e.message}`)
      continue
    }
    if (cut === 0) {
      t.equal(e.message, 'empty input: no stream at all')
      t.same(e.position, { record: 0, offset: 0 })
    } else if (cut < HEADER_SIZE) {
      t.equal(e.message, 'unexpected end of data in the stream header')
      t.same(e.position, { record: 0, offset: 0 })
    } else if (cut < header) {
      t.equal(
        e.message,
        `unexpected end of data in the stream header: ${cut - HEADER_SIZE} of its ${header - HEADER_SIZE} bytes` +
          ' of metadata (the stream was cut, or its metadata length is corrupt)',
      )
    } else {
      const index = starts.filter((s) => s <= cut).length - 1
      t.same(e.position, { record: index, offset: starts[index] }, `cut at ${cut}`)
      t.equal(
        e.message,
        `unexpected end of data: the stream was cut at byte ${cut}, in record ${index} (after ${index} whole` +
          ' records), before its end record',
      )
    }
    // The same cut fed one byte at a time is the same error.
    if (cut % 37 === 0) t.same(parseError(buf.subarray(0, cut), Array<number>(cut).fill(1)), e)
  }
  t.same(parseAll(buf).length, 5, 'the whole stream parses')
})

/** Small streams of the other kinds, for the cut and bit-flip tests. */
async function otherKinds(): Promise<[string, Buffer][]> {
  return [
    ['digest', await digestStream(Buffer.alloc(512 * 2 + 100, 3), 512, 77n)],
    [
      'delta',
      await build(
        { kind: StreamKind.DELTA, size: 1124, baseSize: 600, blockSize: 512, seed: 5n },
        async (w) => {
          await w.data(0, Buffer.alloc(512, 1), { length: 512, digest: 9n })
          await w.zero(512, 512, { length: 88, digest: 8n })
          await w.data(1024, Buffer.alloc(100, 2))
        },
        0x1234n,
      ),
    ],
    [
      'undo',
      await build({ kind: StreamKind.UNDO, size: 1000, baseSize: 2000, blockSize: 512 }, async (w) => {
        await w.zero(0, 10)
        await w.data(100, Buffer.alloc(50, 4))
      }),
    ],
  ]
}

void t.test('streams of the other kinds cut at every byte offset are truncated too', async (t) => {
  for (const [kind, buf] of await otherKinds()) {
    t.equal(parseAll(buf).at(-1)?.type, 'end', `the whole ${kind} stream parses`)
    let bad = 0
    for (let cut = 0; cut < buf.length; cut++) {
      const e = parseError(buf.subarray(0, cut))
      if (!(e instanceof TruncatedStreamError) || e.code !== 'ETRUNCATED') {
        t.fail(`${kind} stream cut at ${cut}: ${e.message}`)
        bad++
      }
    }
    t.equal(bad, 0, `${kind}: ${buf.length} cuts, each truncated`)
  }
})

void t.test('a flipped bit at every bit position is an error, never a success', async (t) => {
  for (const [kind, buf] of [['block', await sampleStream()] as [string, Buffer], ...(await otherKinds())]) {
    const counts: Record<string, number> = {}
    let bad = 0
    for (let bit = 0; bit < buf.length * 8; bit++) {
      const copy = Buffer.from(buf)
      copy.writeUInt8(copy.readUInt8(bit >> 3) ^ (1 << (bit & 7)), bit >> 3)
      let e: Error & { code?: string }
      try {
        parseAll(copy)
        t.fail(`${kind}: bit ${bit} flipped: parsed as a valid stream`)
        bad++
        continue
      } catch (err) {
        e = err as Error & { code?: string }
      }
      const byte = bit >> 3
      const ok =
        (e instanceof CorruptStreamError && (e.code === 'ECORRUPT' || e.code === 'EBADSTREAM')) ||
        // A metadata length made larger than the whole stream reads as a cut
        // header: the header checksum cannot be checked before the metadata.
        (e instanceof TruncatedStreamError &&
          (byte === 38 || byte === 39) &&
          /metadata length is corrupt/.test(e.message))
      if (!ok) {
        t.fail(`${kind}: bit ${bit} flipped (byte ${byte}): ${e.name} ${e.code}: ${e.message}`)
        bad++
      }
      counts[e.code as string] = (counts[e.code as string] ?? 0) + 1
    }
    t.equal(bad, 0, `${kind}: ${buf.length * 8} bit flips, each refused: ${JSON.stringify(counts)}`)
    t.ok((counts.ECORRUPT as number) > buf.length * 4, 'most flips fail a checksum')
  }
})

const block = (h: Parameters<typeof rawHeader>[0] = {}): Buffer => rawHeader({ size: 4096, ...h })

void t.test('record placement rules, each refused with its message', (t) => {
  const digest = rawHeader({ kind: StreamKind.DIGEST, size: 8192, blockSize: 4096 })
  const sums = (offset: number, length: number) => ({
    type: 'SUMS',
    offset,
    length,
    payload: Buffer.alloc(Math.ceil(length / 4096) * 8),
  })
  const delta = rawHeader({ kind: StreamKind.DELTA, size: 10000, baseSize: 5000, blockSize: 4096 })
  const d = (offset: number, length: number, base?: number) => ({
    type: 'ZERO',
    offset,
    length,
    base: base === undefined ? undefined : { length: base, digest: 5n },
  })
  const cases: [Buffer, Parameters<typeof rawStream>[1], string][] = [
    [
      block(),
      [
        { offset: 1000, length: 10 },
        { offset: 500, length: 10 },
      ],
      'offset 500 comes before the end of the previous record (1010): out of order',
    ],
    [
      block(),
      [
        { offset: 0, length: 100 },
        { type: 'ZERO', offset: 99, length: 10 },
      ],
      'offset 99 comes before the end of the previous record (100): out of order',
    ],
    [
      block(),
      [
        { offset: 0, length: 100 },
        { offset: 0, length: 100 },
      ],
      'offset 0 comes before the end of the previous record (100): out of order',
    ],
    [block(), [{ offset: 4090, length: 10 }], 'bytes 4090..4100 lie beyond the image size 4096'],
    [block(), [{ type: 'ZERO', offset: 5000, length: 1 }], 'bytes 5000..5001 lie beyond the image size 4096'],
    [block({ size: 0 }), [{ type: 'ZERO', offset: 0, length: 1 }], 'bytes 0..1 lie beyond the image size 0'],
    [
      block({ flags: FLAG_FULL }),
      [{ offset: 1, length: 10 }],
      'offset 1 leaves a gap after 0 in a stream that covers every byte',
    ],
    [
      block({ flags: FLAG_FULL }),
      [
        { offset: 0, length: 100 },
        { type: 'ZERO', offset: 200, length: 100 },
      ],
      'offset 200 leaves a gap after 100 in a stream that covers every byte',
    ],
    [digest, [sums(4096, 4096)], 'offset 4096 leaves a gap after 0 in a stream that covers every byte'],
    [digest, [sums(0, 100)], 'a digest record ends inside a chunk'],
    [digest, [sums(0, 4097)], 'a digest record ends inside a chunk'],
    [delta, [d(100, 4096, 4096)], 'a delta record must cover exactly one 4096-byte chunk, not 100+4096'],
    [delta, [d(0, 100, 100)], 'a delta record must cover exactly one 4096-byte chunk, not 0+100'],
    [delta, [d(0, 8192, 4096)], 'a delta record must cover exactly one 4096-byte chunk, not 0+8192'],
    [delta, [d(8192, 1000)], 'a delta record must cover exactly one 4096-byte chunk, not 8192+1000'],
    [delta, [d(0, 4096)], 'a chunk of the base image lacks its digest'],
    [delta, [d(4096, 4096)], 'a chunk of the base image lacks its digest'],
    [delta, [d(8192, 1808, 1808)], 'a chunk past the base image carries a base digest'],
    [delta, [d(0, 4096, 4095)], 'base length 4095 does not match the base image'],
    [delta, [d(4096, 4096, 4096)], 'base length 4096 does not match the base image'],
  ]
  for (const [h, recs, message] of cases) {
    const buf = rawStream(h, recs, { size: 0 })
    const last = recs.length - 1
    const e = parseError(buf)
    t.type(e, CorruptStreamError, message)
    t.equal(e.code, 'EBADSTREAM', message)
    // The position is the start of the offending record.
    let pos = h.length
    for (const r of recs.slice(0, last)) {
      pos += RECORD_HEADER_SIZE + (r.payload?.length ?? (r.type === 'ZERO' ? 0 : Number(r.length)))
    }
    t.equal(e.message, `record ${last} at byte ${pos}: ${message}`)
    t.same((e as CorruptStreamError).position, { record: last, offset: pos })
  }
  t.end()
})

void t.test('placements that are allowed', (t) => {
  const ok = (h: Buffer, recs: Parameters<typeof rawStream>[1]): void => {
    t.equal(records(parseAll(rawStream(h, recs))).length, recs.length)
  }
  // Adjacent records, and a sparse block stream with gaps.
  ok(block(), [
    { offset: 0, length: 100 },
    { type: 'ZERO', offset: 100, length: 100 },
    { offset: 4000, length: 96 },
  ])
  ok(block({ flags: FLAG_FULL, size: 200 }), [
    { offset: 0, length: 100 },
    { type: 'ZERO', offset: 100, length: 100 },
  ])
  // A short last chunk in a digest stream, and in a delta stream, and a base smaller than one chunk.
  ok(rawHeader({ kind: StreamKind.DIGEST, size: 5000, blockSize: 4096 }), [
    { type: 'SUMS', offset: 0, length: 5000, payload: Buffer.alloc(16) },
  ])
  ok(rawHeader({ kind: StreamKind.DELTA, size: 5000, baseSize: 100, blockSize: 4096 }), [
    { type: 'ZERO', offset: 0, length: 4096, base: { length: 100, digest: 0n } },
    { offset: 4096, length: 904 },
  ])
  // Delta records may skip unchanged chunks.
  ok(rawHeader({ kind: StreamKind.DELTA, size: 12288, baseSize: 12288, blockSize: 4096 }), [
    { type: 'ZERO', offset: 8192, length: 4096, base: { length: 4096, digest: 3n } },
  ])
  t.end()
})

void t.test('end record rules: totals, coverage and image digest', (t) => {
  const h = block()
  const recs = [
    { offset: 0, length: 100 },
    { type: 'ZERO', offset: 100, length: 50 },
  ]
  const endAt = h.length + 48 + 100 + 48
  const cases: [Buffer, Parameters<typeof rawStream>[1], Parameters<typeof rawStream>[2], string][] = [
    [h, recs, { records: 3 }, 'it counts 3 records, the stream held 2'],
    [h, recs, { records: 1 }, 'it counts 1 records, the stream held 2'],
    [h, recs, { payloadBytes: 99 }, 'it counts 99 payload bytes, the stream held 100'],
    [h, recs, { dataBytes: 101 }, 'it counts 101 data bytes, the stream held 100'],
    [h, recs, { zeroBytes: 0 }, 'it counts 0 zero bytes, the stream held 50'],
    [h, recs, { size: 4095 }, 'it counts 4095 image size, the stream held 4096'],
    [h, recs, { records: 2 ** 60 }, `it counts ${2 ** 60} records, the stream held 2`],
    [block({ flags: FLAG_FULL }), recs, {}, 'the block stream covers 150 of 4096 bytes, it should cover them all'],
    [h, recs, { imageDigest: 1n }, 'block streams carry no image digest, but this end record gives one'],
    [
      rawHeader({ kind: StreamKind.UNDO, size: 4096, baseSize: 8192 }),
      recs,
      { imageDigest: 0xffn },
      'undo streams carry no image digest, but this end record gives one',
    ],
  ]
  for (const [hdr, r, end, message] of cases) {
    const e = parseError(rawStream(hdr, r, end))
    t.type(e, CorruptStreamError)
    t.equal(e.code, 'EBADSTREAM')
    t.equal(e.message, `end record at byte ${endAt}: ${message}`)
    t.same((e as CorruptStreamError).position, { record: 2, offset: endAt })
  }
  const digest = rawHeader({ kind: StreamKind.DIGEST, size: 8192, blockSize: 4096, seed: 3n })
  const sums = { type: 'SUMS', offset: 0, length: 4096, payload: Buffer.alloc(8, 1) }
  const e1 = parseError(rawStream(digest, [sums]))
  t.equal(
    e1.message,
    `end record at byte ${digest.length + 56}: the digest stream covers 4096 of 8192 bytes, it should cover them all`,
  )
  const full = { ...sums, length: 8192, payload: Buffer.alloc(16, 1) }
  t.equal(records(parseAll(rawStream(digest, [full]))).length, 1)
  const e2 = parseError(rawStream(digest, [full], { imageDigest: hash.digest(Buffer.alloc(16, 1), 4n) }))
  t.equal(e2.code, 'EBADSTREAM')
  t.equal(
    e2.message,
    `end record at byte ${digest.length + 64}: the image digest does not match the digests in the stream`,
  )
  // A delta stream's image digest is that of the new image: the parser cannot check it and passes it on.
  const delta = rawHeader({ kind: StreamKind.DELTA, size: 0, blockSize: 4096 })
  t.equal(endOf(parseAll(rawStream(delta, [], { imageDigest: 77n })))?.imageDigest, 77n)
  t.end()
})

void t.test('nothing may follow the end record', async (t) => {
  const buf = await sampleStream()
  const extra = Buffer.concat([buf, Buffer.from([0])])
  const e = parseError(extra)
  t.type(e, CorruptStreamError)
  t.equal(e.code, 'EBADSTREAM')
  t.type(e, TrailingDataError)
  t.match(e.message, `trailing data after the end record at byte ${buf.length}: the stream is whole up to there`)
  // Fed one byte at a time the extra byte is pushed after the parser is done.
  t.same(parseError(extra, Array<number>(extra.length).fill(1)), e)
  // A second whole stream behind the first.
  t.type(parseError(Buffer.concat([buf, buf])), TrailingDataError)
  const p = new StreamParser(hash)
  p.push(buf)
  while (p.next() !== null);
  t.throws(() => p.push(Buffer.from('x')), { code: 'EBADSTREAM', position: { record: 3, offset: buf.length } })
})

void t.test('a record moved, dropped, repeated or taken from another stream fails its checksum', async (t) => {
  const make = (fill: number, meta: string) =>
    build({ kind: StreamKind.BLOCK, size: 4096, blockSize: 512, metadata: { source: meta } }, async (w) => {
      await w.data(0, Buffer.alloc(100, fill))
      await w.data(512, Buffer.alloc(100, fill))
      await w.zero(1024, 100)
    })
  const a = await make(1, 'one')
  const b = await make(2, 'two')
  const c = await make(1, 'two') // same records as a, another header
  const { header, starts } = boundaries(a)
  t.same(boundaries(b), { header, starts }, 'streams a and b have the same shape')
  const cuts = [0, ...starts, a.length]
  const parts = (buf: Buffer) => cuts.slice(0, -1).map((s, i) => buf.subarray(s, cuts[i + 1]))
  const [ha, r0, r1, r2, end] = parts(a) as [Buffer, Buffer, Buffer, Buffer, Buffer]
  const [, , b1, , bend] = parts(b) as [Buffer, Buffer, Buffer, Buffer, Buffer]
  const [, c0] = parts(c) as [Buffer, Buffer]
  // Stream c's first record is that of a, byte for byte, but for its checksum.
  t.ok(c0.subarray(0, 40).equals(r0.subarray(0, 40)))
  t.ok(c0.subarray(48).equals(r0.subarray(48)))
  t.notOk(c0.equals(r0))
  const recordMismatch = (i: number, type: string, offset: number, at: number) =>
    `record ${i} (${type} at image offset ${offset}, stream byte ${at}): checksum mismatch: the record is corrupt, or out of place`
  const cases: [Buffer, string][] = [
    // Record 1 of stream b in stream a: same offsets, other data.
    [Buffer.concat([ha, r0, b1, r2, end]), recordMismatch(1, 'DATA', 512, starts[1] as number)],
    // The same record from a stream with another header.
    [Buffer.concat([ha, c0, r1, r2, end]), recordMismatch(0, 'DATA', 0, header)],
    [Buffer.concat([ha, r0, r2, end]), recordMismatch(1, 'ZERO', 1024, starts[1] as number)],
    [Buffer.concat([ha, r0, r0, r1, r2, end]), recordMismatch(1, 'DATA', 0, starts[1] as number)],
    [Buffer.concat([ha, r1, r0, r2, end]), recordMismatch(0, 'DATA', 512, header)],
    [
      Buffer.concat([ha, r0, r1, end]),
      `end record at byte ${starts[2]}: checksum mismatch (corrupt, or records are missing or out of place)`,
    ],
    // The end record of another stream.
    [
      Buffer.concat([ha, r0, r1, r2, bend]),
      `end record at byte ${starts[3]}: checksum mismatch (corrupt, or records are missing or out of place)`,
    ],
  ]
  for (const [buf, message] of cases) {
    const e = parseError(buf)
    t.type(e, CorruptStreamError)
    t.equal(e.code, 'ECORRUPT')
    t.equal(e.message, message)
  }
  t.equal(records(parseAll(Buffer.concat([ha, r0, r1, r2, end]))).length, 3, 'the pieces put back in order parse')
})
