import { closeSync, constants, fdatasyncSync, fstatSync, ftruncateSync, openSync } from 'node:fs'
import { readAt, type Device } from './device.js'
import { BlockpipeError, UsageError } from './errors.js'
import { KIND_NAMES, MAX_RECORD_LENGTH, StreamKind, type StreamHeader } from './format.js'
import type { Hash64 } from './hash.js'
import { StreamParser } from './parse.js'
import { VERSION } from './version.js'
import { FdSink, StreamWriter } from './write.js'
import { isZero } from './zero.js'

// The undo journal is an ordinary stream of kind UNDO holding the old
// contents of every region an apply overwrites. Before a batch of target
// writes, the old contents go into the journal and are synced to disk, so a
// crash at any point leaves a journal that covers every region touched.

export interface UndoInit {
  path: string
  /** The stream being applied; its header checksum ties a resumed journal to it. */
  stream: StreamHeader
  target: Device
  program: string
}

const READ_PIECE = 1024 * 1024

export class UndoJournal {
  readonly path: string
  /** Size of the target before the apply: the journal restores it. */
  readonly oldSize: number
  /** End of the last region journaled by an earlier, interrupted run (0 if new). */
  readonly resumedUpTo: number
  readonly #fd: number
  readonly #writer: StreamWriter
  readonly #sink: FdSink
  #regions = 0

  private constructor(
    path: string,
    fd: number,
    sink: FdSink,
    writer: StreamWriter,
    oldSize: number,
    resumedUpTo: number,
  ) {
    this.path = path
    this.#fd = fd
    this.#sink = sink
    this.#writer = writer
    this.oldSize = oldSize
    this.resumedUpTo = resumedUpTo
  }

  /**
   * Starts a journal at `path`. An existing file is continued only when it is
   * the unfinished journal of this same stream (a re-run after a crash).
   */
  static async open(hash: Hash64, init: UndoInit): Promise<UndoJournal> {
    let fd: number
    try {
      fd = openSync(init.path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new BlockpipeError('EDEVICE', `cannot create the undo file ${init.path}: ${(err as Error).message}`)
      }
      return UndoJournal.#resume(hash, init)
    }
    const sink = new FdSink(fd)
    const header = {
      kind: StreamKind.UNDO,
      size: init.target.size,
      baseSize: init.stream.size,
      blockSize: init.stream.blockSize,
      metadata: {
        producer: `${init.program} ${VERSION}`,
        target: init.target.path,
        'stream-id': streamId(init.stream),
        created: new Date().toISOString(),
      },
    }
    const writer = new StreamWriter(hash, sink, header)
    await writer.start()
    fdatasyncSync(fd)
    return new UndoJournal(init.path, fd, sink, writer, init.target.size, 0)
  }

  static #resume(hash: Hash64, init: UndoInit): UndoJournal {
    const fd = openSync(init.path, constants.O_RDWR)
    const parser = new StreamParser(hash)
    const file = { fd, path: init.path }
    const size = Number(fstatSync(fd).size)
    const buf = Buffer.allocUnsafe(READ_PIECE)
    try {
      for (let pos = 0; pos < size && !parser.done; pos += READ_PIECE) {
        const n = readAt(file, buf, Math.min(READ_PIECE, size - pos), pos)
        parser.push(buf.subarray(0, n))
        while (parser.next() !== null);
      }
    } catch {
      // A torn last record: the journal is good up to the last whole one.
    }
    const refuse = (why: string): never => {
      closeSync(fd)
      throw new UsageError(`the undo file ${init.path} exists and ${why}; give each apply a new undo file`)
    }
    const header = parser.header
    if (header === undefined) return refuse('is not an undo journal')
    if (header.kind !== StreamKind.UNDO) return refuse(`holds a ${KIND_NAMES[header.kind]} stream, not an undo journal`)
    if (parser.done) return refuse('holds the complete journal of a finished apply')
    if (header.metadata['stream-id'] !== streamId(init.stream)) {
      return refuse('is the unfinished journal of another stream (roll that apply back with it first)')
    }
    ftruncateSync(fd, parser.position)
    const sink = new FdSink(fd, parser.position)
    const totals = parser.totals
    const writer = new StreamWriter(
      hash,
      sink,
      { kind: StreamKind.UNDO, size: header.size, baseSize: header.baseSize, blockSize: header.blockSize },
      { chain: parser.chain, records: parser.records, covered: parser.covered, ...totals },
    )
    return new UndoJournal(init.path, fd, sink, writer, header.size, parser.covered)
  }

  /** Regions journaled by this run. */
  get regions(): number {
    return this.#regions
  }

  /** Journals the current contents of [offset, offset+length) of the target, as far as it is old data. */
  async save(target: Device, offset: number, length: number): Promise<void> {
    const end = Math.min(offset + length, this.oldSize)
    for (let pos = Math.max(offset, this.#writer.state.covered); pos < end;) {
      const n = Math.min(MAX_RECORD_LENGTH, end - pos)
      const old = Buffer.allocUnsafe(n)
      old.fill(0, readAt(target, old, n, pos))
      if (isZero(old)) await this.#writer.zero(pos, n)
      else await this.#writer.data(pos, old)
      this.#regions++
      pos += n
    }
  }

  /** Makes what was journaled durable: call before writing the regions. */
  sync(): void {
    fdatasyncSync(this.#fd)
  }

  /** Seals the journal after the target has been synced. */
  async finish(): Promise<void> {
    await this.#writer.end()
    this.sync()
    this.close()
  }

  close(): void {
    closeSync(this.#fd)
  }

  get bytes(): number {
    return this.#sink.position
  }
}

/** Identifies a stream by its header checksum. */
export function streamId(header: StreamHeader): string {
  return header.checksum.toString(16).padStart(16, '0')
}
