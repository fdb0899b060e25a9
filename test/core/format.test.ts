import t from 'tap'
import { CorruptStreamError } from '../../packages/core/src/errors.js'
import {
  END_PAYLOAD_SIZE,
  FLAG_FULL,
  HEADER_SIZE,
  MAGIC,
  MAX_BLOCK_SIZE,
  MAX_METADATA_LENGTH,
  MAX_RECORD_LENGTH,
  RECORD_HEADER_SIZE,
  StreamKind,
  decodeEnd,
  decodeHeader,
  decodeHeaderFixed,
  decodeRecordHeader,
  describeForeignInput,
  encodeEnd,
  encodeHeader,
  encodeRecordHeader,
  isFull,
  recordChecksum,
  sealRecord,
} from '../../packages/core/src/format.js'
import { hash, parseAll, parseError, rawHeader, rawStream } from './streams.js'

const at = { record: 0, offset: 0 }
const TWO53 = 2n ** 53n

/** The error a stream made of this header (and an empty body) is rejected with. */
function headerError(h: Parameters<typeof rawHeader>[0]): Error & { code?: string } {
  // The header is refused before the end record is looked at.
  return parseError(rawStream(rawHeader(h), [], { size: 0 }))
}

void t.test('a header round-trips through encode and decode, metadata included', (t) => {
  for (const kind of [StreamKind.BLOCK, StreamKind.DELTA, StreamKind.DIGEST, StreamKind.UNDO]) {
    const base = kind === StreamKind.DELTA || kind === StreamKind.UNDO ? 12345 : 0
    const init = {
      kind,
      flags: FLAG_FULL,
      size: 2 ** 53 - 1,
      baseSize: base,
      blockSize: 65536,
      seed: 0xfedcba9876543210n,
      metadata: { producer: 'bsum 1.0', 'source-2': 'é/dev/sda ünïcode', empty: '', eq: 'a=b=c' },
    }
    const buf = encodeHeader(hash, init)
    const meta = buf.subarray(HEADER_SIZE)
    t.ok(buf.subarray(0, 8).equals(MAGIC))
    t.same(decodeHeaderFixed(buf.subarray(0, HEADER_SIZE), at), { metadataLength: meta.length })
    const h = decodeHeader(hash, buf.subarray(0, HEADER_SIZE), meta, at)
    t.same(h, {
      version: 1,
      kind,
      flags: FLAG_FULL,
      size: 2 ** 53 - 1,
      baseSize: base,
      blockSize: 65536,
      hash: 1,
      seed: 0xfedcba9876543210n,
      metadata: init.metadata,
      checksum: buf.readBigUInt64LE(48),
      byteLength: buf.length,
    })
    t.equal(isFull(h), true)
  }
  const plain = encodeHeader(hash, { kind: StreamKind.BLOCK, size: 0, blockSize: 512 })
  t.equal(plain.length, HEADER_SIZE, 'no metadata, no bytes for it')
  const h = decodeHeader(hash, plain, Buffer.alloc(0), at)
  t.same(h.metadata, {})
  t.equal(h.flags, 0)
  t.equal(h.seed, 0n)
  t.equal(h.baseSize, 0)
  t.equal(isFull(h), false)
  t.end()
})

void t.test('metadata values lose their line breaks; bad keys and oversize metadata are refused', (t) => {
  const buf = encodeHeader(hash, { kind: 1, size: 0, blockSize: 512, metadata: { note: 'a\nb\r\nc' } })
  t.same(decodeHeader(hash, buf.subarray(0, HEADER_SIZE), buf.subarray(HEADER_SIZE), at).metadata, {
    note: 'a b  c',
  })
  for (const key of ['Upper', '1digit', 'has space', 'under_score', '', 'a'.repeat(65), 'x=y']) {
    t.throws(() => encodeHeader(hash, { kind: 1, size: 0, blockSize: 512, metadata: { [key]: 'v' } }), {
      name: 'TypeError',
      message: `bad metadata key ${JSON.stringify(key)}`,
    })
  }
  t.ok(encodeHeader(hash, { kind: 1, size: 0, blockSize: 512, metadata: { ['a'.repeat(64)]: 'v' } }))
  // key=value\n: 1 + 1 + value + 1 bytes.
  const fits = { k: 'v'.repeat(MAX_METADATA_LENGTH - 3) }
  t.equal(encodeHeader(hash, { kind: 1, size: 0, blockSize: 512, metadata: fits }).length, HEADER_SIZE + 4096)
  t.throws(() => encodeHeader(hash, { kind: 1, size: 0, blockSize: 512, metadata: { k: 'v'.repeat(4094) } }), {
    name: 'TypeError',
    message: 'metadata too long (4097 bytes)',
  })
  // Multi-byte characters count as bytes.
  t.throws(() => encodeHeader(hash, { kind: 1, size: 0, blockSize: 512, metadata: { k: 'é'.repeat(2047) } }), {
    message: 'metadata too long (4097 bytes)',
  })
  t.end()
})

void t.test('what a foreign input looks like, in words', (t) => {
  const cases: [Buffer, RegExp][] = [
    [Buffer.concat([Buffer.from('ERARANGE'), Buffer.alloc(60)]), /original era_copy \(ERARANGE records\)/],
    [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]), /gzip-compressed data: add gunzip \(or zcat\) to the pipe/],
    [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x24, 0, 0, 0]), /zstd-compressed data: add zstd -d to the pipe/],
    [Buffer.from('<blocks>\n  <range begin="0" end="3"/>\n'), /XML text: era_invalidate output goes to era-copy/],
    [Buffer.from('  \n\t<?xml version="1.0"?>'), /XML text/],
    [Buffer.from('hello world, this is text'), /^not a blockpipe stream$/],
  ]
  for (const [head, message] of cases) t.match(describeForeignInput(head), message)
  // Fewer bytes than a zstd magic: still described, not a RangeError.
  t.equal(describeForeignInput(Buffer.from('hi\n')), 'not a blockpipe stream')
  t.equal(describeForeignInput(Buffer.from([0x1f, 0x8b])), 'gzip-compressed data: add gunzip (or zcat) to the pipe')
  t.equal(describeForeignInput(Buffer.alloc(0)), 'not a blockpipe stream')
  t.end()
})

void t.test('bad magic is refused with a hint, from a long input or a short one', (t) => {
  const long = (head: Buffer): Buffer => Buffer.concat([head, Buffer.alloc(200, 0x20)])
  const cases: [Buffer, string][] = [
    [Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0]), 'gzip-compressed data: add gunzip (or zcat) to the pipe'],
    [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x24, 0, 0, 0]), 'zstd-compressed data: add zstd -d to the pipe'],
    [Buffer.from('<blocks>'), 'XML text: era_invalidate output goes to era-copy, not here'],
    [Buffer.from('ERARANGE'), 'a stream of the original era_copy (ERARANGE records)'],
    [Buffer.from('GARBAGE!'), 'not a blockpipe stream'],
  ]
  for (const [head, hint] of cases) {
    const e = parseError(long(head))
    t.type(e, CorruptStreamError)
    t.equal(e.code, 'EBADSTREAM')
    t.equal(e.message, `bad magic at the start of the stream: ${hint}`)
    // Shorter than a header: seen when the input ends.
    const s = parseError(head)
    t.equal(s.code, 'EBADSTREAM')
    t.equal(s.message, `bad magic: ${hint}`)
  }
  const short = parseError(Buffer.from('hi\n'))
  t.equal(short.code, 'EBADSTREAM', 'three bytes of text are not a crash')
  t.equal(short.message, 'bad magic: not a blockpipe stream')
  // A magic mangled as text (CRLF turned into LF) is refused.
  const mangled = rawStream(rawHeader(), []).toString('latin1').replace('\r\n', '\n')
  t.match(parseError(Buffer.from(mangled, 'latin1')).message, /^bad magic/)
  t.end()
})

void t.test('header rules, each refused with its message', (t) => {
  const cases: [Parameters<typeof rawHeader>[0], string, string?][] = [
    [{ version: 2 }, 'stream format version 2 is newer than this program reads (1): upgrade blockpipe'],
    [{ version: 0 }, 'unknown stream format version 0'],
    [
      { metadataLength: MAX_METADATA_LENGTH + 1 },
      `header metadata of ${MAX_METADATA_LENGTH + 1} bytes exceeds the limit of ${MAX_METADATA_LENGTH}`,
    ],
    [{ checksum: 12345n }, 'stream header checksum mismatch: the header is corrupt', 'ECORRUPT'],
    [{ kind: 0 }, 'unknown stream kind 0'],
    [{ kind: 5 }, 'unknown stream kind 5'],
    [{ flags: 2 }, 'unknown header flags 0x2'],
    [{ flags: 0x80000001 }, 'unknown header flags 0x80000001'],
    [{ size: TWO53 }, `image size ${TWO53} is beyond 2^53 bytes`],
    [{ size: 2n ** 64n - 1n }, `image size ${2n ** 64n - 1n} is beyond 2^53 bytes`],
    [{ kind: StreamKind.DELTA, baseSize: TWO53 }, `base size ${TWO53} is beyond 2^53 bytes`],
    [{ blockSize: 0 }, 'block size 0 is not a multiple of 512 between 512 bytes and 1 GiB'],
    [{ blockSize: 256 }, 'block size 256 is not a multiple of 512 between 512 bytes and 1 GiB'],
    [{ blockSize: 1000 }, 'block size 1000 is not a multiple of 512 between 512 bytes and 1 GiB'],
    [
      { blockSize: MAX_BLOCK_SIZE + 512 },
      `block size ${MAX_BLOCK_SIZE + 512} is not a multiple of 512 between 512 bytes and 1 GiB`,
    ],
    [
      { kind: StreamKind.DIGEST, blockSize: MAX_RECORD_LENGTH + 512 },
      `chunk size ${MAX_RECORD_LENGTH + 512} of a digest stream exceeds ${MAX_RECORD_LENGTH}`,
    ],
    [
      { kind: StreamKind.DELTA, blockSize: MAX_RECORD_LENGTH * 2 },
      `chunk size ${MAX_RECORD_LENGTH * 2} of a delta stream exceeds ${MAX_RECORD_LENGTH}`,
    ],
    [{ hash: 2 }, 'unknown hash algorithm 2'],
    [{ baseSize: 4096 }, 'a block stream has no base size, but the header gives 4096'],
    [{ kind: StreamKind.DIGEST, baseSize: 1 }, 'a digest stream has no base size, but the header gives 1'],
    [{ metadata: Buffer.from([0x6b, 0x3d, 0xff, 0x0a]) }, 'header metadata is not UTF-8 text'],
    [{ metadata: Buffer.from('Key=v\n') }, 'bad header metadata line "Key=v"'],
    [{ metadata: Buffer.from('ok=1\nno equals sign\n') }, 'bad header metadata line "no equals sign"'],
    [{ metadata: Buffer.from('=v\n') }, 'bad header metadata line "=v"'],
    [{ metadata: Buffer.from(`${'x'.repeat(100)}\n`) }, `bad header metadata line "${'x'.repeat(80)}"`],
  ]
  for (const [h, message, code = 'EBADSTREAM'] of cases) {
    const e = headerError(h)
    t.type(e, CorruptStreamError, message)
    t.equal(e.code, code, message)
    t.equal(e.message, message)
    t.same((e as CorruptStreamError).position, { record: 0, offset: 0 })
  }
  t.end()
})

void t.test('header limits that are allowed', (t) => {
  const ok = (h: Parameters<typeof rawHeader>[0], size = 0): void => {
    const items = parseAll(rawStream(rawHeader({ size, ...h }), []))
    t.equal(items.length, 2)
  }
  ok({ blockSize: 512 })
  ok({ blockSize: MAX_BLOCK_SIZE })
  ok({ kind: StreamKind.DIGEST, blockSize: MAX_RECORD_LENGTH })
  ok({ size: 2n ** 53n - 1n }, 2 ** 53 - 1)
  ok({ kind: StreamKind.UNDO, baseSize: 2n ** 53n - 1n })
  ok({ kind: StreamKind.DELTA, baseSize: 1 })
  ok({ metadata: Buffer.from('a=1\n\nb=\nc=x=y') }) // blank line skipped, last line without \n
  const items = parseAll(rawStream(rawHeader({ metadata: Buffer.from('a=1\n\nb=\nc=x=y') }), []))
  t.same(items[0]?.type === 'header' && items[0].header.metadata, { a: '1', b: '', c: 'x=y' })
  // A metadata length of exactly the limit is read.
  const meta = Buffer.from(`k=${'v'.repeat(MAX_METADATA_LENGTH - 3)}\n`)
  t.equal(parseAll(rawStream(rawHeader({ metadata: meta }), [])).length, 2)
  t.end()
})

void t.test('record headers round-trip; the checksum is chained and covers the payload', (t) => {
  const hdr = decodeHeader(
    hash,
    encodeHeader(hash, { kind: StreamKind.DELTA, size: 8192, baseSize: 4096, blockSize: 4096 }),
    Buffer.alloc(0),
    at,
  )
  const buf = encodeRecordHeader('DATA', 4096, 10, 10, { length: 4096, digest: 0xdeadbeefn })
  t.equal(buf.length, RECORD_HEADER_SIZE)
  const payload = Buffer.from('0123456789')
  const sum = sealRecord(hash, buf, payload, 77n)
  t.equal(sum, recordChecksum(hash, buf, payload, 77n))
  t.equal(sum, hash.create(77n).update(buf.subarray(0, 40)).update(payload).digest())
  t.not(sum, recordChecksum(hash, buf, payload, 78n), 'the previous checksum seeds it')
  t.not(sum, recordChecksum(hash, buf, Buffer.from('0123456788'), 77n), 'the payload is covered')
  t.same(decodeRecordHeader(buf, hdr, at), {
    type: 'DATA',
    flags: 1,
    offset: 4096,
    length: 10,
    payloadLength: 10,
    baseLength: 4096,
    baseDigest: 0xdeadbeefn,
    checksum: sum,
  })
  const zero = encodeRecordHeader('ZERO', 0, 4096, 0)
  t.equal(recordChecksum(hash, zero, Buffer.alloc(0), 5n), hash.create(5n).update(zero.subarray(0, 40)).digest())
  t.same(decodeRecordHeader(zero, hdr, at), {
    type: 'ZERO',
    flags: 0,
    offset: 0,
    length: 4096,
    payloadLength: 0,
    baseLength: 0,
    baseDigest: 0n,
    checksum: 0n,
  })
  t.end()
})

void t.test('the end record payload round-trips', (t) => {
  const end = {
    records: 3,
    payloadBytes: 2 ** 40,
    dataBytes: 2 ** 40 - 5,
    zeroBytes: 99,
    size: 2 ** 53 - 1,
    imageDigest: 0xffffffffffffffffn,
  }
  const buf = encodeEnd(end)
  t.equal(buf.length, END_PAYLOAD_SIZE)
  t.same(decodeEnd(buf), end)
  t.end()
})

void t.test('record rules, each refused before the payload is read', (t) => {
  const blockHeader = rawHeader({ size: 1 << 30 })
  const digestHeader = rawHeader({ kind: StreamKind.DIGEST, size: 1 << 30, blockSize: 4096 })
  const deltaHeader = rawHeader({ kind: StreamKind.DELTA, size: 1 << 30, baseSize: 1 << 20, blockSize: 4096 })
  type Rec = Parameters<typeof rawStream>[1][number]
  const cases: [Buffer, Rec, string][] = [
    [
      blockHeader,
      { type: 'DATX', offset: 0, length: 1 },
      'unknown record type "DATX" (corrupt or not a record boundary)',
    ],
    [blockHeader, { type: 'data', offset: 0, length: 1 }, 'unknown record type "data"'],
    [blockHeader, { type: 'ZERO', offset: TWO53, length: 1 }, `offset ${TWO53} or length 1 is beyond 2^53 bytes`],
    [blockHeader, { type: 'ZERO', offset: 0, length: TWO53 }, `offset 0 or length ${TWO53} is beyond 2^53 bytes`],
    [
      blockHeader,
      { type: 'ZERO', offset: 2n ** 64n - 1n, length: 1 },
      `offset ${2n ** 64n - 1n} or length 1 is beyond 2^53 bytes`,
    ],
    [blockHeader, { type: 'ZERO', flags: 2, offset: 0, length: 1 }, 'unknown record flags 0x2'],
    [blockHeader, { type: 'ZERO', flags: 0x80000000, offset: 0, length: 1 }, 'unknown record flags 0x80000000'],
    [
      blockHeader,
      { type: 'SUMS', offset: 0, length: 4096, payload: Buffer.alloc(8) },
      'a SUMS record does not belong in a block stream',
    ],
    [
      deltaHeader,
      { type: 'SUMS', offset: 0, length: 4096, payload: Buffer.alloc(8) },
      'a SUMS record does not belong in a delta stream',
    ],
    [digestHeader, { type: 'DATA', offset: 0, length: 4096 }, 'a DATA record does not belong in a digest stream'],
    [digestHeader, { type: 'ZERO', offset: 0, length: 4096 }, 'a ZERO record does not belong in a digest stream'],
    [blockHeader, { type: 'DATA', offset: 0, length: 0 }, 'empty record'],
    [blockHeader, { type: 'ZERO', offset: 0, length: 0 }, 'empty record'],
    [digestHeader, { type: 'SUMS', offset: 0, length: 0 }, 'empty record'],
    [
      digestHeader,
      { type: 'SUMS', offset: 0, length: 4097, payload: Buffer.alloc(8) },
      'digest record of 4097 bytes carries 8 bytes of digests',
    ],
    [
      digestHeader,
      { type: 'SUMS', offset: 0, length: 4096, payload: Buffer.alloc(16) },
      'digest record of 4096 bytes carries 16 bytes of digests',
    ],
    [
      // The right count of digests, but more than a record may carry.
      digestHeader,
      {
        type: 'SUMS',
        offset: 0,
        length: 4096 * (MAX_RECORD_LENGTH / 8 + 1),
        payload: Buffer.alloc(0),
        payloadLength: MAX_RECORD_LENGTH + 8,
      },
      `digest record of ${4096 * (MAX_RECORD_LENGTH / 8 + 1)} bytes carries ${MAX_RECORD_LENGTH + 8} bytes of digests`,
    ],
    [
      blockHeader,
      {
        type: 'DATA',
        offset: 0,
        length: MAX_RECORD_LENGTH + 1,
        payload: Buffer.alloc(0),
        payloadLength: MAX_RECORD_LENGTH + 1,
      },
      `record length ${MAX_RECORD_LENGTH + 1} exceeds the format's limit of ${MAX_RECORD_LENGTH}`,
    ],
    [
      blockHeader,
      { type: 'ZERO', offset: 0, length: MAX_RECORD_LENGTH + 1 },
      `record length ${MAX_RECORD_LENGTH + 1} exceeds the format's limit of ${MAX_RECORD_LENGTH}`,
    ],
    [
      blockHeader,
      { type: 'DATA', offset: 0, length: 100, payload: Buffer.alloc(99) },
      'DATA record of 100 bytes declares a payload of 99',
    ],
    [
      // A huge declared payload is refused before anything waits for it.
      blockHeader,
      { type: 'DATA', offset: 0, length: 100, payload: Buffer.alloc(0), payloadLength: 0xffffffff },
      'DATA record of 100 bytes declares a payload of 4294967295',
    ],
    [
      blockHeader,
      { type: 'ZERO', offset: 0, length: 100, payload: Buffer.alloc(1) },
      'ZERO record of 100 bytes declares a payload of 1',
    ],
    [
      blockHeader,
      { type: 'DATA', offset: 0, length: 10, base: { length: 10, digest: 1n } },
      'a block stream has no base digests',
    ],
    [
      digestHeader,
      { type: 'SUMS', offset: 0, length: 4096, payload: Buffer.alloc(8), flags: 1 },
      'a digest stream has no base digests',
    ],
    [blockHeader, { type: 'ZERO', offset: 0, length: 10, baseLength: 10 }, 'base fields set without the base flag'],
    [blockHeader, { type: 'ZERO', offset: 0, length: 10, baseDigest: 1n }, 'base fields set without the base flag'],
    [deltaHeader, { type: 'ZERO', offset: 0, length: 4096, baseLength: 4096 }, 'base fields set without the base flag'],
  ]
  for (const [h, rec, message] of cases) {
    // The payload is left out: the rule must fire on the record header alone.
    const buf = rawStream(h, [rec], null).subarray(0, h.length + RECORD_HEADER_SIZE)
    const e = parseError(buf)
    t.equal(e.code, 'EBADSTREAM', message)
    t.match(e.message, `record 0 at byte ${h.length}: ${message}`)
    t.same((e as CorruptStreamError).position, { record: 0, offset: h.length })
  }
  t.end()
})

void t.test('a malformed end record is refused', (t) => {
  const h = rawHeader({ size: 0 })
  const cases: Parameters<typeof rawStream>[3][] = [
    { offset: 1 },
    { length: 1 },
    { flags: 1 },
    { baseLength: 1 },
    { baseDigest: 1n },
  ]
  for (const endHeader of cases) {
    const e = parseError(rawStream(h, [], {}, endHeader))
    t.equal(e.code, 'EBADSTREAM')
    t.equal(
      e.message,
      `record 0 at byte ${HEADER_SIZE}: malformed end record`,
      JSON.stringify(endHeader, (_k, v: unknown) => (typeof v === 'bigint' ? String(v) : v)),
    )
  }
  // An end record with a payload of another length.
  const buf = rawStream(h, [], {})
  buf.writeUInt32LE(40, HEADER_SIZE + 24)
  t.equal(parseError(buf).message, `record 0 at byte ${HEADER_SIZE}: malformed end record`)
  t.end()
})
