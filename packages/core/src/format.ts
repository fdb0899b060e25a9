// The blockpipe stream format, version 1. man/blockpipe-stream.5 documents it
// byte by byte; this file is its only definition in code. All integers are
// little-endian.
//
//   stream  = header record* end
//   header  = magic(8) version(2) kind(2) flags(4) size(8) base_size(8)
//             block_size(4) hash(2) meta_len(2) seed(8) checksum(8) meta
//   record  = type(4) flags(4) offset(8) length(8) payload_len(4)
//             base_len(4) base_digest(8) checksum(8) payload
//   end     = a record of type "END." whose payload holds the totals
//
// Each checksum is the xxh64 of the bytes before it (and of the payload),
// seeded with the checksum before it: the header's seeds the first record's,
// and so on. A record moved, dropped or taken from another stream fails
// where it stands, and the end record's checksum covers the whole stream.

import { CorruptStreamError, type StreamPosition } from './errors.js'
import type { Hash64 } from './hash.js'
import { HashMemory } from './hash-memory.js'

export const MAGIC = Buffer.from([0x89, 0x42, 0x50, 0x53, 0x0d, 0x0a, 0x1a, 0x0a])
export const FORMAT_VERSION = 1
export const HEADER_SIZE = 56
export const RECORD_HEADER_SIZE = 48
export const END_PAYLOAD_SIZE = 48
/** No record covers more than this many bytes or carries a larger payload. */
export const MAX_RECORD_LENGTH = 16 * 1024 * 1024
export const MAX_METADATA_LENGTH = 4096
export const MIN_BLOCK_SIZE = 512
export const MAX_BLOCK_SIZE = 1024 * 1024 * 1024
/** Digest and delta chunks are whole records, so their size has the record bound. */
export const MAX_CHUNK_SIZE = MAX_RECORD_LENGTH
export const DIGEST_SIZE = 8
export const HASH_XXH64 = 1

export const StreamKind = {
  /** Blocks of a device, from era-copy: plain writes. */
  BLOCK: 1,
  /** Changed chunks, from bdiff: each record carries the digest of what it replaces. */
  DELTA: 2,
  /** Digests of every chunk of an image, from bsum. */
  DIGEST: 3,
  /** The old contents of the regions an apply overwrote: applying it rolls the apply back. */
  UNDO: 4,
} as const
export type StreamKind = (typeof StreamKind)[keyof typeof StreamKind]

export const KIND_NAMES: Record<StreamKind, string> = {
  1: 'block',
  2: 'delta',
  3: 'digest',
  4: 'undo',
}

/** Header flag: the records cover every byte of [0, size) in order. */
export const FLAG_FULL = 1
/** Record flag: base_len and base_digest describe what the record replaces (delta) or undoes (undo). */
export const RECORD_FLAG_BASE = 1

export type RecordType = 'DATA' | 'ZERO' | 'SUMS' | 'END.'
const RECORD_TYPES: readonly RecordType[] = ['DATA', 'ZERO', 'SUMS', 'END.']

export interface StreamHeader {
  version: number
  kind: StreamKind
  flags: number
  /** Size in bytes of the image once the stream is applied. */
  size: number
  /** Delta and undo streams: the size the target has before they are applied. */
  baseSize: number
  blockSize: number
  hash: number
  /** Seed of the chunk digests (digest and delta streams). */
  seed: bigint
  metadata: Record<string, string>
  checksum: bigint
  /** Bytes the header takes in the stream, metadata included. */
  byteLength: number
}

export interface HeaderInit {
  kind: StreamKind
  flags?: number
  size: number
  baseSize?: number
  blockSize: number
  seed?: bigint
  metadata?: Record<string, string>
}

export interface RecordHeader {
  type: RecordType
  flags: number
  offset: number
  length: number
  payloadLength: number
  baseLength: number
  baseDigest: bigint
  checksum: bigint
}

export interface EndInfo {
  /** Records between the header and the end record. */
  records: number
  payloadBytes: number
  dataBytes: number
  zeroBytes: number
  size: number
  /** Digest and delta streams: xxh64 of the new image's chunk digests in order. */
  imageDigest: bigint
}

const META_KEY = /^[a-z][a-z0-9-]{0,63}$/

export function isFull(header: StreamHeader): boolean {
  return (header.flags & FLAG_FULL) !== 0
}

export function encodeHeader(hash: Hash64, init: HeaderInit): Buffer {
  const meta = encodeMetadata(init.metadata ?? {})
  const buf = Buffer.alloc(HEADER_SIZE + meta.length)
  MAGIC.copy(buf, 0)
  buf.writeUInt16LE(FORMAT_VERSION, 8)
  buf.writeUInt16LE(init.kind, 10)
  buf.writeUInt32LE(init.flags ?? 0, 12)
  buf.writeBigUInt64LE(BigInt(init.size), 16)
  buf.writeBigUInt64LE(BigInt(init.baseSize ?? 0), 24)
  buf.writeUInt32LE(init.blockSize, 32)
  buf.writeUInt16LE(HASH_XXH64, 36)
  buf.writeUInt16LE(meta.length, 38)
  buf.writeBigUInt64LE(init.seed ?? 0n, 40)
  meta.copy(buf, HEADER_SIZE)
  buf.writeBigUInt64LE(headerChecksum(hash, buf.subarray(0, 48), meta), 48)
  return buf
}

function encodeMetadata(metadata: Record<string, string>): Buffer {
  let text = ''
  for (const [key, value] of Object.entries(metadata)) {
    if (!META_KEY.test(key)) throw new TypeError(`bad metadata key ${JSON.stringify(key)}`)
    text += `${key}=${value.replace(/[\r\n]/g, ' ')}\n`
  }
  const buf = Buffer.from(text, 'utf8')
  if (buf.length > MAX_METADATA_LENGTH) throw new TypeError(`metadata too long (${buf.length} bytes)`)
  return buf
}

function headerChecksum(hash: Hash64, fixed: Uint8Array, meta: Uint8Array): bigint {
  return hash.create(0n).update(fixed).update(meta).digest()
}

/** What a stream that is not a blockpipe stream looks like, for the message. */
export function describeForeignInput(head: Buffer): string {
  const ascii = head.toString('latin1')
  if (ascii.startsWith('ERARANGE')) return 'a stream of the original era_copy (ERARANGE records)'
  if (head[0] === 0x1f && head[1] === 0x8b) return 'gzip-compressed data: add gunzip (or zcat) to the pipe'
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd-compressed data: add zstd -d to the pipe'
  if (ascii.trimStart().startsWith('<')) return 'XML text: era_invalidate output goes to era-copy, not here'
  return 'not a blockpipe stream'
}

/**
 * Checks the fixed part of a header and returns the metadata length to read
 * next. Rejects whatever a later field could not make right.
 */
export function decodeHeaderFixed(buf: Buffer, at: StreamPosition): { metadataLength: number } {
  const bad = (message: string): CorruptStreamError => new CorruptStreamError('EBADSTREAM', message, at)
  if (!buf.subarray(0, 8).equals(MAGIC)) {
    throw bad(`bad magic at the start of the stream: ${describeForeignInput(buf)}`)
  }
  const version = buf.readUInt16LE(8)
  if (version !== FORMAT_VERSION) {
    throw bad(
      version > FORMAT_VERSION
        ? `stream format version ${version} is newer than this program reads (${FORMAT_VERSION}): upgrade blockpipe`
        : `unknown stream format version ${version}`,
    )
  }
  const metadataLength = buf.readUInt16LE(38)
  if (metadataLength > MAX_METADATA_LENGTH) {
    throw bad(`header metadata of ${metadataLength} bytes exceeds the limit of ${MAX_METADATA_LENGTH}`)
  }
  return { metadataLength }
}

export function decodeHeader(hash: Hash64, fixed: Buffer, meta: Buffer, at: StreamPosition): StreamHeader {
  const bad = (message: string): CorruptStreamError => new CorruptStreamError('EBADSTREAM', message, at)
  const checksum = fixed.readBigUInt64LE(48)
  if (headerChecksum(hash, fixed.subarray(0, 48), meta) !== checksum) {
    throw new CorruptStreamError('ECORRUPT', 'stream header checksum mismatch: the header is corrupt', at)
  }
  const kind = fixed.readUInt16LE(10)
  if (!(kind in KIND_NAMES)) throw bad(`unknown stream kind ${kind}`)
  const flags = fixed.readUInt32LE(12)
  if ((flags & ~FLAG_FULL) !== 0) throw bad(`unknown header flags 0x${flags.toString(16)}`)
  const size = safeNumber(fixed.readBigUInt64LE(16), 'image size', bad)
  const baseSize = safeNumber(fixed.readBigUInt64LE(24), 'base size', bad)
  const blockSize = fixed.readUInt32LE(32)
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || blockSize % MIN_BLOCK_SIZE !== 0) {
    throw bad(`block size ${blockSize} is not a multiple of 512 between 512 bytes and 1 GiB`)
  }
  if ((kind === StreamKind.DIGEST || kind === StreamKind.DELTA) && blockSize > MAX_CHUNK_SIZE) {
    throw bad(`chunk size ${blockSize} of a ${KIND_NAMES[kind as StreamKind]} stream exceeds ${MAX_CHUNK_SIZE}`)
  }
  const hashAlgorithm = fixed.readUInt16LE(36)
  if (hashAlgorithm !== HASH_XXH64) throw bad(`unknown hash algorithm ${hashAlgorithm}`)
  if ((kind === StreamKind.BLOCK || kind === StreamKind.DIGEST) && baseSize !== 0) {
    throw bad(`a ${KIND_NAMES[kind as StreamKind]} stream has no base size, but the header gives ${baseSize}`)
  }
  return {
    version: FORMAT_VERSION,
    kind: kind as StreamKind,
    flags,
    size,
    baseSize,
    blockSize,
    hash: hashAlgorithm,
    seed: fixed.readBigUInt64LE(40),
    metadata: decodeMetadata(meta, bad),
    checksum,
    byteLength: HEADER_SIZE + meta.length,
  }
}

function decodeMetadata(meta: Buffer, bad: (m: string) => Error): Record<string, string> {
  let text: string
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(meta)
  } catch {
    throw bad('header metadata is not UTF-8 text')
  }
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    if (line === '') continue
    const eq = line.indexOf('=')
    const key = line.slice(0, Math.max(eq, 0))
    if (!META_KEY.test(key)) throw bad(`bad header metadata line ${JSON.stringify(line.slice(0, 80))}`)
    out[key] = line.slice(eq + 1)
  }
  return out
}

function safeNumber(value: bigint, what: string, bad: (m: string) => Error): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw bad(`${what} ${value} is beyond 2^53 bytes`)
  return Number(value)
}

/** The first 40 bytes of a record header; the checksum is added by `sealRecord`. */
export function encodeRecordHeader(
  type: RecordType,
  offset: number,
  length: number,
  payloadLength: number,
  base?: { length: number; digest: bigint },
): Buffer {
  const buf = Buffer.alloc(RECORD_HEADER_SIZE)
  buf.write(type, 0, 'latin1')
  buf.writeUInt32LE(base ? RECORD_FLAG_BASE : 0, 4)
  buf.writeBigUInt64LE(BigInt(offset), 8)
  buf.writeBigUInt64LE(BigInt(length), 16)
  buf.writeUInt32LE(payloadLength, 24)
  buf.writeUInt32LE(base?.length ?? 0, 28)
  buf.writeBigUInt64LE(base?.digest ?? 0n, 32)
  return buf
}

/** A payload that lies in a HashMemory is hashed there, uncopied. */
export function recordChecksum(hash: Hash64, header: Buffer, payload: Uint8Array, previous: bigint): bigint {
  const memory = HashMemory.holding(payload)
  if (memory !== undefined) return memory.hash(previous, header.subarray(0, 40), payload)
  const h = hash.create(previous).update(header.subarray(0, 40))
  if (payload.length > 0) h.update(payload)
  return h.digest()
}

/** Writes the checksum into a record header built by `encodeRecordHeader`. */
export function sealRecord(hash: Hash64, header: Buffer, payload: Uint8Array, previous: bigint): bigint {
  const sum = recordChecksum(hash, header, payload, previous)
  header.writeBigUInt64LE(sum, 40)
  return sum
}

/**
 * Decodes a record header and checks what can be checked before its payload
 * is read, so that no length from the stream is trusted for an allocation.
 */
export function decodeRecordHeader(buf: Buffer, header: StreamHeader, at: StreamPosition): RecordHeader {
  const bad = (message: string): CorruptStreamError =>
    new CorruptStreamError('EBADSTREAM', `record ${at.record} at byte ${at.offset}: ${message}`, at)
  const tag = buf.toString('latin1', 0, 4)
  const type = RECORD_TYPES.find((t) => t === tag)
  if (type === undefined) throw bad(`unknown record type ${JSON.stringify(tag)} (corrupt or not a record boundary)`)
  const offset = buf.readBigUInt64LE(8)
  const length = buf.readBigUInt64LE(16)
  const rec: RecordHeader = {
    type,
    flags: buf.readUInt32LE(4),
    offset: Number(offset),
    length: Number(length),
    payloadLength: buf.readUInt32LE(24),
    baseLength: buf.readUInt32LE(28),
    baseDigest: buf.readBigUInt64LE(32),
    checksum: buf.readBigUInt64LE(40),
  }
  if (offset > BigInt(Number.MAX_SAFE_INTEGER) || length > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw bad(`offset ${offset} or length ${length} is beyond 2^53 bytes`)
  }
  if ((rec.flags & ~RECORD_FLAG_BASE) !== 0) throw bad(`unknown record flags 0x${rec.flags.toString(16)}`)
  const digest = header.kind === StreamKind.DIGEST
  if (type === 'END.') {
    const baseSet = rec.baseLength !== 0 || rec.baseDigest !== 0n
    if (rec.payloadLength !== END_PAYLOAD_SIZE || rec.offset !== 0 || rec.length !== 0 || rec.flags !== 0 || baseSet) {
      throw bad('malformed end record')
    }
    return rec
  }
  if (digest !== (type === 'SUMS')) {
    throw bad(`a ${type} record does not belong in a ${KIND_NAMES[header.kind]} stream`)
  }
  if (rec.length === 0) throw bad('empty record')
  if (type === 'SUMS') {
    const count = Math.ceil(rec.length / header.blockSize)
    if (rec.payloadLength !== count * DIGEST_SIZE || rec.payloadLength > MAX_RECORD_LENGTH) {
      throw bad(`digest record of ${rec.length} bytes carries ${rec.payloadLength} bytes of digests`)
    }
  } else {
    if (rec.length > MAX_RECORD_LENGTH) {
      throw bad(`record length ${rec.length} exceeds the format's limit of ${MAX_RECORD_LENGTH}`)
    }
    const expected = type === 'DATA' ? rec.length : 0
    if (rec.payloadLength !== expected) {
      throw bad(`${type} record of ${rec.length} bytes declares a payload of ${rec.payloadLength}`)
    }
  }
  const hasBase = (rec.flags & RECORD_FLAG_BASE) !== 0
  // Delta records name what they replace; bound undo records what the apply they undo wrote.
  if (hasBase && header.kind !== StreamKind.DELTA && header.kind !== StreamKind.UNDO) {
    throw bad(`a ${KIND_NAMES[header.kind]} stream has no base digests`)
  }
  if (!hasBase && (rec.baseLength !== 0 || rec.baseDigest !== 0n)) throw bad('base fields set without the base flag')
  return rec
}

export function encodeEnd(end: EndInfo): Buffer {
  const buf = Buffer.alloc(END_PAYLOAD_SIZE)
  buf.writeBigUInt64LE(BigInt(end.records), 0)
  buf.writeBigUInt64LE(BigInt(end.payloadBytes), 8)
  buf.writeBigUInt64LE(BigInt(end.dataBytes), 16)
  buf.writeBigUInt64LE(BigInt(end.zeroBytes), 24)
  buf.writeBigUInt64LE(BigInt(end.size), 32)
  buf.writeBigUInt64LE(end.imageDigest, 40)
  return buf
}

export function decodeEnd(payload: Buffer): EndInfo {
  // Compared against the reader's own counts, so a value past 2^53 only needs
  // to come out different, not exact.
  const n = (at: number): number => Number(payload.readBigUInt64LE(at))
  return {
    records: n(0),
    payloadBytes: n(8),
    dataBytes: n(16),
    zeroBytes: n(24),
    size: n(32),
    imageDigest: payload.readBigUInt64LE(40),
  }
}
