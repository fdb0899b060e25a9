// Streams for the core unit tests: built with the real writer, or crafted
// byte by byte (with valid checksums) to break one rule of the format at a time.

import { DigestWriter } from '../../packages/core/src/digests.js'
import {
  HEADER_SIZE,
  MAGIC,
  RECORD_FLAG_BASE,
  StreamKind,
  encodeEnd,
  encodeHeader,
  sealRecord,
  type EndInfo,
  type HeaderInit,
} from '../../packages/core/src/format.js'
import { loadHash } from '../../packages/core/src/hash.js'
import { StreamParser, type StreamItem } from '../../packages/core/src/parse.js'
import { StreamWriter, type ByteSink } from '../../packages/core/src/write.js'

export const hash = await loadHash()

/** Keeps everything written, in order. */
export class ArraySink implements ByteSink {
  readonly parts: Buffer[] = []

  write(chunk: Buffer): void {
    this.parts.push(chunk)
  }

  get bytes(): Buffer {
    return Buffer.concat(this.parts)
  }
}

/** A stream written by StreamWriter: `body` writes the records, then the end record is written. */
export async function build(
  init: HeaderInit,
  body: (w: StreamWriter) => Promise<void>,
  imageDigest?: bigint,
): Promise<Buffer> {
  const sink = new ArraySink()
  const w = new StreamWriter(hash, sink, init)
  await w.start()
  await body(w)
  await w.end(imageDigest)
  return sink.bytes
}

/** xxh64 digests of the chunks of `image`, as DigestWriter would store them. */
export function chunkDigests(image: Buffer, chunk: number, seed: bigint): { digest: bigint; length: number }[] {
  const out: { digest: bigint; length: number }[] = []
  for (let at = 0; at < image.length; at += chunk) {
    const part = image.subarray(at, at + chunk)
    out.push({ digest: hash.digest(part, seed), length: part.length })
  }
  return out
}

/** A digest stream of `image` written by DigestWriter. */
export async function digestStream(image: Buffer, chunk: number, seed: bigint): Promise<Buffer> {
  const sink = new ArraySink()
  const w = new StreamWriter(hash, sink, {
    kind: StreamKind.DIGEST,
    flags: 1,
    size: image.length,
    blockSize: chunk,
    seed,
  })
  await w.start()
  const d = new DigestWriter(hash, w, chunk, seed)
  for (const c of chunkDigests(image, chunk, seed)) await d.add(c.digest, c.length)
  await d.end()
  return sink.bytes
}

/**
 * The small representative stream of the truncation and bit-flip tests: a
 * block stream with metadata, two DATA records around a ZERO record, and the
 * end record.
 */
export async function sampleStream(): Promise<Buffer> {
  const data = Buffer.alloc(700)
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + 3) & 0xff
  return build(
    { kind: StreamKind.BLOCK, size: 4096, blockSize: 512, metadata: { producer: 'test', source: '/dev/x' } },
    async (w) => {
      await w.data(0, data)
      await w.zero(1024, 1024)
      await w.data(3000, data.subarray(0, 96))
    },
  )
}

/** A push parser: bytes in with push, items out with next, finish at the end. */
export interface PushParser<T> {
  push(chunk: Uint8Array): void
  next(): T | null
  finish(): void
}

/** Pushes `buf` into `p` in the pieces given (sizes; the rest in one piece), collecting items, and finishes. */
export function feedPieces<T>(p: PushParser<T>, buf: Buffer, pieces: number[] = []): T[] {
  const items: T[] = []
  let at = 0
  const feed = (n: number): void => {
    p.push(buf.subarray(at, at + n))
    at += n
    for (let item = p.next(); item !== null; item = p.next()) items.push(item)
  }
  for (const n of pieces) if (at < buf.length) feed(Math.min(n, buf.length - at))
  feed(buf.length - at)
  p.finish()
  return items
}

/** Parses `buf` pushed in the pieces given (sizes; the rest in one piece), and finishes. */
export function parseAll(buf: Buffer, pieces: number[] = []): StreamItem[] {
  return feedPieces(new StreamParser(hash), buf, pieces)
}

/** What parsing `buf` throws (fails the test with a clear error if nothing is thrown). */
export function parseError(buf: Buffer, pieces: number[] = []): Error & { code?: string } {
  try {
    parseAll(buf, pieces)
  } catch (err) {
    return err as Error & { code?: string }
  }
  throw new Error('the stream parsed without an error')
}

export interface RawHeader {
  magic?: Buffer
  version?: number
  kind?: number
  flags?: number
  size?: number | bigint
  baseSize?: number | bigint
  blockSize?: number
  hash?: number
  metadataLength?: number
  seed?: bigint
  metadata?: Buffer
  /** Leave the checksum as given instead of sealing the header. */
  checksum?: bigint
}

/** A header with any field values, sealed with a valid checksum unless `checksum` is given. */
export function rawHeader(h: RawHeader = {}): Buffer {
  const meta = h.metadata ?? Buffer.alloc(0)
  const buf = Buffer.alloc(HEADER_SIZE + meta.length)
  ;(h.magic ?? MAGIC).copy(buf, 0)
  buf.writeUInt16LE(h.version ?? 1, 8)
  buf.writeUInt16LE(h.kind ?? StreamKind.BLOCK, 10)
  buf.writeUInt32LE(h.flags ?? 0, 12)
  buf.writeBigUInt64LE(BigInt(h.size ?? 4096), 16)
  buf.writeBigUInt64LE(BigInt(h.baseSize ?? 0), 24)
  buf.writeUInt32LE(h.blockSize ?? 512, 32)
  buf.writeUInt16LE(h.hash ?? 1, 36)
  buf.writeUInt16LE(h.metadataLength ?? meta.length, 38)
  buf.writeBigUInt64LE(h.seed ?? 0n, 40)
  meta.copy(buf, HEADER_SIZE)
  buf.writeBigUInt64LE(h.checksum ?? hash.create(0n).update(buf.subarray(0, 48)).update(meta).digest(), 48)
  return buf
}

export interface RawRecord {
  type?: string
  flags?: number
  offset: number | bigint
  length: number | bigint
  payload?: Buffer
  payloadLength?: number
  base?: { length: number; digest: bigint }
  baseLength?: number
  baseDigest?: bigint
}

/**
 * A stream from a header and records, each sealed into the checksum chain.
 * `end` overrides fields of the end record, which otherwise holds the true
 * totals; null leaves the end record out.
 */
export function rawStream(
  header: Buffer,
  records: RawRecord[],
  end: Partial<EndInfo> | null = {},
  endHeader: { offset?: number; length?: number; flags?: number; baseLength?: number; baseDigest?: bigint } = {},
): Buffer {
  const parts = [header]
  let chain = header.readBigUInt64LE(48)
  const totals: EndInfo = {
    records: 0,
    payloadBytes: 0,
    dataBytes: 0,
    zeroBytes: 0,
    size: Number(header.readBigUInt64LE(16)),
    imageDigest: 0n,
  }
  const image = hash.create(header.readBigUInt64LE(40))
  const seal = (r: Required<Omit<RawRecord, 'base'>>): void => {
    const buf = Buffer.alloc(48)
    buf.write(r.type, 0, 'latin1')
    buf.writeUInt32LE(r.flags, 4)
    buf.writeBigUInt64LE(BigInt(r.offset), 8)
    buf.writeBigUInt64LE(BigInt(r.length), 16)
    buf.writeUInt32LE(r.payloadLength, 24)
    buf.writeUInt32LE(r.baseLength, 28)
    buf.writeBigUInt64LE(r.baseDigest, 32)
    chain = sealRecord(hash, buf, r.payload, chain)
    parts.push(buf, r.payload)
  }
  for (const r of records) {
    const type = r.type ?? 'DATA'
    const payload = r.payload ?? (type === 'DATA' ? Buffer.alloc(Number(r.length), 0x55) : Buffer.alloc(0))
    seal({
      type,
      flags: r.flags ?? (r.base ? RECORD_FLAG_BASE : 0),
      offset: r.offset,
      length: r.length,
      payload,
      payloadLength: r.payloadLength ?? payload.length,
      baseLength: r.baseLength ?? r.base?.length ?? 0,
      baseDigest: r.baseDigest ?? r.base?.digest ?? 0n,
    })
    totals.records++
    totals.payloadBytes += payload.length
    if (type === 'DATA') totals.dataBytes += Number(r.length)
    if (type === 'ZERO') totals.zeroBytes += Number(r.length)
    if (type === 'SUMS') image.update(payload)
  }
  if (header.readUInt16LE(10) === StreamKind.DIGEST) totals.imageDigest = image.digest()
  if (end === null) return Buffer.concat(parts)
  const payload = encodeEnd({ ...totals, ...end })
  seal({
    type: 'END.',
    flags: endHeader.flags ?? 0,
    offset: endHeader.offset ?? 0,
    length: endHeader.length ?? 0,
    payload,
    payloadLength: payload.length,
    baseLength: endHeader.baseLength ?? 0,
    baseDigest: endHeader.baseDigest ?? 0n,
  })
  return Buffer.concat(parts)
}

/** encodeHeader with the test's hash. */
export function header(init: HeaderInit): Buffer {
  return encodeHeader(hash, init)
}
