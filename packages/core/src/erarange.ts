import { ByteQueue } from './byte-queue.js'
import { CorruptStreamError, TruncatedStreamError, type StreamPosition } from './errors.js'
import { describeForeignInput } from './format.js'
import type { ByteSource } from './read.js'
import type { ByteSink } from './write.js'
import { zeros } from './zero.js'

// The stream of the original era_copy (C), which its era_apply reads:
// records until the end of the input, each
//
//   magic "ERARANGE"(8)  offset(int64)  length(int64)  data(length)
//
// integers little-endian (the host order of the x86 machines it ran on).
// There is no header, no checksum and no end marker: a corrupt byte goes
// unnoticed, and so does a stream cut between two records. What can be
// checked is checked: every record starts with the magic, its fields are in
// bounds, and its data arrives whole (a cut inside a record is caught).
// Records are handed on in pieces, so a record as long as a whole device
// (era_copy writes one record per era_invalidate range) takes no more memory
// than a small one. erarange-apply.ts applies it.

export const ERARANGE_MAGIC = Buffer.from('ERARANGE', 'latin1')
export const ERARANGE_HEADER_SIZE = 24
/**
 * No record may reach beyond 1 PiB: era_copy read real devices, and a field
 * that says more is corrupt (or the stream is not aligned on a record).
 */
export const ERARANGE_MAX_END = 2 ** 50
/** Record data is handed on in pieces of at most this many bytes. */
export const ERARANGE_PIECE = 1024 * 1024

/** A record header: `length` bytes for image offset `offset` follow. */
export interface EraRangeRecord {
  /** Records before this one. */
  index: number
  /** Byte offset of the record in the stream. */
  position: number
  offset: number
  length: number
}

export type EraRangeItem =
  | { type: 'record'; record: EraRangeRecord }
  /** The next piece of the current record's data, for image offset `offset`; `last` ends the record. */
  | { type: 'data'; offset: number; data: Buffer; last: boolean }

export type EraRangePiece = Extract<EraRangeItem, { type: 'data' }>

export interface EraRangeSummary {
  records: number
  /** Bytes of record data. */
  dataBytes: number
  /** End of the record reaching furthest: the size the stream needs its target to have. */
  end: number
  /** Records come in ascending order without overlaps, as era_copy writes them. */
  ascending: boolean
  /** Bytes of the stream. */
  bytes: number
}

/** Whether the first bytes of an input are (or, on a tiny input, begin) the ERARANGE magic. */
export function isEraRange(head: Uint8Array): boolean {
  const n = Math.min(head.length, ERARANGE_MAGIC.length)
  return n > 0 && ERARANGE_MAGIC.subarray(0, n).equals(head.subarray(0, n))
}

export interface EraRangeOptions {
  /** An empty input is a stream with no records, not an error. */
  acceptEmpty?: boolean
}

/**
 * A push parser for the ERARANGE format: `push` what arrives, take items from
 * `next` until it returns null, and call `finish` when the input ends.
 */
export class EraRangeParser {
  readonly #queue = new ByteQueue()
  /** An input of no bytes at all is a stream without records (the original era_copy's night without changes). */
  readonly #acceptEmpty: boolean
  /** The record whose data is being read. */
  #current: EraRangeRecord | undefined
  #left = 0
  #position = 0
  #records = 0
  #dataBytes = 0
  #end = 0
  #covered = 0
  #ascending = true

  constructor(options: EraRangeOptions = {}) {
    this.#acceptEmpty = options.acceptEmpty === true
  }

  push(chunk: Uint8Array): void {
    this.#queue.push(chunk)
  }

  get summary(): EraRangeSummary {
    return {
      records: this.#records,
      dataBytes: this.#dataBytes,
      end: this.#end,
      ascending: this.#ascending,
      bytes: this.#position,
    }
  }

  next(): EraRangeItem | null {
    const current = this.#current
    if (current === undefined) {
      if (this.#queue.length < ERARANGE_HEADER_SIZE) return null
      const record = decodeEraRangeHeader(this.#queue.shift(ERARANGE_HEADER_SIZE), this.#records, this.#position)
      this.#position += ERARANGE_HEADER_SIZE
      this.#records++
      if (record.offset < this.#covered) this.#ascending = false
      this.#covered = record.offset + record.length
      this.#end = Math.max(this.#end, this.#covered)
      if (record.length > 0) {
        this.#current = record
        this.#left = record.length
      }
      return { type: 'record', record }
    }
    // Whole pieces only: a piece cut by the end of the input is never handed on.
    const n = Math.min(this.#left, ERARANGE_PIECE)
    if (this.#queue.length < n) return null
    const offset = current.offset + current.length - this.#left
    const data = this.#queue.shift(n)
    this.#left -= n
    this.#position += n
    this.#dataBytes += n
    if (this.#left === 0) this.#current = undefined
    return { type: 'data', offset, data, last: this.#left === 0 }
  }

  /** Call when the input has ended: throws if it ended inside a record. */
  finish(): void {
    const at: StreamPosition = { record: this.#records, offset: this.#position }
    const current = this.#current
    if (current !== undefined) {
      const arrived = current.length - this.#left + this.#queue.length
      throw new TruncatedStreamError(
        `unexpected end of data: the stream was cut in record ${current.index} (image bytes ` +
          `${current.offset}..${current.offset + current.length}, from stream byte ${current.position}):` +
          ` ${arrived} of its ${current.length} bytes of data arrived`,
        { record: current.index, offset: current.position },
      )
    }
    const queued = this.#queue.length
    if (queued === 0) {
      if (this.#records === 0 && !this.#acceptEmpty) throw new TruncatedStreamError('empty input: no stream at all', at)
      return
    }
    if (!isEraRange(this.#queue.peek(ERARANGE_MAGIC.length))) {
      throw new CorruptStreamError(
        'EBADSTREAM',
        `record ${at.record} at byte ${at.offset}: the stream ends in ${queued} bytes that are not an ERARANGE` +
          ' record: it is corrupt',
        at,
      )
    }
    throw new TruncatedStreamError(
      `unexpected end of data: the stream was cut in the header of record ${at.record} at byte ${at.offset}:` +
        ` ${queued} of its ${ERARANGE_HEADER_SIZE} bytes arrived`,
      at,
    )
  }
}

function decodeEraRangeHeader(buf: Buffer, index: number, position: number): EraRangeRecord {
  const at: StreamPosition = { record: index, offset: position }
  const bad = (message: string): CorruptStreamError =>
    new CorruptStreamError('EBADSTREAM', `record ${index} at byte ${position}: ${message}`, at)
  if (!buf.subarray(0, ERARANGE_MAGIC.length).equals(ERARANGE_MAGIC)) {
    throw bad(
      index === 0
        ? `not a stream of the original era_copy: ${describeForeignInput(buf)}`
        : 'no ERARANGE magic where the next record should start: the stream is corrupt' +
            ' (or the length of the record before is wrong)',
    )
  }
  const offset = buf.readBigInt64LE(8)
  const length = buf.readBigInt64LE(16)
  if (offset < 0n || length < 0n) throw bad(`negative offset ${offset} or length ${length}: the stream is corrupt`)
  if (offset + length > BigInt(ERARANGE_MAX_END)) {
    throw bad(
      `offset ${offset} and length ${length} reach beyond 1 PiB (2^50 bytes), which no device era_copy` +
        ' read does: the stream is corrupt',
    )
  }
  return { index, position, offset: Number(offset), length: Number(length) }
}

/** Reads a whole ERARANGE stream, checking what the format lets be checked; `each` sees every record. */
export async function listEraRange(
  source: ByteSource,
  each?: (record: EraRangeRecord) => void | Promise<void>,
  options: EraRangeOptions = {},
): Promise<EraRangeSummary> {
  const parser = new EraRangeParser(options)
  for await (const item of eraRangeItems(source, parser)) {
    if (item.type === 'record') await each?.(item.record)
  }
  return parser.summary
}

/** The record headers and data pieces of an ERARANGE stream, in stream order, as `parser` finds them. */
export async function* eraRangeItems(source: ByteSource, parser: EraRangeParser): AsyncGenerator<EraRangeItem> {
  for await (const chunk of source) {
    parser.push(chunk)
    for (let item = parser.next(); item !== null; item = parser.next()) yield item
  }
  parser.finish()
}

/** At least the first `length` bytes of a source (fewer if it ends before), and the source again from its start. */
export async function peekBytes(input: ByteSource, length: number): Promise<{ head: Buffer; source: ByteSource }> {
  const it: AsyncIterator<Uint8Array> | Iterator<Uint8Array> =
    Symbol.asyncIterator in input ? input[Symbol.asyncIterator]() : input[Symbol.iterator]()
  const head: Uint8Array[] = []
  let have = 0
  let ended = false
  while (have < length) {
    const r = await it.next()
    if (r.done === true) {
      ended = true
      break
    }
    head.push(r.value)
    have += r.value.length
  }
  const bytes = Buffer.concat(head.map((c) => Buffer.from(c.buffer, c.byteOffset, c.length)))
  return { head: bytes, source: replay(head, ended ? undefined : it) }
}

async function* replay(
  head: Uint8Array[],
  rest: AsyncIterator<Uint8Array> | Iterator<Uint8Array> | undefined,
): AsyncGenerator<Uint8Array> {
  try {
    yield* head
    if (rest === undefined) return
    for (;;) {
      const r = await rest.next()
      if (r.done === true) return
      yield r.value
    }
  } finally {
    await rest?.return?.()
  }
}

/**
 * Writes the ERARANGE format, for an old era_apply: the same calls as a
 * StreamWriter. The format has no ZERO records: zeros are sent as data.
 */
export class EraRangeWriter {
  readonly #sink: ByteSink
  #bytes = 0
  #covered = 0

  constructor(sink: ByteSink) {
    this.#sink = sink
  }

  /** Bytes written. */
  get bytes(): number {
    return this.#bytes
  }

  /** The format has no header. */
  async start(): Promise<void> {}

  async data(offset: number, payload: Buffer): Promise<void> {
    await this.#header(offset, payload.length)
    await this.#put(payload)
  }

  async zero(offset: number, length: number): Promise<void> {
    await this.#header(offset, length)
    for (let done = 0; done < length; done += ERARANGE_PIECE)
      await this.#put(zeros(Math.min(ERARANGE_PIECE, length - done)))
  }

  /** Nor an end marker. */
  async end(): Promise<void> {}

  async #header(offset: number, length: number): Promise<void> {
    if (length <= 0 || offset < this.#covered || offset + length > ERARANGE_MAX_END) {
      throw new RangeError(`record ${offset}+${length} out of order or out of range`)
    }
    this.#covered = offset + length
    const buf = Buffer.alloc(ERARANGE_HEADER_SIZE)
    ERARANGE_MAGIC.copy(buf, 0)
    buf.writeBigInt64LE(BigInt(offset), 8)
    buf.writeBigInt64LE(BigInt(length), 16)
    await this.#put(buf)
  }

  async #put(buf: Buffer): Promise<void> {
    this.#bytes += buf.length
    await this.#sink.write(buf)
  }
}
