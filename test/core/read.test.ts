import t from 'tap'
import { execFileSync } from 'node:child_process'
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import { CorruptStreamError, TruncatedStreamError } from '../../packages/core/src/errors.js'
import { StreamKind } from '../../packages/core/src/format.js'
import { FileSource, StreamReader } from '../../packages/core/src/read.js'
import { build, digestStream, hash, parseAll, sampleStream } from './streams.js'

async function* pieces(buf: Buffer, size: number, pulled?: { n: number }): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < buf.length; at += size) {
    if (pulled) pulled.n += Math.min(size, buf.length - at)
    await Promise.resolve()
    yield new Uint8Array(buf.subarray(at, at + size))
  }
}

void t.test('reads a stream from an async source, a sync iterable and a Node readable', async (t) => {
  const buf = await sampleStream()
  const sources = [
    () => pieces(buf, 1),
    () => pieces(buf, 1000),
    () => [buf],
    () => [buf.subarray(0, 10), Buffer.alloc(0), buf.subarray(10)],
    () => Readable.from([buf.subarray(0, 500), buf.subarray(500)]),
  ]
  for (const source of sources) {
    const r = await StreamReader.open(source(), hash)
    t.match(r.header, { kind: StreamKind.BLOCK, size: 4096, blockSize: 512, metadata: { producer: 'test' } })
    t.equal(r.end, undefined, 'no end before the records are read')
    const seen: [string, number, number][] = []
    const it = r.records()
    let next = await it.next()
    for (; next.done !== true; next = await it.next())
      seen.push([next.value.type, next.value.offset, next.value.length])
    t.same(seen, [
      ['DATA', 0, 700],
      ['ZERO', 1024, 1024],
      ['DATA', 3000, 96],
    ])
    t.same(next.value, { records: 3, payloadBytes: 796, dataBytes: 796, zeroBytes: 1024, size: 4096, imageDigest: 0n })
    t.same(r.end, next.value)
    t.equal(r.parser.position, buf.length)
  }
})

void t.test('the hash is loaded when none is given', async (t) => {
  const r = await StreamReader.open([await digestStream(Buffer.alloc(5000, 1), 4096, 3n)])
  const recs = []
  for await (const rec of r.records()) recs.push(rec)
  t.equal(recs.length, 1)
  t.equal(r.end?.records, 1)
})

void t.test('input is pulled only as fast as records are consumed', async (t) => {
  const buf = await build({ kind: StreamKind.BLOCK, size: 1 << 20, blockSize: 4096 }, async (w) => {
    for (let i = 0; i < 16; i++) await w.data(i * 65536, Buffer.alloc(65536, i))
  })
  const pulled = { n: 0 }
  const r = await StreamReader.open(pieces(buf, 1024, pulled), hash)
  t.ok(pulled.n < 1024 + r.header.byteLength, `opening read ${pulled.n} bytes: the header`)
  const it = r.records()
  const first = await it.next()
  t.equal(first.done, false)
  t.ok(pulled.n < 65536 + 48 + 2048 + r.header.byteLength, `one record read ${pulled.n} bytes, not the stream`)
  for (let rec = await it.next(); rec.done !== true; rec = await it.next());
  t.equal(pulled.n, buf.length)
})

void t.test('a cut, empty or corrupt source rejects, where it is met', async (t) => {
  const buf = await sampleStream()
  await t.rejects(StreamReader.open([], hash), {
    name: 'TruncatedStreamError',
    message: 'empty input: no stream at all',
  })
  await t.rejects(StreamReader.open([buf.subarray(0, 30)], hash), TruncatedStreamError)
  await t.rejects(StreamReader.open(pieces(Buffer.from('<blocks>\n</blocks>\n'), 3), hash), {
    code: 'EBADSTREAM',
    message: /XML text/,
  })
  // Cut inside the last DATA record: the first records come out, then the error.
  const cut = await StreamReader.open(pieces(buf.subarray(0, buf.length - 100), 7), hash)
  const got: string[] = []
  await t.rejects(
    (async () => {
      for await (const rec of cut.records()) got.push(rec.type)
    })(),
    { code: 'ETRUNCATED', message: /the stream was cut at byte/ },
  )
  t.same(got, ['DATA', 'ZERO'])
  t.equal(cut.end, undefined)
  // A corrupt byte in the offset of the ZERO record.
  const bad = Buffer.from(buf)
  const at = bad.length - 96 - 144 - 48 + 9
  bad.writeUInt8(bad.readUInt8(at) ^ 0x10, at)
  const r = await StreamReader.open([bad], hash)
  const got2: string[] = []
  await t.rejects(
    (async () => {
      for await (const rec of r.records()) got2.push(rec.type)
    })(),
    { name: 'CorruptStreamError', code: 'ECORRUPT', position: { record: 1, offset: bad.length - 96 - 144 - 48 } },
  )
  t.same(got2, ['DATA'])
  // Bytes after the end record are found even after the end record was yielded.
  const r2 = await StreamReader.open(pieces(Buffer.concat([buf, Buffer.from('x')]), 1), hash)
  const got3: string[] = []
  await t.rejects(
    (async () => {
      for await (const rec of r2.records()) got3.push(rec.type)
    })(),
    {
      name: 'TrailingDataError',
      code: 'EBADSTREAM',
      message: `trailing data after the end record at byte ${buf.length}`,
    },
  )
  t.same(got3, ['DATA', 'ZERO', 'DATA'])
  t.ok(r2.end, 'the end record was read before the extra byte')
})

void t.test('pieces gathered into scratch memory: one buffer for every payload, checked as any', async (t) => {
  const buf = await sampleStream()
  const expected = parseAll(buf).flatMap((i) =>
    i.type === 'record' && i.record.payload.length > 0 ? [i.record.payload.toString('hex')] : [],
  )
  const pieces = (data: Buffer) =>
    Array.from({ length: Math.ceil(data.length / 7) }, (_, i) => data.subarray(i * 7, i * 7 + 7))
  const r = await StreamReader.open(pieces(buf), hash, true)
  const seen: string[] = []
  const memories = new Set<ArrayBufferLike>()
  for await (const rec of r.records()) {
    if (rec.payload.length === 0) continue
    // Read at once: the next record may reuse the memory.
    seen.push(rec.payload.toString('hex'))
    memories.add(rec.payload.buffer)
  }
  t.ok(r.end, 'read to its end record')
  t.same(seen, expected)
  t.equal(memories.size, 1, 'one buffer for every payload')
  const flipped = Buffer.from(buf)
  // A byte of the second DATA payload.
  const at = buf.lastIndexOf(Buffer.from(expected[1] as string, 'hex')) + 50
  flipped.writeUInt8(flipped.readUInt8(at) ^ 1, at)
  const bad = await StreamReader.open(pieces(flipped), hash, true)
  await t.rejects(
    (async () => {
      for await (const rec of bad.records()) void rec
    })(),
    CorruptStreamError,
  )
})

void t.test('a regular file is read with exactly the reads the parser asks for', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'read-file-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const buf = await sampleStream()
  const open = (name: string, data: Buffer): number => {
    writeFileSync(join(dir, name), data)
    const fd = openSync(join(dir, name), 'r')
    t.teardown(() => closeSync(fd))
    return fd
  }
  const read = async (fd: number, scratch: boolean) => {
    const r = await StreamReader.open(new FileSource(fd), hash, scratch)
    const payloads: Buffer[] = []
    for await (const rec of r.records()) if (rec.payload.length > 0) payloads.push(rec.payload)
    return { r, payloads }
  }
  const whole = await read(open('whole.bps', buf), false)
  t.ok(whole.r.end, 'read to its end record')
  t.equal(whole.payloads.length, 2)
  const expected = parseAll(buf).flatMap((i) =>
    i.type === 'record' && i.record.payload.length > 0 ? [i.record.payload] : [],
  )
  t.same(whole.payloads, expected, 'payloads of their own, intact after later reads')
  const scratch = await read(open('scratch.bps', buf), true)
  t.ok(scratch.r.end)
  t.equal(scratch.payloads[0]?.buffer, scratch.payloads[1]?.buffer, 'with scratch, one buffer for every payload')
  await t.rejects(read(open('joined.bps', Buffer.concat([buf, buf])), true), { name: 'TrailingDataError' })
  await t.rejects(read(open('cut.bps', buf.subarray(0, buf.length - 10)), true), TruncatedStreamError)
  // Iterated, it gives pieces of up to 1 MiB, as any other source.
  const big = Buffer.alloc((1 << 20) + 5, 3)
  const pieces = [...new FileSource(open('big', big))]
  t.same(
    pieces.map((p) => p.length),
    [1 << 20, 5],
  )
  t.same([...new FileSource(open('empty', Buffer.alloc(0)))], [])
})

void t.test('a pipe found non-blocking: what it holds, then the rest as a stream', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'read-pipe-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const fifo = join(dir, 'fifo')
  execFileSync('mkfifo', [fifo])
  const fd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  const writer = openSync(fifo, 'w')
  t.teardown(() => {
    closeSync(fd)
    closeSync(writer)
  })
  const buf = await sampleStream()
  const cut = 100
  writeSync(writer, buf.subarray(0, cut))
  let rested = 0
  const source = new FileSource(fd, () => {
    rested++
    return [buf.subarray(cut)]
  })
  const r = await StreamReader.open(source, hash, true)
  const types: string[] = []
  for await (const rec of r.records()) types.push(rec.type)
  t.ok(r.end, 'read to its end record')
  t.same(types, ['DATA', 'ZERO', 'DATA'])
  t.equal(rested, 1)
  t.ok(source.blocked)
  // Without a stream to go on with, the read fails as the system said.
  const bare = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK)
  t.teardown(() => closeSync(bare))
  t.throws(() => new FileSource(bare).read(10), { code: 'EAGAIN' })
})
