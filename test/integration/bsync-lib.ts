import { readFileSync, writeFileSync } from 'node:fs'
import { loadHash } from '../../packages/core/src/hash.js'
import { StreamReader } from '../../packages/core/src/read.js'
import type { StreamRecord } from '../../packages/core/src/parse.js'
import type { EndInfo, StreamHeader } from '../../packages/core/src/format.js'
import { randomBytes } from '../lib/data.js'

// Shared by the bsum, bdiff and bpatch tests: stream parsing and images
// built from seeded data.

export const K64 = 64 * 1024

export interface Parsed {
  header: StreamHeader
  records: StreamRecord[]
  end: EndInfo
}

/** Parses a whole stream (it must be complete and valid). */
export async function parseStream(bytes: Buffer): Promise<Parsed> {
  const reader = await StreamReader.open([bytes])
  const records: StreamRecord[] = []
  for await (const rec of reader.records()) records.push(rec)
  return { header: reader.header, records, end: reader.end as EndInfo }
}

/** xxh64 of `data` with `seed`, as the tools compute chunk digests. */
export async function xxh64(data: Uint8Array, seed: bigint): Promise<bigint> {
  return (await loadHash()).digest(data, seed)
}

/** The chunk digests of `data` and its image digest (xxh64 of the digests in order). */
export async function chunkDigests(
  data: Buffer,
  blockSize: number,
  seed: bigint,
): Promise<{ digests: bigint[]; image: bigint }> {
  const hash = await loadHash()
  const digests: bigint[] = []
  const image = hash.create(seed)
  for (let at = 0; at < data.length; at += blockSize) {
    const d = hash.digest(data.subarray(at, at + blockSize), seed)
    digests.push(d)
    const raw = Buffer.alloc(8)
    raw.writeBigUInt64LE(d)
    image.update(raw)
  }
  return { digests, image: image.digest() }
}

/** A copy of `data` with `length` bytes at `offset` replaced by seeded random bytes. */
export function changed(data: Buffer, offset: number, length: number, seed: number): Buffer {
  const out = Buffer.from(data)
  randomBytes(length, seed).copy(out, offset)
  return out
}

export function put(path: string, data: Buffer): string {
  writeFileSync(path, data)
  return path
}

export function same(path: string, data: Buffer): boolean {
  return readFileSync(path).equals(data)
}

/** Offset, type and base length of each record: what a delta says, in short. */
export function summary(records: StreamRecord[]): string[] {
  return records.map((r) => `${r.type} ${r.offset}+${r.length}${r.flags & 1 ? ` base ${r.baseLength}` : ''}`)
}
