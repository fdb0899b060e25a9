import { ByteQueue } from './byte-queue.js'
import { CorruptStreamError, TrailingDataError, TruncatedStreamError, type StreamPosition } from './errors.js'
import {
  HEADER_SIZE,
  KIND_NAMES,
  MAGIC,
  RECORD_FLAG_BASE,
  RECORD_HEADER_SIZE,
  StreamKind,
  decodeEnd,
  decodeHeader,
  decodeHeaderFixed,
  decodeRecordHeader,
  describeForeignInput,
  isFull,
  recordChecksum,
  type EndInfo,
  type RecordHeader,
  type StreamHeader,
} from './format.js'
import type { Hash64, IncrementalHash } from './hash.js'
import { hashScratch } from './hash-memory.js'

export interface StreamRecord extends RecordHeader {
  type: 'DATA' | 'ZERO' | 'SUMS'
  payload: Buffer
  /** Records before this one, the header not counted. */
  index: number
  /** Byte offset of the record in the stream. */
  position: number
}

export type StreamItem =
  { type: 'header'; header: StreamHeader } | { type: 'record'; record: StreamRecord } | { type: 'end'; end: EndInfo }

type State = 'header' | 'metadata' | 'record' | 'payload' | 'done'

/**
 * A push parser: `push` what arrives, take whole items from `next` until it
 * returns null, and call `finish` when the input ends. Every rule of the
 * format is checked here, so what comes out of `next` can be trusted.
 */
export class StreamParser {
  readonly #hash: Hash64
  readonly #queue = new ByteQueue()
  #state: State = 'header'
  #fixed: Buffer | undefined
  #pending: RecordHeader | undefined
  #header: StreamHeader | undefined
  #position = 0
  #chain = 0n
  #index = 0
  #covered = 0
  #payloadBytes = 0
  #dataBytes = 0
  #zeroBytes = 0
  #image: IncrementalHash | undefined
  readonly #scratch: boolean
  /** With `scratch`: where payloads in pieces are gathered. */
  #gather: Buffer | undefined

  /**
   * `scratch`: a payload that arrived in pieces is gathered into memory the
   * next record reuses, for a consumer that is done with each record before
   * it asks for the next (see StreamReader.open).
   */
  constructor(hash: Hash64, scratch = false) {
    this.#hash = hash
    this.#scratch = scratch
  }

  get header(): StreamHeader | undefined {
    return this.#header
  }

  /** Bytes of the stream taken by whole items so far. */
  get position(): number {
    return this.#position
  }

  /** The checksum of the last whole item: the seed of the next record's. */
  get chain(): bigint {
    return this.#chain
  }

  /** Whole records so far, the header and end not counted. */
  get records(): number {
    return this.#index
  }

  /** End of the last record: no later record may start before it. */
  get covered(): number {
    return this.#covered
  }

  get totals(): { payloadBytes: number; dataBytes: number; zeroBytes: number } {
    return { payloadBytes: this.#payloadBytes, dataBytes: this.#dataBytes, zeroBytes: this.#zeroBytes }
  }

  get done(): boolean {
    return this.#state === 'done'
  }

  /**
   * Bytes to push before `next` can move on: a source that can read exactly
   * that much (a regular file) hands every field over in one piece, uncopied.
   * After the end record, 1: any byte at all is trailing data.
   */
  get wanted(): number {
    const queued = this.#queue.length
    switch (this.#state) {
      case 'header':
        return HEADER_SIZE - queued
      case 'metadata':
        return (this.#fixed as Buffer).readUInt16LE(38) - queued
      case 'record':
        return RECORD_HEADER_SIZE - queued
      case 'payload':
        return (this.#pending as RecordHeader).payloadLength - queued
      case 'done':
        return 1
    }
  }

  /** Is the parser waiting for the payload of a record? */
  get inPayload(): boolean {
    return this.#state === 'payload'
  }

  /** Takes `chunk` without copying it: the caller must not reuse it. */
  push(chunk: Uint8Array): void {
    if (this.#state === 'done' && chunk.length > 0) throw new TrailingDataError(this.#at())
    this.#queue.push(chunk)
  }

  next(): StreamItem | null {
    for (;;) {
      switch (this.#state) {
        case 'header': {
          if (this.#queue.length < HEADER_SIZE) return null
          this.#fixed = this.#queue.shift(HEADER_SIZE)
          this.#state = 'metadata'
          break
        }
        case 'metadata': {
          const fixed = this.#fixed as Buffer
          const { metadataLength } = decodeHeaderFixed(fixed, this.#at())
          if (this.#queue.length < metadataLength) return null
          const header = decodeHeader(this.#hash, fixed, this.#queue.shift(metadataLength), this.#at())
          this.#header = header
          this.#chain = header.checksum
          this.#position = header.byteLength
          if (header.kind === StreamKind.DIGEST) this.#image = this.#hash.create(header.seed)
          this.#state = 'record'
          return { type: 'header', header }
        }
        case 'record': {
          if (this.#queue.length < RECORD_HEADER_SIZE) return null
          const buf = this.#queue.shift(RECORD_HEADER_SIZE)
          this.#pending = decodeRecordHeader(buf, this.#header as StreamHeader, this.#at())
          this.#fixed = buf
          this.#state = 'payload'
          break
        }
        case 'payload': {
          const rec = this.#pending as RecordHeader
          if (this.#queue.length < rec.payloadLength) return null
          if (this.#scratch) this.#gather = hashScratch(this.#gather, rec.payloadLength)
          const payload = this.#queue.shift(rec.payloadLength, this.#gather)
          return this.#finishRecord(rec, payload)
        }
        case 'done':
          // The end record was handed out first: what it ended is whole.
          if (this.#queue.length > 0) throw new TrailingDataError(this.#at())
          return null
      }
    }
  }

  /** Call when the input has ended; throws unless the end record was read. */
  finish(): void {
    if (this.#state === 'done') return
    const at = this.#at()
    if (this.#state === 'header' && this.#queue.length < HEADER_SIZE) {
      const head = this.#queue.peek(MAGIC.length)
      if (head.length === 0) throw new TruncatedStreamError('empty input: no stream at all', at)
      if (!MAGIC.subarray(0, head.length).equals(head)) {
        throw new CorruptStreamError('EBADSTREAM', `bad magic: ${describeForeignInput(head)}`, at)
      }
    }
    if (this.#state === 'metadata') {
      const declared = (this.#fixed as Buffer).readUInt16LE(38)
      throw new TruncatedStreamError(
        `unexpected end of data in the stream header: ${this.#queue.length} of its ${declared} bytes of metadata` +
          ' (the stream was cut, or its metadata length is corrupt)',
        at,
      )
    }
    if (this.#header === undefined) {
      throw new TruncatedStreamError('unexpected end of data in the stream header', at)
    }
    throw new TruncatedStreamError(
      `unexpected end of data: the stream was cut at byte ${this.#position + this.#partialBytes()},` +
        ` in record ${this.#index} (after ${this.#index} whole records), before its end record`,
      at,
    )
  }

  #partialBytes(): number {
    return this.#queue.length + (this.#state === 'payload' ? RECORD_HEADER_SIZE : 0)
  }

  #at(): StreamPosition {
    return { record: this.#index, offset: this.#position }
  }

  #finishRecord(rec: RecordHeader, payload: Buffer): StreamItem {
    const header = this.#header as StreamHeader
    const at = this.#at()
    const sum = recordChecksum(this.#hash, this.#fixed as Buffer, payload, this.#chain)
    if (sum !== rec.checksum) {
      throw new CorruptStreamError(
        'ECORRUPT',
        rec.type === 'END.'
          ? `end record at byte ${at.offset}: checksum mismatch (corrupt, or records are missing or out of place)`
          : `record ${at.record} (${rec.type} at image offset ${rec.offset}, stream byte ${at.offset}):` +
              ' checksum mismatch: the record is corrupt, or out of place',
        at,
      )
    }
    this.#chain = sum
    this.#position += RECORD_HEADER_SIZE + payload.length
    this.#state = 'record'
    if (rec.type === 'END.') return this.#finishEnd(header, decodeEnd(payload), at)
    this.#checkPlacement(header, rec, at)
    this.#index++
    this.#covered = rec.offset + rec.length
    this.#payloadBytes += payload.length
    if (rec.type === 'DATA') this.#dataBytes += rec.length
    else if (rec.type === 'ZERO') this.#zeroBytes += rec.length
    else this.#image?.update(payload)
    return {
      type: 'record',
      record: { ...rec, type: rec.type, payload, index: at.record, position: at.offset },
    }
  }

  #checkPlacement(header: StreamHeader, rec: RecordHeader, at: StreamPosition): void {
    const bad = (message: string): CorruptStreamError =>
      new CorruptStreamError('EBADSTREAM', `record ${at.record} at byte ${at.offset}: ${message}`, at)
    const end = rec.offset + rec.length
    if (rec.offset < this.#covered) {
      throw bad(`offset ${rec.offset} comes before the end of the previous record (${this.#covered}): out of order`)
    }
    if (end > header.size) {
      throw bad(`bytes ${rec.offset}..${end} lie beyond the image size ${header.size}`)
    }
    if ((isFull(header) || header.kind === StreamKind.DIGEST) && rec.offset !== this.#covered) {
      throw bad(`offset ${rec.offset} leaves a gap after ${this.#covered} in a stream that covers every byte`)
    }
    const B = header.blockSize
    if (header.kind === StreamKind.DIGEST) {
      if (end !== header.size && rec.length % B !== 0) throw bad('a digest record ends inside a chunk')
      return
    }
    if (header.kind !== StreamKind.DELTA) return
    if (rec.offset % B !== 0 || rec.length !== Math.min(B, header.size - rec.offset)) {
      throw bad(`a delta record must cover exactly one ${B}-byte chunk, not ${rec.offset}+${rec.length}`)
    }
    const hasBase = (rec.flags & RECORD_FLAG_BASE) !== 0
    if (hasBase !== rec.offset < header.baseSize) {
      throw bad(
        hasBase ? 'a chunk past the base image carries a base digest' : 'a chunk of the base image lacks its digest',
      )
    }
    if (hasBase && rec.baseLength !== Math.min(B, header.baseSize - rec.offset)) {
      throw bad(`base length ${rec.baseLength} does not match the base image`)
    }
  }

  #finishEnd(header: StreamHeader, end: EndInfo, at: StreamPosition): StreamItem {
    const bad = (message: string): CorruptStreamError =>
      new CorruptStreamError('EBADSTREAM', `end record at byte ${at.offset}: ${message}`, at)
    const mine: [string, number, number][] = [
      ['records', end.records, this.#index],
      ['payload bytes', end.payloadBytes, this.#payloadBytes],
      ['data bytes', end.dataBytes, this.#dataBytes],
      ['zero bytes', end.zeroBytes, this.#zeroBytes],
      ['image size', end.size, header.size],
    ]
    for (const [what, theirs, ours] of mine) {
      if (theirs !== ours) throw bad(`it counts ${theirs} ${what}, the stream held ${ours}`)
    }
    if ((isFull(header) || header.kind === StreamKind.DIGEST) && this.#covered !== header.size) {
      throw bad(
        `the ${KIND_NAMES[header.kind]} stream covers ${this.#covered} of ${header.size} bytes, it should cover them all`,
      )
    }
    if (this.#image !== undefined && this.#image.digest() !== end.imageDigest) {
      throw bad('the image digest does not match the digests in the stream')
    }
    if ((header.kind === StreamKind.BLOCK || header.kind === StreamKind.UNDO) && end.imageDigest !== 0n) {
      throw bad(`${KIND_NAMES[header.kind]} streams carry no image digest, but this end record gives one`)
    }
    this.#state = 'done'
    return { type: 'end', end }
  }
}
