import t from 'tap'
import { StreamKind } from '../../packages/core/src/format.js'
import {
  describeRecord,
  headerJson,
  hex64,
  inspectStream,
  recordDigests,
  recordJson,
  summaryJson,
} from '../../packages/core/src/inspect.js'
import type { StreamRecord } from '../../packages/core/src/parse.js'
import { build, digestStream } from '../core/streams.js'

// The listing helpers of inspect.ts that bpdump prints, on streams built here.

void t.test('64-bit values: 16 hex digits, the seed in decimal, none of them rounded', async (t) => {
  t.equal(hex64(0n), '0000000000000000')
  t.equal(hex64(0xabcn), '0000000000000abc')
  t.equal(hex64(0xffffffffffffffffn), 'ffffffffffffffff')
  const seed = 0xfedcba9876543210n
  const records: StreamRecord[] = []
  const summary = await inspectStream([await digestStream(Buffer.alloc(5000, 3), 4096, seed)], {
    record: (rec) => {
      records.push(rec)
    },
  })
  const header = headerJson(summary.header)
  t.equal(header.seed, '18364758544493064720', 'a decimal string, exact')
  t.match(header.checksum, /^[0-9a-f]{16}$/)
  const rec = records[0] as StreamRecord
  t.same(
    recordDigests(rec, summary.header).map((d) => [d.chunk, d.offset, d.length]),
    [
      [0, 0, 4096],
      [1, 4096, 904],
    ],
  )
  t.match(recordJson(rec), { record: 'SUMS', digests: 2, payloadLength: 16, checksum: hex64(rec.checksum) })
  t.match(summaryJson(summary), { type: 'end', imageDigest: hex64(summary.end.imageDigest), verified: true })
})

void t.test('a header visitor sees the header before any record; a block stream has no image digest', async (t) => {
  const seen: string[] = []
  const summary = await inspectStream(
    [
      await build({ kind: StreamKind.BLOCK, size: 8192, blockSize: 4096 }, async (w) => {
        await w.data(4096, Buffer.alloc(10, 1))
      }),
    ],
    {
      header: (h) => {
        seen.push(`header ${h.size}`)
      },
      record: async (rec) => {
        await Promise.resolve()
        seen.push(describeRecord(rec))
      },
    },
  )
  t.same(seen, ['header 8192', `record 0 at byte 56: DATA offset 4096 length 10 (10 B), payload 10`])
  t.notOk('imageDigest' in summaryJson(summary))
  // Nothing to see: an empty visitor, an empty stream.
  const empty = await inspectStream(
    [await build({ kind: StreamKind.BLOCK, size: 0, blockSize: 4096 }, async () => {})],
    {},
  )
  t.same(empty.end, { records: 0, payloadBytes: 0, dataBytes: 0, zeroBytes: 0, size: 0, imageDigest: 0n })
  t.equal(empty.bytes, 56 + 48 + 48, 'header and end record')
})
