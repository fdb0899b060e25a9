import {
  FLAG_FULL,
  MAX_RECORD_LENGTH,
  StreamKind,
  StreamWriter,
  isZero,
  type ByteSink,
  type Hash64,
} from '@blockpipe/core'
import { PIECE } from './sweep.js'

// Where the restored image goes: a full block stream for era-apply, or the
// bytes themselves. Either takes the pieces the sweep hands out, in order.

export interface Output {
  start(): Promise<void>
  piece(offset: number, length: number, bytes: Buffer | null): Promise<void>
  end(): Promise<void>
}

const ZEROS = Buffer.alloc(PIECE)

/** The bytes, zeros written out: for dd, qemu-img or a pipe. */
export class RawOutput implements Output {
  readonly #sink: ByteSink

  constructor(sink: ByteSink) {
    this.#sink = sink
  }

  async start(): Promise<void> {}

  async piece(_offset: number, length: number, bytes: Buffer | null): Promise<void> {
    // The zero buffer is never written to, so the sink may keep it.
    await this.#sink.write(bytes ?? ZEROS.subarray(0, length))
  }

  async end(): Promise<void> {}
}

/**
 * A full block stream of 64 KiB blocks: a block of zeros joins a ZERO record
 * (up to the record limit), any other block is a DATA record.
 */
export class BlockOutput implements Output {
  readonly #writer: StreamWriter
  readonly #size: number
  #block: Buffer | undefined
  #blockAt = 0
  #filled = 0
  #zeroAt = 0
  #zeroLength = 0

  constructor(hash: Hash64, sink: ByteSink, size: number, metadata: Record<string, string>) {
    this.#size = size
    this.#writer = new StreamWriter(hash, sink, {
      kind: StreamKind.BLOCK,
      flags: FLAG_FULL,
      size,
      blockSize: PIECE,
      metadata,
    })
  }

  async start(): Promise<void> {
    await this.#writer.start()
  }

  /** Pieces never cross a block boundary: the sweep cuts them at multiples of PIECE. */
  async piece(offset: number, length: number, bytes: Buffer | null): Promise<void> {
    if (this.#filled === 0) {
      this.#blockAt = offset
      this.#block = Buffer.alloc(Math.min(PIECE, this.#size - offset))
    }
    const block = this.#block as Buffer
    if (bytes !== null) bytes.copy(block, this.#filled)
    this.#filled += length
    if (this.#filled < block.length) return
    this.#filled = 0
    if (isZero(block)) {
      if (this.#zeroLength + block.length > MAX_RECORD_LENGTH) await this.#flushZeros()
      if (this.#zeroLength === 0) this.#zeroAt = this.#blockAt
      this.#zeroLength += block.length
      return
    }
    await this.#flushZeros()
    await this.#writer.data(this.#blockAt, block)
  }

  async end(): Promise<void> {
    await this.#flushZeros()
    await this.#writer.end()
  }

  async #flushZeros(): Promise<void> {
    if (this.#zeroLength === 0) return
    const length = this.#zeroLength
    this.#zeroLength = 0
    await this.#writer.zero(this.#zeroAt, length)
  }
}
