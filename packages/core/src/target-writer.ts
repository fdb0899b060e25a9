import { resize, sync, writeAt, type Target } from './device.js'
import { Progress } from './progress.js'
import { formatBytes } from './size.js'
import { UNDO_BATCH_BYTES, UNDO_BATCH_RECORDS, type UndoJournal } from './undo.js'
import { isZero, zeros } from './zero.js'

// Writes the records of any stream into a target: the one place where the
// target changes. With a journal, the old contents of a batch of regions are
// journaled and synced before the batch is written; zeros where a regular
// file reads as holes are not written; a regular file grows to its new size
// before the first write and shrinks at the end, once its tail is journaled;
// the target is synced before the apply may succeed.

/** A region to write: data, or zeros. */
export interface Piece {
  type: 'DATA' | 'ZERO'
  offset: number
  length: number
  /** DATA: the bytes. */
  payload: Buffer
}

export interface TargetWriterOptions {
  /** Names the program in progress and notes. */
  program: string
  /** The target's size once applied; `extend` raises it (a stream whose size is known only at its end). */
  size: number
  progress?: boolean
  /** What progress counts up to. */
  progressTotal?: number
  /** A block device larger than the image is noted: its tail is left as it is. */
  noteDeviceTail?: boolean
  stderr?: NodeJS.WritableStream
}

const ZERO_PIECE = 1024 * 1024

export class TargetWriter {
  readonly #target: Target
  readonly #journal: UndoJournal | undefined
  readonly #options: TargetWriterOptions
  readonly #progress: Progress | undefined
  /** Where the target's regular file reads as holes: grown by this apply. */
  readonly #holesFrom: number
  #pending: { piece: Piece; ends: boolean }[] = []
  #pendingBytes = 0
  #size: number
  /** The target has been (or may have been) written or resized. */
  changed = false
  /** Pieces that ended a record. */
  records = 0
  written = 0
  skipped = 0

  constructor(target: Target, journal: UndoJournal | undefined, options: TargetWriterOptions) {
    this.#target = target
    this.#journal = journal
    this.#options = options
    this.#size = options.size
    const before = journal?.oldSize ?? target.size
    this.#holesFrom = target.blockDevice ? Infinity : target.existed ? before : 0
    this.#progress =
      options.progress === true ? new Progress(options.program, options.progressTotal ?? options.size) : undefined
  }

  /** The target's size once applied. */
  get size(): number {
    return this.#size
  }

  /** The image reaches at least `end`. */
  extend(end: number): void {
    this.#size = Math.max(this.#size, end)
  }

  /** Writes a piece (journaled first, in batches); `ends`: it completes a record. */
  async put(piece: Piece, ends = true): Promise<void> {
    if (piece.offset >= this.#holesFrom && (piece.type === 'ZERO' || isZero(piece.payload))) {
      this.skip(piece, ends)
      return
    }
    if (this.#journal === undefined) {
      this.#write(piece, ends)
      return
    }
    this.#pending.push({ piece, ends })
    this.#pendingBytes += piece.length
    if (this.#pendingBytes >= UNDO_BATCH_BYTES || this.#pending.length >= UNDO_BATCH_RECORDS) await this.#flush()
  }

  /** A piece the target already holds. */
  skip(piece: Pick<Piece, 'offset' | 'length'>, ends = true): void {
    this.skipped += piece.length
    this.#done(piece, ends)
  }

  async #flush(): Promise<void> {
    const journal = this.#journal as UndoJournal
    if (this.#pending.length === 0) return
    for (const { piece: p } of this.#pending) {
      await journal.save(this.#target, p.offset, p.length, p.type === 'DATA' ? p.payload : undefined)
    }
    journal.sync()
    for (const { piece, ends } of this.#pending) this.#write(piece, ends)
    this.#pending = []
    this.#pendingBytes = 0
  }

  /** Before the first write: a regular file grows to the new size (it shrinks at the end, once its tail is journaled). */
  #prepare(): void {
    if (this.changed) return
    this.changed = true
    if (!this.#target.blockDevice && this.#target.size < this.#size) resize(this.#target, this.#size)
  }

  #write(piece: Piece, ends: boolean): void {
    this.#prepare()
    if (piece.type === 'DATA') {
      writeAt(this.#target, piece.payload, piece.offset)
    } else {
      for (let pos = piece.offset; pos < piece.offset + piece.length; pos += ZERO_PIECE) {
        writeAt(this.#target, zeros(Math.min(ZERO_PIECE, piece.offset + piece.length - pos)), pos)
      }
    }
    this.written += piece.length
    this.#done(piece, ends)
  }

  #done(piece: Pick<Piece, 'offset' | 'length'>, ends: boolean): void {
    if (ends) this.records++
    this.#progress?.update(piece.offset + piece.length)
  }

  /** Writes what is pending, gives a regular file its size, and syncs the target. */
  async finish(): Promise<void> {
    if (this.#journal !== undefined) await this.#flush()
    const size = this.#size
    const target = this.#target
    if (!target.blockDevice && target.size !== size) {
      if (target.size > size && this.#journal !== undefined) {
        await this.#journal.save(target, size, target.size - size)
        this.#journal.sync()
      }
      this.changed = true
      resize(target, size)
    } else if (target.blockDevice && target.size > size && this.#options.noteDeviceTail === true) {
      this.#options.stderr?.write(
        `${this.#options.program}: note: ${target.path} is a block device of ${target.size} bytes;` +
          ` the image is ${size} bytes, the bytes after it are left as they are\n`,
      )
    }
    sync(target)
    this.#progress?.finish(size, `${formatBytes(this.written)} written`)
  }
}

/** What feeds a TargetWriter from a stream's records: counts and finish are the writer's. */
export abstract class WriterFront {
  protected readonly writer: TargetWriter

  constructor(writer: TargetWriter) {
    this.writer = writer
  }

  /** The target has been (or may have been) written or resized. */
  get changed(): boolean {
    return this.writer.changed
  }

  /** Records applied (written or found already there). */
  get records(): number {
    return this.writer.records
  }

  /** Bytes written to the target. */
  get written(): number {
    return this.writer.written
  }

  /** Bytes the target already held. */
  get skipped(): number {
    return this.writer.skipped
  }

  finish(): Promise<void> {
    return this.writer.finish()
  }
}
