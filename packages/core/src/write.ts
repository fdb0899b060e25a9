import { writeSync } from 'node:fs'
import type { Writable } from 'node:stream'
import {
  DIGEST_SIZE,
  MAX_RECORD_LENGTH,
  RECORD_HEADER_SIZE,
  StreamKind,
  encodeEnd,
  encodeHeader,
  encodeRecordHeader,
  sealRecord,
  type HeaderInit,
  type RecordType,
} from './format.js'
import type { Hash64 } from './hash.js'
import { writeError } from './system-errors.js'

/**
 * Where a stream goes. A write may keep the buffer: never reuse it, unless
 * the sink has `settled` and it has resolved since that write.
 */
export interface ByteSink {
  write(chunk: Buffer): Promise<void> | void
  /** Resolves once the sink holds none of the buffers written to it. */
  settled?(): Promise<void> | void
}

/**
 * A Node writable (stdout, a socket) with back-pressure and its errors
 * surfaced, as a SystemError naming `what` when the system refused a write.
 */
export class WritableSink implements ByteSink {
  readonly #out: Writable
  readonly #what: string
  #error: Error | undefined
  #waiting: { resolve: () => void; reject: (e: Error) => void } | undefined

  constructor(out: Writable, what = 'standard output') {
    this.#out = out
    this.#what = what
    out.on('error', (err: Error) => {
      this.#error = writeError(err, what)
      this.#waiting?.reject(this.#error)
    })
    // Destroyed without an error, a writable never drains nor calls back.
    out.on('close', () => {
      this.#error ??= writeError(
        Object.assign(new Error('the output was closed before the stream was written whole'), { code: 'EPIPE' }),
        what,
      )
      this.#waiting?.reject(this.#error)
    })
  }

  write(chunk: Buffer): Promise<void> | void {
    if (this.#error) throw this.#error
    let flowing: boolean
    try {
      flowing = this.#out.write(chunk)
    } catch (err) {
      // A file on stdout is written synchronously: its errors are thrown here.
      this.#error = writeError(err, this.#what)
      throw this.#error
    }
    if (flowing) return
    return new Promise((resolve, reject) => {
      this.#waiting = { resolve, reject }
      this.#out.once('drain', () => {
        this.#waiting = undefined
        resolve()
      })
    })
  }

  /** Nothing is held once everything written has been handed to the system. */
  settled(): Promise<void> | void {
    if (this.#error) throw this.#error
    if (this.#out.writableLength > 0) return this.close()
  }

  /** Resolves once everything written has been handed to the system. */
  async close(): Promise<void> {
    if (this.#error) throw this.#error
    await new Promise<void>((resolve, reject) => {
      this.#waiting = { resolve, reject }
      // A failed write calls back with its error before 'error' is emitted.
      this.#out.write('', (err) => (err ? reject(writeError(err, this.#what)) : resolve()))
    })
  }
}

/**
 * A file descriptor written synchronously, in order: the undo journal and
 * spool files. Given `what`, a refused write is a SystemError naming it.
 */
export class FdSink implements ByteSink {
  readonly fd: number
  position: number
  readonly #what: string | undefined

  constructor(fd: number, position = 0, what?: string) {
    this.fd = fd
    this.position = position
    this.#what = what
  }

  write(chunk: Buffer): void {
    let done = 0
    try {
      while (done < chunk.length) {
        done += writeSync(this.fd, chunk, done, chunk.length - done, this.position + done)
      }
    } catch (err) {
      throw this.#what === undefined ? err : writeError(err, this.#what)
    }
    this.position += chunk.length
  }

  /** Written synchronously: nothing is ever held. */
  settled(): void {}
}

export interface WriterState {
  /** Checksum of the last item written: the seed of the next record's. */
  chain: bigint
  records: number
  covered: number
  payloadBytes: number
  dataBytes: number
  zeroBytes: number
}

/**
 * Writes one stream: the header, records in order, the end record. Checks
 * what it is asked to write against the rules the reader will enforce, so a
 * bug here fails at the source rather than on the receiving side.
 */
export class StreamWriter {
  readonly #hash: Hash64
  readonly #sink: ByteSink
  readonly #init: HeaderInit
  readonly #state: WriterState
  #bytes = 0
  #ended = false

  /**
   * `resume` continues a stream whose header and first records are already
   * in the sink (an undo journal being continued); the header is not written.
   */
  constructor(hash: Hash64, sink: ByteSink, init: HeaderInit, resume?: WriterState) {
    if (init.blockSize <= 0 || init.size < 0) throw new RangeError('bad stream header')
    this.#hash = hash
    this.#sink = sink
    this.#init = init
    this.#state = resume ?? { chain: 0n, records: 0, covered: 0, payloadBytes: 0, dataBytes: 0, zeroBytes: 0 }
  }

  get state(): Readonly<WriterState> {
    return this.#state
  }

  /** Bytes written by this writer. */
  get bytes(): number {
    return this.#bytes
  }

  async start(): Promise<void> {
    const header = encodeHeader(this.#hash, this.#init)
    this.#state.chain = header.readBigUInt64LE(48)
    await this.#put(header)
  }

  async data(offset: number, payload: Buffer, base?: { length: number; digest: bigint }): Promise<void> {
    await this.#record('DATA', offset, payload.length, payload, base)
  }

  /**
   * A DATA record built in place: `record` has room for the record header,
   * then the payload. The header is written into the room and the record
   * written in one piece (hashed where it lies if it is in a HashMemory).
   * Reuse `record` only after `settled`.
   */
  async dataInPlace(offset: number, record: Buffer): Promise<void> {
    await this.#record('DATA', offset, record.length - RECORD_HEADER_SIZE, record, undefined, true)
  }

  /**
   * Resolves true once the sink holds none of the buffers written, false at
   * once for a sink that cannot tell (dataInPlace gives it copies).
   */
  async settled(): Promise<boolean> {
    if (this.#sink.settled === undefined) return false
    await this.#sink.settled()
    return true
  }

  async zero(offset: number, length: number, base?: { length: number; digest: bigint }): Promise<void> {
    await this.#record('ZERO', offset, length, EMPTY, base)
  }

  /** Digests of consecutive chunks starting at `offset`, covering `length` bytes. */
  async sums(offset: number, length: number, digests: Buffer): Promise<void> {
    if (digests.length !== Math.ceil(length / this.#init.blockSize) * DIGEST_SIZE) {
      throw new RangeError(`${digests.length} bytes of digests for ${length} bytes`)
    }
    await this.#record('SUMS', offset, length, digests, undefined)
  }

  async end(imageDigest = 0n): Promise<void> {
    if (this.#ended) throw new Error('end record written twice')
    const s = this.#state
    const payload = encodeEnd({
      records: s.records,
      payloadBytes: s.payloadBytes,
      dataBytes: s.dataBytes,
      zeroBytes: s.zeroBytes,
      size: this.#init.size,
      imageDigest,
    })
    const header = encodeRecordHeader('END.', 0, 0, payload.length, undefined)
    s.chain = sealRecord(this.#hash, header, payload, s.chain)
    this.#ended = true
    await this.#put(header)
    await this.#put(payload)
  }

  async #record(
    type: RecordType,
    offset: number,
    length: number,
    payload: Buffer,
    base: { length: number; digest: bigint } | undefined,
    inPlace = false,
  ): Promise<void> {
    const s = this.#state
    if (this.#ended) throw new Error('record written after the end record')
    if (length <= 0 || (type !== 'SUMS' && length > MAX_RECORD_LENGTH)) {
      throw new RangeError(`record length ${length} out of range`)
    }
    if (offset < s.covered || offset + length > this.#init.size) {
      throw new RangeError(`record ${offset}+${length} out of order or beyond ${this.#init.size}`)
    }
    if (base !== undefined && this.#init.kind !== StreamKind.DELTA && this.#init.kind !== StreamKind.UNDO) {
      throw new TypeError('base digest outside a delta or undo stream')
    }
    if ((type === 'SUMS') !== (this.#init.kind === StreamKind.DIGEST)) {
      throw new TypeError(`a ${type} record in a stream of kind ${this.#init.kind}`)
    }
    let parts: Buffer[]
    if (!inPlace) {
      const header = encodeRecordHeader(type, offset, length, payload.length, base)
      s.chain = sealRecord(this.#hash, header, payload, s.chain)
      parts = payload.length > 0 ? [header, payload] : [header]
    } else {
      // `payload` is the whole record: the room for its header, then the payload.
      const whole = payload
      const header = whole.subarray(0, RECORD_HEADER_SIZE)
      payload = whole.subarray(RECORD_HEADER_SIZE)
      encodeRecordHeader(type, offset, length, payload.length).copy(header)
      s.chain = sealRecord(this.#hash, header, payload, s.chain)
      // A sink that cannot say when it lets go of a buffer gets a copy.
      parts = [this.#sink.settled === undefined ? Buffer.from(whole) : whole]
    }
    s.records++
    s.covered = offset + length
    s.payloadBytes += payload.length
    if (type === 'DATA') s.dataBytes += length
    else if (type === 'ZERO') s.zeroBytes += length
    for (const part of parts) await this.#put(part)
  }

  async #put(buf: Buffer): Promise<void> {
    this.#bytes += buf.length
    await this.#sink.write(buf)
  }
}

const EMPTY = Buffer.alloc(0)
