import t from 'tap'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough, Writable } from 'node:stream'
import { MAX_RECORD_LENGTH, RECORD_HEADER_SIZE, StreamKind } from '../../packages/core/src/format.js'
import { HashMemory } from '../../packages/core/src/hash-memory.js'
import { FdSink, StreamWriter, WritableSink } from '../../packages/core/src/write.js'
import { ArraySink, hash, parseAll } from './streams.js'

const blockInit = { kind: StreamKind.BLOCK, size: 1 << 30, blockSize: 4096 }

async function started(init: ConstructorParameters<typeof StreamWriter>[2] = blockInit) {
  const sink = new ArraySink()
  const w = new StreamWriter(hash, sink, init)
  await w.start()
  return { w, sink }
}

void t.test('the writer refuses a bad header', (t) => {
  const sink = new ArraySink()
  t.throws(() => new StreamWriter(hash, sink, { kind: 1, size: 0, blockSize: 0 }), RangeError)
  t.throws(() => new StreamWriter(hash, sink, { kind: 1, size: -1, blockSize: 512 }), {
    name: 'RangeError',
    message: 'bad stream header',
  })
  t.equal(sink.parts.length, 0)
  t.end()
})

void t.test('the writer refuses records out of order, overlapping or beyond the size', async (t) => {
  const { w } = await started({ kind: StreamKind.BLOCK, size: 10000, blockSize: 4096 })
  await w.data(100, Buffer.alloc(100))
  const msg = (o: number, l: number) => ({
    name: 'RangeError',
    message: `record ${o}+${l} out of order or beyond 10000`,
  })
  await t.rejects(w.data(0, Buffer.alloc(10)), msg(0, 10))
  await t.rejects(w.zero(199, 10), msg(199, 10))
  await t.rejects(w.zero(9999, 2), msg(9999, 2))
  await t.rejects(w.zero(-5, 1), msg(-5, 1))
  await w.zero(200, 9800)
  t.same(w.state.covered, 10000)
  await t.rejects(w.zero(10000, 1), msg(10000, 1))
})

void t.test('the writer refuses empty and too long records', async (t) => {
  const { w } = await started()
  const msg = (l: number) => ({ name: 'RangeError', message: `record length ${l} out of range` })
  await t.rejects(w.data(0, Buffer.alloc(0)), msg(0))
  await t.rejects(w.zero(0, 0), msg(0))
  await t.rejects(w.zero(0, -1), msg(-1))
  await t.rejects(w.zero(0, MAX_RECORD_LENGTH + 1), msg(MAX_RECORD_LENGTH + 1))
  await t.rejects(w.data(0, Buffer.alloc(MAX_RECORD_LENGTH + 1)), msg(MAX_RECORD_LENGTH + 1))
  await w.zero(0, MAX_RECORD_LENGTH)
  await w.data(MAX_RECORD_LENGTH, Buffer.alloc(MAX_RECORD_LENGTH))
  t.equal(w.state.records, 2)
  t.equal(w.bytes, 56 + 48 + 48 + MAX_RECORD_LENGTH)
})

void t.test('the writer refuses base digests outside a delta or undo, and SUMS outside a digest stream', async (t) => {
  {
    const { w } = await started({ kind: StreamKind.UNDO, size: 8192, blockSize: 4096 })
    await w.data(0, Buffer.alloc(4096), { length: 4096, digest: 1n })
    await w.zero(4096, 4096, { length: 4096, digest: 1n })
  }
  for (const kind of [StreamKind.BLOCK, StreamKind.UNDO]) {
    const { w } = await started({ kind, size: 8192, blockSize: 4096 })
    if (kind === StreamKind.BLOCK) {
      const message = 'base digest outside a delta or undo stream'
      await t.rejects(w.data(0, Buffer.alloc(4096), { length: 4096, digest: 1n }), { name: 'TypeError', message })
      await t.rejects(w.zero(0, 4096, { length: 4096, digest: 1n }), { message })
    }
    await t.rejects(w.sums(0, 4096, Buffer.alloc(8)), {
      name: 'TypeError',
      message: `a SUMS record in a stream of kind ${kind}`,
    })
  }
  const { w } = await started({ kind: StreamKind.DIGEST, size: 8192, blockSize: 4096 })
  await t.rejects(w.data(0, Buffer.alloc(4096)), { message: 'a DATA record in a stream of kind 3' })
  await t.rejects(w.zero(0, 4096), { message: 'a ZERO record in a stream of kind 3' })
  await t.rejects(w.sums(0, 4096, Buffer.alloc(16)), {
    name: 'RangeError',
    message: '16 bytes of digests for 4096 bytes',
  })
  await t.rejects(w.sums(0, 4097, Buffer.alloc(8)), { message: '8 bytes of digests for 4097 bytes' })
  await w.sums(0, 4097, Buffer.alloc(16))
  t.equal(w.state.records, 1)
})

void t.test('a digest record may cover more than the record length limit', async (t) => {
  const size = 4096 * (MAX_RECORD_LENGTH / 4096 + 1)
  const { w, sink } = await started({ kind: StreamKind.DIGEST, size, blockSize: 4096 })
  await w.sums(0, size, Buffer.alloc((size / 4096) * 8))
  await w.end(hash.digest(Buffer.alloc((size / 4096) * 8), 0n))
  t.equal(parseAll(sink.bytes).length, 3)
})

void t.test('nothing is written after the end record', async (t) => {
  const { w, sink } = await started({ kind: StreamKind.BLOCK, size: 100, blockSize: 512 })
  await w.data(0, Buffer.alloc(10))
  await w.end()
  const bytes = sink.bytes
  await t.rejects(w.data(10, Buffer.alloc(10)), { message: 'record written after the end record' })
  await t.rejects(w.zero(10, 10), { message: 'record written after the end record' })
  await t.rejects(w.end(), { message: 'end record written twice' })
  t.ok(sink.bytes.equals(bytes), 'the refused calls wrote nothing')
  t.equal(parseAll(bytes).length, 3)
})

void t.test('state, byte count and chain follow what was written', async (t) => {
  const { w, sink } = await started({ kind: StreamKind.BLOCK, size: 100, blockSize: 512, metadata: { a: 'b' } })
  t.equal(w.bytes, 60)
  t.equal(w.state.chain, sink.bytes.readBigUInt64LE(48))
  await w.data(0, Buffer.alloc(10, 1))
  await w.zero(10, 20)
  t.same(w.state, {
    chain: sink.bytes.readBigUInt64LE(sink.bytes.length - 8),
    records: 2,
    covered: 30,
    payloadBytes: 10,
    dataBytes: 10,
    zeroBytes: 20,
  })
  t.equal(w.bytes, sink.bytes.length)
  t.equal(w.bytes, 60 + 48 + 10 + 48)
  t.equal(sink.parts.length, 4, 'a ZERO record writes its header only')
})

void t.test('a resumed writer continues the chain of a stream already in the sink', async (t) => {
  const init = { kind: StreamKind.UNDO, size: 8192, baseSize: 4096, blockSize: 4096 }
  const { w, sink } = await started(init)
  await w.data(0, Buffer.alloc(100, 1))
  const saved = { ...w.state }
  const w2 = new StreamWriter(hash, sink, init, { ...saved })
  await w2.zero(100, 100)
  await w2.end()
  t.equal(w2.bytes, 48 + 48 + 48, 'no second header')
  const items = parseAll(sink.bytes)
  t.same(
    items.map((i) => i.type),
    ['header', 'record', 'record', 'end'],
  )
  t.match(items[3], { end: { records: 2, dataBytes: 100, zeroBytes: 100 } })
  // Resuming from a stale state breaks the chain, and the reader sees it.
  const again = new ArraySink()
  again.parts.push(...sink.parts.slice(0, 3))
  const w4 = new StreamWriter(hash, again, init, { ...saved, chain: 1n })
  await w4.zero(100, 100)
  await w4.end()
  t.throws(() => parseAll(again.bytes), { code: 'ECORRUPT' })
})

void t.test('WritableSink waits for drain when the writable is full', async (t) => {
  const out = new PassThrough({ highWaterMark: 16 })
  const sink = new WritableSink(out)
  t.equal(sink.write(Buffer.alloc(8)), undefined, 'room left: no waiting')
  const p = sink.write(Buffer.alloc(100))
  t.type(p, Promise, 'full: a promise')
  let resolved = false
  void (p as Promise<void>).then(() => (resolved = true))
  await new Promise((r) => setImmediate(r))
  t.equal(resolved, false, 'not before the reader drains it')
  const got: Buffer[] = []
  out.on('data', (b: Buffer) => got.push(b))
  await p
  t.equal(resolved, true)
  t.equal(Buffer.concat(got).length, 108)
  await sink.close()
})

void t.test('WritableSink.close resolves once everything is handed over', async (t) => {
  const seen: number[] = []
  const out = new Writable({
    highWaterMark: 1 << 20,
    write(chunk: Buffer, _enc, cb) {
      setTimeout(() => {
        seen.push(chunk.length)
        cb()
      }, 5)
    },
  })
  const sink = new WritableSink(out)
  await sink.write(Buffer.alloc(10))
  await sink.write(Buffer.alloc(20))
  t.same(seen, [], 'buffered, not yet written')
  await sink.close()
  t.same(seen.slice(0, 2), [10, 20])
})

void t.test('WritableSink surfaces the errors of the writable', async (t) => {
  // An error while a write waits for drain.
  const out = new PassThrough({ highWaterMark: 4 })
  const sink = new WritableSink(out)
  const p = sink.write(Buffer.alloc(10)) as Promise<void>
  out.destroy(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }))
  const broken = {
    name: 'SystemError',
    errno: 'EPIPE',
    message: 'the reading end of the output went away (broken pipe)',
  }
  await t.rejects(p, broken)
  t.throws(() => sink.write(Buffer.alloc(1)), broken, 'later writes throw it')
  await t.rejects(sink.close(), broken)

  // A write that fails after it was accepted: close() must not report success.
  const failing = new Writable({
    write(_chunk, _enc, cb) {
      setTimeout(() => cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' })), 5)
    },
  })
  const s2 = new WritableSink(failing)
  t.equal(s2.write(Buffer.alloc(3)), undefined)
  await t.rejects(s2.close(), { name: 'SystemError', errno: 'EPIPE' })
  t.throws(() => s2.write(Buffer.alloc(1)), { name: 'SystemError', errno: 'EPIPE' })

  // A writable already ended.
  const ended = new PassThrough()
  ended.resume()
  ended.end()
  const s3 = new WritableSink(ended)
  await t.rejects(s3.close(), { code: 'ERR_STREAM_WRITE_AFTER_END' })
})

void t.test('WritableSink does not wait forever on a writable closed without an error', async (t) => {
  const out = new PassThrough({ highWaterMark: 4 })
  const sink = new WritableSink(out)
  const p = sink.write(Buffer.alloc(10)) as Promise<void>
  out.destroy()
  await t.rejects(p, {
    name: 'SystemError',
    errno: 'EPIPE',
    message: 'the reading end of the output went away (broken pipe)',
  })
  t.throws(() => sink.write(Buffer.alloc(1)), { name: 'SystemError', errno: 'EPIPE' })
  await t.rejects(sink.close(), { name: 'SystemError', errno: 'EPIPE' })
})

void t.test('a whole stream through WritableSink parses', async (t) => {
  const out = new PassThrough({ highWaterMark: 64 })
  const got: Buffer[] = []
  out.on('data', (b: Buffer) => got.push(b))
  const sink = new WritableSink(out)
  const w = new StreamWriter(hash, sink, { kind: StreamKind.BLOCK, flags: 1, size: 3000, blockSize: 512 })
  await w.start()
  await w.data(0, Buffer.alloc(1000, 7))
  await w.zero(1000, 2000)
  await w.end()
  await sink.close()
  t.equal(parseAll(Buffer.concat(got)).length, 4)
})

void t.test('FdSink writes at its position, in order', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blockpipe-fdsink-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const path = join(dir, 'f')
  const fd = openSync(path, 'w+')
  const a = new FdSink(fd)
  t.equal(a.position, 0)
  a.write(Buffer.from('hello '))
  a.write(Buffer.from('world'))
  a.write(Buffer.alloc(0))
  t.equal(a.position, 11)
  const b = new FdSink(fd, 6)
  b.write(Buffer.from('WORLD!'))
  t.equal(b.fd, fd)
  t.equal(b.position, 12)
  const big = Buffer.alloc(3 << 20, 0x61)
  b.write(big)
  closeSync(fd)
  const content = readFileSync(path)
  t.equal(content.subarray(0, 12).toString(), 'hello WORLD!')
  t.equal(content.length, 12 + big.length)
  t.ok(content.subarray(12).equals(big))
  const bad = new FdSink(fd)
  t.throws(() => bad.write(Buffer.from('x')), { code: 'EBADF' }, 'a closed fd is an error, not a silent loss')
  t.end()
})

void t.test('a file on stdout that fills up: a SystemError naming standard output', async (t) => {
  // process.stdout on a file writes synchronously and throws what write(2) says.
  const full = new Writable({
    write() {
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' })
    },
  })
  const sink = new WritableSink(full)
  const message = 'cannot write standard output: no space left on the device (ENOSPC)'
  t.throws(() => sink.write(Buffer.alloc(1)), { name: 'SystemError', errno: 'ENOSPC', message })
  t.throws(() => sink.write(Buffer.alloc(1)), { name: 'SystemError', errno: 'ENOSPC' }, 'and later writes')
  await t.rejects(sink.close(), { name: 'SystemError', errno: 'ENOSPC' })
})

void t.test('FdSink names its file when the system refuses a write', (t) => {
  const bad = new FdSink(2 ** 30, 0, 'the digest file x.sum')
  t.throws(() => bad.write(Buffer.alloc(1)), {
    errno: 'EBADF',
    message: /^cannot write the digest file x.sum: bad file descriptor \(EBADF\)$/,
  })
  t.throws(() => new FdSink(2 ** 30).write(Buffer.alloc(1)), { code: 'EBADF' }, 'unnamed: the error as it is')
  t.end()
})

void t.test('a DATA record built in place is the record data() writes, in one piece', async (t) => {
  const init = { kind: StreamKind.BLOCK, size: 1 << 20, blockSize: 4096 }
  const payload = Buffer.alloc(5000)
  for (let i = 0; i < payload.length; i++) payload[i] = i & 255
  const plain = await started(init)
  await plain.w.zero(0, 100)
  await plain.w.data(100, payload)
  await plain.w.data(5100, payload.subarray(0, 1))
  await plain.w.end()

  const memory = new HashMemory(RECORD_HEADER_SIZE + payload.length)
  const room = memory.view(0, RECORD_HEADER_SIZE + payload.length)
  class SettlingSink extends ArraySink {
    settles = 0
    settled(): void {
      this.settles++
    }
  }
  for (const sink of [new ArraySink(), new SettlingSink()]) {
    const w = new StreamWriter(hash, sink, init)
    await w.start()
    await w.zero(0, 100)
    payload.copy(room, RECORD_HEADER_SIZE)
    await w.dataInPlace(100, room)
    const held = sink.parts.at(-1) as Buffer
    await w.settled()
    room.fill(0)
    payload.copy(room, RECORD_HEADER_SIZE, 0, 1)
    await w.dataInPlace(5100, room.subarray(0, RECORD_HEADER_SIZE + 1))
    await w.end()
    t.equal(held.length, RECORD_HEADER_SIZE + payload.length, 'header and payload in one write')
    if (sink instanceof SettlingSink) {
      t.equal(held.buffer, room.buffer, 'a sink that says when it lets go gets the memory itself')
      t.equal(sink.settles, 1)
      t.same(w.state, plain.w.state)
      t.equal(sink.bytes.length, plain.sink.bytes.length)
    } else {
      t.ok(sink.bytes.equals(plain.sink.bytes), 'the same bytes; a sink that keeps buffers got copies')
      t.same(parseAll(sink.bytes), parseAll(plain.sink.bytes))
    }
  }
})

void t.test('WritableSink.settled waits until nothing written is held', async (t) => {
  const done: (() => void)[] = []
  const out = new Writable({
    highWaterMark: 1 << 20,
    write(_chunk: Buffer, _enc, cb) {
      done.push(cb)
    },
  })
  const sink = new WritableSink(out)
  t.equal(sink.settled(), undefined, 'nothing written: nothing to wait for')
  await sink.write(Buffer.alloc(10))
  let settled = false
  void (sink.settled() as Promise<void>).then(() => (settled = true))
  await new Promise((r) => setImmediate(r))
  t.equal(settled, false, 'held by a write in progress')
  ;(done.shift() as () => void)()
  await new Promise((r) => setImmediate(r))
  ;(done.shift() as () => void)()
  await new Promise((r) => setImmediate(r))
  t.equal(settled, true)
  out.destroy()
  await new Promise((r) => setImmediate(r))
  t.throws(() => sink.settled(), { message: /broken pipe/ }, 'a sink that failed says so')
  const a = new FdSink(1)
  t.equal(a.settled(), undefined, 'FdSink writes synchronously')
})
