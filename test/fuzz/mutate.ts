// Mutations of valid streams for the fuzz and hostile-input tests. Most
// random damage fails a checksum at once; `reseal` recomputes every checksum
// of a damaged stream so that the damage reaches the checks behind them
// (bounds, order, lengths, sizes), as a stream crafted on purpose would.

import { HEADER_SIZE, RECORD_HEADER_SIZE, recordChecksum } from '../../packages/core/src/format.js'
import { hash } from '../safety/lib.js'

export type Rand = () => number

export const int = (rand: Rand, n: number): number => Math.floor(rand() * n)
export const pick = <T>(rand: Rand, items: readonly T[]): T => items[int(rand, items.length)] as T

export interface Layout {
  /** Bytes of the header, metadata included. */
  header: number
  /** [start, end) of each record, the end record last. */
  records: [number, number][]
}

/** Where the header and records of a stream lie, read from its length fields (as far as they make sense). */
export function layout(stream: Buffer): Layout {
  const header = stream.length >= HEADER_SIZE ? HEADER_SIZE + stream.readUInt16LE(38) : stream.length
  const records: [number, number][] = []
  for (let at = header; at + RECORD_HEADER_SIZE <= stream.length;) {
    const end = at + RECORD_HEADER_SIZE + stream.readUInt32LE(at + 24)
    if (end > stream.length) break
    records.push([at, end])
    at = end
  }
  return { header: Math.min(header, stream.length), records }
}

/** Recomputes the header checksum and the chain of record checksums, in place. */
export function reseal(stream: Buffer): Buffer {
  if (stream.length < HEADER_SIZE) return stream
  const { header, records } = layout(stream)
  if (header > stream.length) return stream
  let chain = hash.create(0n).update(stream.subarray(0, 48)).update(stream.subarray(HEADER_SIZE, header)).digest()
  stream.writeBigUInt64LE(chain, 48)
  for (const [start, end] of records) {
    const head = stream.subarray(start, start + RECORD_HEADER_SIZE)
    chain = recordChecksum(hash, head, stream.subarray(start + RECORD_HEADER_SIZE, end), chain)
    head.writeBigUInt64LE(chain, 40)
  }
  return stream
}

/** Lengths and offsets a hostile stream would try. */
export const HUGE = [
  0n,
  1n,
  511n,
  4096n,
  16n * 1024n * 1024n,
  16n * 1024n * 1024n + 1n,
  2n ** 31n,
  2n ** 32n - 1n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 63n,
  2n ** 64n - 1n,
] as const

/** A header or record field: byte offset and width. */
const HEADER_FIELDS: [number, 2 | 4 | 8][] = [
  [8, 2], // version
  [10, 2], // kind
  [12, 4], // flags
  [16, 8], // size
  [24, 8], // base size
  [32, 4], // block size
  [36, 2], // hash
  [38, 2], // metadata length
  [40, 8], // seed
]
const RECORD_FIELDS: [number, 2 | 4 | 8][] = [
  [0, 4], // type
  [4, 4], // flags
  [8, 8], // offset
  [16, 8], // length
  [24, 4], // payload length
  [28, 4], // base length
  [32, 8], // base digest
]

export function setField(buf: Buffer, at: number, width: 2 | 4 | 8, value: bigint): void {
  const v = value & ((1n << BigInt(width * 8)) - 1n)
  if (width === 8) buf.writeBigUInt64LE(v, at)
  else if (width === 4) buf.writeUInt32LE(Number(v), at)
  else buf.writeUInt16LE(Number(v), at)
}

export const MUTATIONS = {
  /** The stream cut anywhere. */
  truncate: (s: Buffer, rand: Rand): Buffer => s.subarray(0, int(rand, s.length)),
  /** A few bits flipped anywhere. */
  flip: (s: Buffer, rand: Rand): Buffer => {
    const out = Buffer.from(s)
    for (let n = 1 + int(rand, 4); n > 0; n--) {
      const at = int(rand, out.length)
      out.writeUInt8(out.readUInt8(at) ^ (1 << int(rand, 8)), at)
    }
    return out
  },
  /** Bits flipped, then every checksum made right again. */
  flipSealed: (s: Buffer, rand: Rand): Buffer => reseal(MUTATIONS.flip(s, rand)),
  /** Bytes of another stream copied over or into this one. */
  splice: (s: Buffer, rand: Rand, other: Buffer): Buffer => {
    const from = int(rand, other.length)
    const piece = other.subarray(from, from + int(rand, 300))
    const at = int(rand, s.length)
    const rest = rand() < 0.5 ? at : at + piece.length
    return Buffer.concat([s.subarray(0, at), piece, s.subarray(rest)])
  },
  /** Whole records dropped, repeated, reordered or taken from another stream, checksums made right. */
  records: (s: Buffer, rand: Rand, other: Buffer): Buffer => {
    const mine = layout(s)
    const theirs = layout(other)
    const pool = [
      ...mine.records.map(([a, b]) => s.subarray(a, b)),
      ...theirs.records.map(([a, b]) => other.subarray(a, b)),
    ]
    const picked: Buffer[] = []
    for (let n = int(rand, mine.records.length + 3); n > 0; n--) picked.push(pick(rand, pool))
    return reseal(Buffer.concat([s.subarray(0, mine.header), ...picked]))
  },
  /** A length, offset or other field of a record set to a huge or edge value, checksums made right (or not). */
  recordField: (s: Buffer, rand: Rand): Buffer => {
    const out = Buffer.from(s)
    const { records } = layout(out)
    if (records.length === 0) return out
    const [start] = pick(rand, records)
    const [at, width] = pick(rand, RECORD_FIELDS)
    setField(out, start + at, width, rand() < 0.8 ? pick(rand, HUGE) : BigInt(int(rand, 2 ** 32)))
    return rand() < 0.8 ? reseal(out) : out
  },
  /** A header field set to a huge or edge value, checksums made right. */
  headerField: (s: Buffer, rand: Rand): Buffer => {
    const out = Buffer.from(s)
    if (out.length < HEADER_SIZE) return out
    const [at, width] = pick(rand, HEADER_FIELDS)
    setField(out, at, width, rand() < 0.7 ? pick(rand, HUGE) : BigInt(int(rand, 8)))
    return reseal(out)
  },
  /** Random bytes, sometimes behind our magic. */
  garbage: (s: Buffer, rand: Rand): Buffer => {
    const junk = Buffer.alloc(int(rand, 2000))
    for (let i = 0; i < junk.length; i++) junk[i] = int(rand, 256)
    return rand() < 0.5 ? Buffer.concat([s.subarray(0, 8), junk]) : junk
  },
  /** Bytes after the end record. */
  trailing: (s: Buffer, rand: Rand): Buffer => Buffer.concat([s, Buffer.alloc(1 + int(rand, 100), int(rand, 256))]),
} as const

export type MutationName = keyof typeof MUTATIONS
export const MUTATION_NAMES = Object.keys(MUTATIONS) as MutationName[]

/** One to three mutations in a row. */
export function mutate(s: Buffer, rand: Rand, other: Buffer): { bytes: Buffer; how: MutationName[] } {
  const how: MutationName[] = []
  let bytes = s
  for (let n = 1 + int(rand, rand() < 0.7 ? 1 : 3); n > 0; n--) {
    const name = pick(rand, MUTATION_NAMES)
    how.push(name)
    bytes = MUTATIONS[name](bytes, rand, other)
  }
  return { bytes, how }
}
