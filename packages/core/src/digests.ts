import { randomBytes } from 'node:crypto'
import { BlockpipeError, UsageError } from './errors.js'
import { DIGEST_SIZE, KIND_NAMES, StreamKind, type StreamHeader } from './format.js'
import type { Hash64, IncrementalHash } from './hash.js'
import type { StreamRecord } from './parse.js'
import type { StreamReader } from './read.js'
import type { StreamWriter } from './write.js'

// Digest streams: one xxh64 per chunk of an image, in SUMS records of up to
// DIGESTS_PER_RECORD digests, and the digest of all those digests in the end
// record (the image digest).

export const DIGESTS_PER_RECORD = 8192
/** 4 KiB: the writes of a file system or VM guest; see bsum(1), CHUNK SIZE. */
export const DEFAULT_CHUNK_SIZE = 4 * 1024

export function parseSeed(text: string): bigint {
  if (!/^(\d+|0x[0-9a-fA-F]+)$/.test(text) || BigInt(text) >= 1n << 64n) {
    throw new UsageError(`--seed ${JSON.stringify(text)} is not a 64-bit unsigned number`)
  }
  return BigInt(text)
}

/** A seed nobody can guess, so that nobody can craft a chunk to collide with another. */
export function randomSeed(): bigint {
  return randomBytes(8).readBigUInt64LE(0)
}

const ONE = Buffer.alloc(DIGEST_SIZE)
const RECORD_BYTES = DIGESTS_PER_RECORD * DIGEST_SIZE

/** Collects chunk digests into SUMS records. */
export class DigestWriter {
  readonly #writer: StreamWriter
  readonly #blockSize: number
  readonly #image: IncrementalHash
  #digests: Buffer = Buffer.alloc(RECORD_BYTES)
  /** The buffer of the record written last: reused once the sink has let go of it. */
  #spare: Buffer | undefined
  #count = 0
  #offset = 0
  #length = 0

  constructor(hash: Hash64, writer: StreamWriter, blockSize: number, seed: bigint) {
    this.#writer = writer
    this.#blockSize = blockSize
    this.#image = hash.create(seed)
  }

  /** The digest of the next chunk, `length` bytes long (short only for the last). */
  add(digest: bigint, length: number): Promise<void> {
    ONE.writeBigUInt64LE(digest)
    return this.addMany(ONE, length)
  }

  /** The digests of the next chunks (8 bytes each), covering `length` bytes: all whole chunks but the image's last. */
  async addMany(digests: Buffer, length: number): Promise<void> {
    const B = this.#blockSize
    const count = digests.length / DIGEST_SIZE
    for (let i = 0; i < count;) {
      const n = Math.min(DIGESTS_PER_RECORD - this.#count, count - i)
      digests.copy(this.#digests, this.#count * DIGEST_SIZE, i * DIGEST_SIZE, (i + n) * DIGEST_SIZE)
      this.#count += n
      i += n
      const covered = i === count ? length - (i - n) * B : n * B
      this.#length += covered
      if (this.#count === DIGESTS_PER_RECORD || covered < n * B) await this.#flush()
    }
  }

  async #flush(): Promise<void> {
    if (this.#count === 0) return
    const full = this.#digests
    const payload = full.subarray(0, this.#count * DIGEST_SIZE)
    this.#image.update(payload)
    const offset = this.#offset
    const length = this.#length
    this.#offset += this.#length
    // Not a new buffer per record: over a large image those would pile up
    // faster than V8 collects them. The last record has had a stripe's
    // hashing to leave the sink, so this seldom waits.
    this.#digests = ((await this.#writer.settled()) ? this.#spare : undefined) ?? Buffer.allocUnsafe(RECORD_BYTES)
    this.#spare = full
    this.#count = 0
    this.#length = 0
    await this.#writer.sums(offset, length, payload)
  }

  async end(): Promise<void> {
    await this.#flush()
    await this.#writer.end(this.#image.digest())
  }
}

/** Hands out the digests of a digest stream in batches, reading records as needed. */
export class DigestReader {
  readonly header: StreamHeader
  readonly #records: AsyncGenerator<StreamRecord>
  #current: StreamRecord | undefined
  #index = 0

  constructor(reader: StreamReader) {
    if (reader.header.kind !== StreamKind.DIGEST) {
      throw new BlockpipeError(
        'EINPUT',
        `expected a digest stream (from bsum) on standard input, got a ${KIND_NAMES[reader.header.kind]} stream`,
      )
    }
    this.header = reader.header
    this.#records = reader.records()
  }

  /** Fills `into` with the digests of the next chunks, 8 bytes each, all before the header's size. */
  async fill(into: Buffer): Promise<void> {
    for (let at = 0; at < into.length;) {
      while (this.#current === undefined || this.#index * DIGEST_SIZE >= this.#current.payload.length) {
        // The parser ends a digest stream only once it has covered the header's
        // size, so a record is always there for a chunk before that size.
        this.#current = (await this.#records.next()).value as StreamRecord
        this.#index = 0
      }
      const copied = this.#current.payload.copy(into, at, this.#index * DIGEST_SIZE)
      this.#index += copied / DIGEST_SIZE
      at += copied
    }
  }

  /** Reads the rest of the stream: its end record must be there and right. */
  async finish(): Promise<void> {
    for (let r = await this.#records.next(); r.done !== true; r = await this.#records.next()) {
      // Digests of chunks past the end of the new image: a shrink.
    }
  }
}
