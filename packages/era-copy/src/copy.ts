import { MAX_RECORD_LENGTH, isZero, readExactly, type Device, type Progress, type StreamWriter } from '@blockpipe/core'

// Reads the listed extents of the device and writes them as records: runs of
// data as DATA records of up to DATA_RECORD bytes, runs of zeros as ZERO
// records. Zeros are found per SLICE, so a sparse region inside a changed
// block still travels as a ZERO record.

export const SLICE = 64 * 1024
export const DATA_RECORD = 1024 * 1024

export interface Extent {
  offset: number
  length: number
}

/** What the copier writes to: a StreamWriter, or an EraRangeWriter for the old format. */
export type RecordWriter = Pick<StreamWriter, 'data' | 'zero'>

export class ExtentCopier {
  readonly #dev: Device
  readonly #writer: RecordWriter
  readonly #progress: Progress | undefined
  #buf = Buffer.allocUnsafe(DATA_RECORD)
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
      const slice = this.#buf.subarray(this.#fill, this.#fill + n)
      readExactly(this.#dev, this.#buf, n, pos, this.#fill)
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
    const payload = this.#buf.subarray(0, this.#fill)
    // The sink may hold on to the payload; the next record gets a new buffer.
    this.#buf = Buffer.allocUnsafe(DATA_RECORD)
    this.#fill = 0
    this.#dataBytes += payload.length
    await this.#writer.data(this.#dataAt, payload)
  }

  async #flushZero(): Promise<void> {
    if (this.#zeroLength === 0) return
    const length = this.#zeroLength
    this.#zeroLength = 0
    await this.#writer.zero(this.#zeroAt, length)
  }
}
