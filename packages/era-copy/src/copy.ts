import {
  HashMemory,
  MAX_RECORD_LENGTH,
  RECORD_HEADER_SIZE,
  isZero,
  readExactly,
  type Device,
  type EraRangeWriter,
  type Progress,
  type StreamWriter,
} from '@blockpipe/core'

// Reads the listed extents of the device and writes them as records: runs of
// data as DATA records of up to DATA_RECORD bytes, runs of zeros as ZERO
// records. Zeros are found per SLICE, so a sparse region inside a changed
// block still travels as a ZERO record. A DATA record is read in slices into
// one buffer in the hasher's memory, after room for its header: it is
// checked for zeros while in the CPU cache, hashed where it lies and written
// whole, and the buffer is reused once the writer has let go of it.

export const SLICE = 64 * 1024
export const DATA_RECORD = 1024 * 1024

export interface Extent {
  offset: number
  length: number
}

/** What the copier writes to: a StreamWriter, or `eraRangeRecords` for the old format. */
export type RecordWriter = Pick<StreamWriter, 'dataInPlace' | 'zero' | 'settled'>

/** The writer of the old format, which hashes nothing, fed as a StreamWriter: each payload is copied. */
export function eraRangeRecords(writer: EraRangeWriter): RecordWriter {
  return {
    dataInPlace: (offset, record) => writer.data(offset, Buffer.from(record.subarray(RECORD_HEADER_SIZE))),
    zero: (offset, length) => writer.zero(offset, length),
    // Every payload is copied: nothing is held.
    settled: () => Promise.resolve(true),
  }
}

export class ExtentCopier {
  readonly #dev: Device
  readonly #writer: RecordWriter
  readonly #progress: Progress | undefined
  /** Room for a record header, then the payload being gathered, where it is hashed. */
  readonly #record = new HashMemory(RECORD_HEADER_SIZE + DATA_RECORD).view(0, RECORD_HEADER_SIZE + DATA_RECORD)
  /** Whether the writer may still hold the record last written. */
  #held = false
  #fill = 0
  #dataAt = 0
  #zeroAt = 0
  #zeroLength = 0
  #dataBytes = 0

  constructor(dev: Device, writer: RecordWriter, progress?: Progress) {
    this.#dev = dev
    this.#writer = writer
    this.#progress = progress
  }

  /** Bytes sent as DATA records so far (the rest of what was copied went as ZERO records). */
  get dataBytes(): number {
    return this.#dataBytes
  }

  async copy(extent: Extent): Promise<void> {
    const end = extent.offset + extent.length
    for (let pos = extent.offset; pos < end;) {
      const n = Math.min(SLICE, end - pos, DATA_RECORD - this.#fill)
      if (this.#held) {
        await this.#writer.settled()
        this.#held = false
      }
      const at = RECORD_HEADER_SIZE + this.#fill
      const slice = this.#record.subarray(at, at + n)
      readExactly(this.#dev, this.#record, n, pos, at)
      if (isZero(slice)) {
        await this.#flushData()
        if (this.#zeroLength === 0) this.#zeroAt = pos
        this.#zeroLength += n
        if (this.#zeroLength + SLICE > MAX_RECORD_LENGTH) await this.#flushZero()
      } else {
        await this.#flushZero()
        if (this.#fill === 0) this.#dataAt = pos
        this.#fill += n
        if (this.#fill === DATA_RECORD) await this.#flushData()
      }
      pos += n
      this.#progress?.update(pos)
    }
    await this.#flushData()
    await this.#flushZero()
  }

  async #flushData(): Promise<void> {
    if (this.#fill === 0) return
    const record = this.#record.subarray(0, RECORD_HEADER_SIZE + this.#fill)
    this.#dataBytes += this.#fill
    this.#fill = 0
    this.#held = true
    await this.#writer.dataInPlace(this.#dataAt, record)
  }

  async #flushZero(): Promise<void> {
    if (this.#zeroLength === 0) return
    const length = this.#zeroLength
    this.#zeroLength = 0
    await this.#writer.zero(this.#zeroAt, length)
  }
}
