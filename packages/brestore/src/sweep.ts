import { closeSync } from 'node:fs'
import {
  BlockpipeError,
  ConflictError,
  RECORD_FLAG_BASE,
  StreamReader,
  isStreamError,
  readAt,
  type Device,
  type EndInfo,
  type Hash64,
  type IncrementalHash,
  type StreamRecord,
} from '@blockpipe/core'
import { openUndoFile, type UndoFile } from './undo-header.js'

// One pass over the image in offset order, with one record cursor per undo
// file: memory holds one record of each, whatever their size.
//
// State 0 is the image; state k+1 is state k with undo file k applied (its
// size, then its records). So a byte of state k comes from the newest-but-
// oldest layer before k that covers it: the last of undo files 0..k-1 that
// holds a record there, or that cut the image short of it (then it reads as
// zeros), else the image. Undo file k's base digests are checked against
// state k; the output is state n.

/** Pieces never cross a multiple of this: the output's block size. */
export const PIECE = 64 * 1024
const ZEROS = Buffer.alloc(PIECE)
const READ_PIECE = 1024 * 1024

/** Bytes of the restored image, in order; null for zeros. */
export type Emit = (offset: number, length: number, bytes: Buffer | null) => Promise<void> | void

export interface SweepOptions {
  /** The second pass: a digest mismatch means the image changed since the first. */
  again: boolean
}

class Cursor {
  readonly file: UndoFile
  readonly #records: AsyncGenerator<StreamRecord, EndInfo>
  rec: StreamRecord | undefined
  hash: IncrementalHash | undefined

  private constructor(file: UndoFile, records: AsyncGenerator<StreamRecord, EndInfo>) {
    this.file = file
    this.#records = records
  }

  static async open(hash: Hash64, file: UndoFile): Promise<Cursor> {
    // The header was read and checked before: what can fail now is in the records.
    const reader = await StreamReader.open(readFile(file.path), hash)
    const cursor = new Cursor(file, reader.records())
    await cursor.#next()
    return cursor
  }

  /** Moves to the first record that ends after `p`. */
  async advance(p: number): Promise<void> {
    while (this.rec !== undefined && this.rec.offset + this.rec.length <= p) await this.#next()
  }

  async #next(): Promise<void> {
    try {
      const item = await this.#records.next()
      this.rec = item.done === true ? undefined : item.value
      this.hash = undefined
    } catch (err) {
      throw named(this.file, err)
    }
  }
}

function named(file: UndoFile, err: unknown): unknown {
  if (isStreamError(err)) return new BlockpipeError(err.code, `${file.path}: ${err.message}`)
  /* c8 ignore start -- a read error (EIO) already names the file (readAt's message); no test reaches a failing disk */
  return err
}
/* c8 ignore stop */

/** A file read in order, 1 MiB at a time. */
function* readFile(path: string): Generator<Buffer> {
  const fd = openUndoFile(path)
  const next = (pos: number): Buffer => {
    const buf = Buffer.allocUnsafe(READ_PIECE)
    return buf.subarray(0, readAt({ fd, path }, buf, READ_PIECE, pos))
  }
  try {
    // A loop with its end in its condition: nothing after it that never runs.
    for (let piece = next(0), pos = piece.length; piece.length > 0; piece = next(pos), pos += piece.length) {
      yield piece
    }
  } finally {
    closeSync(fd)
  }
}

/**
 * Sweeps the image with the undo files (newest first) laid over it, checks
 * every base digest, and hands the restored image, of the oldest undo file's
 * size, to `emit`.
 */
export async function sweep(
  hash: Hash64,
  image: Device,
  files: UndoFile[],
  options: SweepOptions,
  emit?: Emit,
): Promise<void> {
  const cursors: Cursor[] = []
  for (const f of files) cursors.push(await Cursor.open(hash, f))
  const sizes = files.map((f) => f.header.size)
  const outSize = sizes[sizes.length - 1] ?? image.size
  const end = Math.max(image.size, ...sizes)
  for (let p = 0; p < end;) {
    for (const c of cursors) await c.advance(p)
    let q = Math.min(end, (Math.floor(p / PIECE) + 1) * PIECE)
    for (const s of [image.size, ...sizes]) if (s > p) q = Math.min(q, s)
    for (const c of cursors) {
      const r = c.rec
      if (r === undefined) continue
      q = Math.min(q, r.offset > p ? r.offset : r.offset + r.length)
      if (r.offset + r.baseLength > p) q = Math.min(q, r.offset + r.baseLength)
    }
    const cache = new Map<number, Buffer | null>()
    /** Bytes [p, q) of state k. */
    const state = (k: number): Buffer | null => {
      let j = k - 1
      while (j >= 0) {
        const r = (cursors[j] as Cursor).rec
        if (r !== undefined && r.offset <= p) break
        if ((sizes[j] as number) <= p) return null
        j--
      }
      if (j < 0 && p >= image.size) return null
      let bytes = cache.get(j)
      if (bytes === undefined) {
        bytes = j < 0 ? readImage(image, p, q) : payload((cursors[j] as Cursor).rec as StreamRecord, p, q)
        cache.set(j, bytes)
      }
      return bytes
    }
    for (const [k, c] of cursors.entries()) {
      const r = c.rec
      if (r === undefined || r.offset > p) continue
      if ((r.flags & RECORD_FLAG_BASE) === 0) {
        // Only a legacy journal lets a record through without its base digest: --force.
        if (c.file.targetId !== undefined) throw missingBase(c.file, r)
        continue
      }
      if (r.offset === p) {
        checkBaseLength(c.file, r)
        c.hash = hash.create(0n)
        if (r.baseLength === 0) checkDigest(c, r, options)
      }
      if (p < r.offset + r.baseLength) {
        ;(c.hash as IncrementalHash).update(state(k) ?? ZEROS.subarray(0, q - p))
        if (q === r.offset + r.baseLength) checkDigest(c, r, options)
      }
    }
    if (emit !== undefined && p < outSize) await emit(p, q - p, state(cursors.length))
    p = q
  }
  for (const c of cursors) await c.advance(end)
}

function readImage(image: Device, p: number, q: number): Buffer {
  const buf = Buffer.allocUnsafe(q - p)
  const n = readAt(image, buf, q - p, p)
  if (n !== q - p) {
    throw new BlockpipeError('EINPUT', `${image.path} ended at byte ${p + n} while brestore read it: it changed`)
  }
  return buf
}

function payload(r: StreamRecord, p: number, q: number): Buffer | null {
  return r.type === 'ZERO' ? null : r.payload.subarray(p - r.offset, q - r.offset)
}

function checkBaseLength(file: UndoFile, r: StreamRecord): void {
  const expected = Math.max(0, Math.min(r.length, file.header.baseSize - r.offset))
  if (r.baseLength !== expected) {
    throw new BlockpipeError(
      'EBADSTREAM',
      `${file.path}: record ${r.index} at offset ${r.offset} gives a base length of ${r.baseLength}, not ${expected}`,
    )
  }
}

function missingBase(file: UndoFile, r: StreamRecord): BlockpipeError {
  return new BlockpipeError(
    'EBADSTREAM',
    `${file.path}: record ${r.index} at offset ${r.offset} has no base digest in a journal bound to its image`,
  )
}

function checkDigest(c: Cursor, r: StreamRecord, options: SweepOptions): void {
  if ((c.hash as IncrementalHash).digest() === r.baseDigest) return
  if (options.again) {
    throw new BlockpipeError(
      'EINPUT',
      `the image changed while brestore read it (at offset ${r.offset}, checked by ${c.file.path}):` +
        ' the output is unusable; run brestore again when nothing writes to the image',
    )
  }
  throw new ConflictError(
    `${c.file.path} does not fit at offset ${r.offset}: the image with the newer undo files laid over it does not` +
      " hold what this undo file's apply left there. An undo file between them is missing (a gap), the files are" +
      ' in the wrong order, or they are of another image',
    r.offset,
  )
}
