import t from 'tap'
import { FLAG_FULL, StreamKind } from '../../packages/core/src/format.js'
import { describeHeader, describeSummary, verifyStream } from '../../packages/core/src/inspect.js'
import type { StreamRecord } from '../../packages/core/src/parse.js'
import { build, digestStream, sampleStream } from './streams.js'

void t.test('verifyStream reads a whole stream and sums it up', async (t) => {
  const buf = await sampleStream()
  const seen: [string, number, number][] = []
  const summary = await verifyStream([buf.subarray(0, 100), buf.subarray(100)], (rec: StreamRecord, header) => {
    seen.push([rec.type, rec.offset, header.size])
  })
  t.same(seen, [
    ['DATA', 0, 4096],
    ['ZERO', 1024, 4096],
    ['DATA', 3000, 4096],
  ])
  t.equal(summary.bytes, buf.length)
  t.match(summary.header, { kind: StreamKind.BLOCK, size: 4096 })
  t.same(summary.end, { records: 3, payloadBytes: 796, dataBytes: 796, zeroBytes: 1024, size: 4096, imageDigest: 0n })
  t.same(await verifyStream([buf]), summary, 'without a callback')
  await t.rejects(verifyStream([buf.subarray(0, buf.length - 1)]), { code: 'ETRUNCATED' })
  const bad = Buffer.from(buf)
  bad.writeUInt8(bad.readUInt8(500) ^ 1, 500)
  await t.rejects(verifyStream([bad]), { code: 'ECORRUPT' })
})

void t.test('describeHeader and describeSummary, for each kind', async (t) => {
  const block = await verifyStream([
    await build(
      {
        kind: StreamKind.BLOCK,
        flags: FLAG_FULL,
        size: 3 << 20,
        blockSize: 65536,
        metadata: { producer: 'era-copy 0.1.0', source: '/dev/sdb' },
      },
      async (w) => {
        await w.data(0, Buffer.alloc(1 << 20, 1))
        await w.zero(1 << 20, 2 << 20)
      },
    ),
  ])
  t.same(describeHeader(block.header), [
    'kind:       block (full: covers the whole image), format version 1',
    'image size: 3145728 bytes (3.00 MiB)',
    'block size: 65536 bytes (64.0 KiB)',
    'producer:   era-copy 0.1.0',
    'source:     /dev/sdb',
  ])
  t.same(describeSummary(block), [
    ...describeHeader(block.header),
    'records:    2',
    'data:       1048576 bytes (1.00 MiB)',
    'zeros:      2097152 bytes (2.00 MiB)',
    `length:     ${block.bytes} bytes (1.00 MiB)`,
    'verified:   every record checksum, the order of records and the end record',
  ])
  const delta = await verifyStream([
    await build({ kind: StreamKind.DELTA, size: 4096, blockSize: 4096, seed: 42n }, async () => {}),
  ])
  t.same(describeHeader(delta.header), [
    'kind:       delta, format version 1',
    'image size: 4096 bytes (4.00 KiB)',
    'base size:  0 bytes (0 B)',
    'block size: 4096 bytes (4.00 KiB)',
    'digests:    xxh64, seed 42',
  ])
  const digest = await verifyStream([await digestStream(Buffer.alloc(100), 4096, 7n)])
  t.same(describeHeader(digest.header), [
    'kind:       digest (full: covers the whole image), format version 1',
    'image size: 100 bytes (100 B)',
    'block size: 4096 bytes (4.00 KiB)',
    'digests:    xxh64, seed 7',
  ])
  const undo = await verifyStream([
    await build(
      { kind: StreamKind.UNDO, size: 512, baseSize: 1024, blockSize: 512, metadata: { target: 't' } },
      async () => {},
    ),
  ])
  t.same(describeHeader(undo.header), [
    'kind:       undo, format version 1',
    'image size: 512 bytes (512 B)',
    'base size:  1024 bytes (1.00 KiB)',
    'block size: 512 bytes (512 B)',
    'target:     t',
  ])
})
