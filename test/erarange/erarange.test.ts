import { Readable } from 'node:stream'
import t from 'tap'
import { sniffInput } from '../../packages/core/src/record-source.js'
import {
  ERARANGE_MAX_END,
  ERARANGE_PIECE,
  EraRangeParser,
  EraRangeWriter,
  isEraRange,
  listEraRange,
  type EraRangeItem,
  type EraRangeRecord,
} from '../../packages/core/src/erarange.js'
import { ArraySink, feedPieces } from '../core/streams.js'
import { BASIC, BASIC_IMAGE, BASIC_POSITIONS, fixture, record } from './lib.js'

// The reader of the original era_copy's stream, on hand-made fixtures
// (test/fixtures/erarange-*.bin) fed in pieces of every size, and the writer.

/** Pushes `buf` in the pieces given (sizes, then the rest), collecting items, and finishes. */
function parse(buf: Buffer, pieces: number[] = []): EraRangeItem[] {
  return feedPieces(new EraRangeParser(), buf, pieces)
}

function parseError(buf: Buffer, pieces: number[] = []): Error & { code?: string; position?: unknown } {
  try {
    parse(buf, pieces)
  } catch (err) {
    return err as Error
  }
  throw new Error('parsed without an error')
}

/** The records and the image the items describe. */
function replay(items: EraRangeItem[]): { records: EraRangeRecord[]; image: Buffer } {
  const records: EraRangeRecord[] = []
  const image = Buffer.alloc(BASIC_IMAGE.length)
  for (const item of items) {
    if (item.type === 'record') records.push(item.record)
    else item.data.copy(image, item.offset)
  }
  return { records, image }
}

void t.test('the hand-made basic stream, whole and in pieces of every size', (t) => {
  const buf = fixture('basic')
  const expected = BASIC.map(([offset, data], index) => ({
    index,
    position: BASIC_POSITIONS[index],
    offset,
    length: data.length,
  }))
  for (const piece of [buf.length, 1, 2, 3, 5, 7, 8, 13, 23, 24, 25, 100]) {
    const { records, image } = replay(parse(buf, new Array<number>(buf.length).fill(piece)))
    t.same(records, expected, `pieces of ${piece}`)
    t.ok(image.equals(BASIC_IMAGE), `pieces of ${piece}: the data lands where it belongs`)
  }
  t.end()
})

void t.test('a short read anywhere in a record header: split at every byte of every field', (t) => {
  const buf = fixture('basic')
  for (let cut = 1; cut < buf.length; cut++) {
    const { records, image } = replay(parse(buf, [cut]))
    t.equal(records.length, 3, `split at ${cut}`)
    t.ok(image.equals(BASIC_IMAGE), `split at ${cut}`)
  }
  // Three reads splitting the second header's offset and length fields.
  const { image } = replay(parse(buf, [88 + 11, 8, 1]))
  t.ok(image.equals(BASIC_IMAGE))
  t.end()
})

void t.test('data comes in whole pieces of at most 1 MiB, the last one marked', (t) => {
  const big = Buffer.alloc(ERARANGE_PIECE * 2 + 100, 7)
  const buf = Buffer.concat([record(4096, big), record(0, Buffer.from('x'))])
  const items = parse(buf, [10, 30, ERARANGE_PIECE, 5])
  const pieces = items.filter((i) => i.type === 'data')
  t.same(
    pieces.map((p) => [p.offset, p.data.length, p.last]),
    [
      [4096, ERARANGE_PIECE, false],
      [4096 + ERARANGE_PIECE, ERARANGE_PIECE, false],
      [4096 + 2 * ERARANGE_PIECE, 100, true],
      [0, 1, true],
    ],
  )
  t.end()
})

void t.test('the summary: counts, furthest byte, order, length', async (t) => {
  const seen: number[] = []
  t.same(
    await listEraRange([fixture('basic')], (r) => {
      seen.push(r.offset)
    }),
    { records: 3, dataBytes: 224, end: 8224, ascending: true, bytes: 296 },
  )
  t.same(seen, [0, 512, 8192])
  // Two streams one after another, an empty record among them.
  t.same(await listEraRange([fixture('unordered')]), {
    records: 4,
    dataBytes: 28,
    end: 4112,
    ascending: false,
    bytes: 124,
  })
  const items = parse(fixture('unordered'))
  t.same(
    items.filter((i) => i.type === 'record').map((i) => i.record.length),
    [16, 8, 0, 4],
    'an empty record is a record without data',
  )
  // An async callback makes the reading wait.
  let waited = 0
  await listEraRange([fixture('basic')], async () => {
    await new Promise((resolve) => setTimeout(resolve, 1))
    waited++
  })
  t.equal(waited, 3)
})

void t.test('cut, damaged and out-of-bounds streams are refused, saying where', (t) => {
  t.match(parseError(fixture('cut-data')), {
    code: 'ETRUNCATED',
    message:
      'unexpected end of data: the stream was cut in record 2 (image bytes 8192..8224, from stream byte 240):' +
      ' 22 of its 32 bytes of data arrived',
    position: { record: 2, offset: 240 },
  })
  // However the bytes arrived.
  t.match(parseError(fixture('cut-data'), [1, 1, 1, 200, 3]), { message: /22 of its 32 bytes of data arrived/ })
  t.match(parseError(fixture('cut-header')), {
    code: 'ETRUNCATED',
    message:
      'unexpected end of data: the stream was cut in the header of record 1 at byte 88: 11 of its 24 bytes arrived',
    position: { record: 1, offset: 88 },
  })
  t.match(parseError(fixture('bad-magic')), {
    code: 'EBADSTREAM',
    message: /^record 1 at byte 88: no ERARANGE magic where the next record should start: the stream is corrupt/,
  })
  t.match(parseError(fixture('negative')), {
    code: 'EBADSTREAM',
    message: 'record 0 at byte 0: negative offset 0 or length -1: the stream is corrupt',
  })
  const negativeOffset = record(0, Buffer.alloc(0))
  negativeOffset.writeBigInt64LE(-512n, 8)
  t.match(parseError(negativeOffset), { message: /negative offset -512 or length 0/ })
  t.match(parseError(fixture('huge')), {
    code: 'EBADSTREAM',
    message: /^record 0 at byte 0: offset 1125899906842624 and length 512 reach beyond 1 PiB \(2\^50 bytes\)/,
  })
  // Just within the bound is fine; one byte more is not.
  const edge = record(ERARANGE_MAX_END - 1, Buffer.alloc(0))
  edge.writeBigInt64LE(1n, 16)
  t.same(
    replay(parse(Buffer.concat([edge, Buffer.from('z')]))).records.map((r) => r.offset),
    [ERARANGE_MAX_END - 1],
  )
  edge.writeBigInt64LE(2n, 16)
  t.match(parseError(Buffer.concat([edge, Buffer.from('zz')])), { message: /reach beyond 1 PiB/ })
  // A huge length is refused from its header, before anything is allocated or read.
  const greedy = record(0, Buffer.alloc(0))
  greedy.writeBigInt64LE(0x7fffffffffffffffn, 16)
  t.match(parseError(greedy), { message: /reach beyond 1 PiB/ })
  t.end()
})

void t.test('what is not the format, or only a scrap of it', (t) => {
  t.match(parseError(Buffer.alloc(0)), { code: 'ETRUNCATED', message: 'empty input: no stream at all' })
  t.match(parseError(Buffer.from('ERAR')), {
    code: 'ETRUNCATED',
    message: /cut in the header of record 0 at byte 0: 4 of its 24 bytes arrived/,
  })
  t.match(parseError(Buffer.from('gzip?')), {
    code: 'EBADSTREAM',
    message: 'record 0 at byte 0: the stream ends in 5 bytes that are not an ERARANGE record: it is corrupt',
  })
  t.match(parseError(Buffer.concat([fixture('basic'), Buffer.from('junk')])), {
    code: 'EBADSTREAM',
    message: /^record 3 at byte 296: the stream ends in 4 bytes that are not an ERARANGE record/,
  })
  t.match(parseError(Buffer.concat([fixture('basic'), Buffer.from('ERA')])), {
    code: 'ETRUNCATED',
    message: /cut in the header of record 3 at byte 296: 3 of its 24 bytes/,
  })
  const gzip = Buffer.alloc(24)
  gzip[0] = 0x1f
  gzip[1] = 0x8b
  t.match(parseError(gzip), {
    code: 'EBADSTREAM',
    message: /^record 0 at byte 0: not a stream of the original era_copy: gzip-compressed data/,
  })
  t.equal(isEraRange(Buffer.from('ERARANGE and more')), true)
  t.equal(isEraRange(Buffer.from('ERA')), true, 'a scrap of the magic')
  t.equal(isEraRange(Buffer.from('ERAX')), false)
  t.equal(isEraRange(Buffer.alloc(0)), false)
  t.end()
})

async function collect(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = []
  for await (const chunk of source) parts.push(chunk)
  return Buffer.concat(parts)
}

void t.test('sniffing the first bytes loses none of them', async (t) => {
  const basic = fixture('basic')
  const block = Buffer.from([0x89, 0x42, 0x50, 0x53, 0x0d, 0x0a, 0x1a, 0x0a, 1, 2, 3])
  const cases: [string, Uint8Array[], boolean][] = [
    ['one piece', [basic], true],
    ['byte by byte', [...basic].map((b) => Buffer.from([b])), true],
    ['a blockpipe stream', [block.subarray(0, 3), block.subarray(3)], false],
    ['a scrap of the magic', [Buffer.from('ERARANG')], false],
    ['an empty input', [], false],
    ['empty pieces first', [Buffer.alloc(0), new Uint8Array(basic)], true],
  ]
  for (const [name, chunks, legacy] of cases) {
    const sync = await sniffInput(chunks)
    t.equal(sync.format === 'erarange', legacy, name)
    t.ok((await collect(sync.source)).equals(Buffer.concat(chunks)), `${name}: every byte, in order`)
    const stream = await sniffInput(
      Readable.from(
        chunks.map((c) => Buffer.from(c)),
        { objectMode: true },
      ),
    )
    t.equal(stream.format === 'erarange', legacy, `${name} (a Readable)`)
    t.ok((await collect(stream.source)).equals(Buffer.concat(chunks)), `${name} (a Readable)`)
  }
})

void t.test('a reader that stops early releases the input', async (t) => {
  let released = false
  async function* input(): AsyncGenerator<Uint8Array> {
    try {
      for (let i = 0; i < 100; i++) yield await Promise.resolve(Buffer.from('ERARANGE'))
    } finally {
      released = true
    }
  }
  const { source } = await sniffInput(input())
  for await (const chunk of source) {
    t.equal(chunk.length, 8)
    break
  }
  t.equal(released, true)
})

void t.test('the writer: ERARANGE records, zeros sent as data, order and bounds enforced', async (t) => {
  const sink = new ArraySink()
  const w = new EraRangeWriter(sink)
  await w.start()
  await w.data(0, Buffer.from('hello'))
  await w.zero(4096, ERARANGE_PIECE + 10)
  await w.data(4096 + ERARANGE_PIECE + 10, Buffer.from('!'))
  await w.end()
  const bytes = sink.bytes
  t.equal(w.bytes, bytes.length)
  t.equal(bytes.length, 3 * 24 + 5 + ERARANGE_PIECE + 10 + 1)
  const { records } = replay(parse(bytes))
  t.same(
    records.map((r) => [r.offset, r.length]),
    [
      [0, 5],
      [4096, ERARANGE_PIECE + 10],
      [4096 + ERARANGE_PIECE + 10, 1],
    ],
  )
  const zeros = parse(bytes).filter((i) => i.type === 'data' && i.offset >= 4096 && i.data.length > 1)
  t.ok(
    zeros.every((i) => i.type === 'data' && i.data.every((b) => b === 0)),
    'the zeros travel as data bytes',
  )
  t.ok(bytes.subarray(0, 29).equals(record(0, Buffer.from('hello'))), 'byte for byte the hand-made layout')
  await t.rejects(w.data(0, Buffer.from('x')), RangeError, 'out of order')
  await t.rejects(w.zero(ERARANGE_MAX_END, 0), RangeError, 'empty')
  await t.rejects(w.zero(ERARANGE_MAX_END - 1, 2), RangeError, 'beyond 1 PiB')
})
