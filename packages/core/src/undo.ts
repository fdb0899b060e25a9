import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  openSync,
  statSync,
  unlinkSync,
  type Stats,
} from 'node:fs'
import { dirname } from 'node:path'
import { describeOpenError, readAt, sync, type Device } from './device.js'
import { BlockpipeError, ConflictError, UsageError } from './errors.js'
import { KIND_NAMES, MAGIC, MAX_RECORD_LENGTH, StreamKind, type StreamHeader } from './format.js'
import type { Hash64 } from './hash.js'
import { StreamParser } from './parse.js'
import { VERSION } from './version.js'
import { FdSink, StreamWriter } from './write.js'
import { isZero, zeros } from './zero.js'

// The undo journal is an ordinary stream of kind UNDO holding the old
// contents of every region an apply overwrites. Before a batch of target
// writes, the old contents go into the journal and are synced to disk, so a
// crash at any point leaves a journal that covers every region touched.
//
// The journal's header is synced before the target is touched at all, so an
// undo file whose header is not whole belongs to a run that changed nothing:
// it is started afresh. A journal with a whole header and no end record is
// continued by a re-run of the same stream onto the same target (the records
// after its last whole one were never followed by a target write: the sync
// comes first).
//
// A journal is bound to what it undoes: its header names the target's
// identity (`target-id`), and each record carries the digest (seed 0) of the
// bytes the apply wrote there, so a rollback checks that the target still
// holds them before it writes anything. Journals without them are legacy.

/** Target writes wait in batches for their old contents to reach the journal: one sync per batch. */
export const UNDO_BATCH_BYTES = 32 * 1024 * 1024
// Tests set a small batch to put many journal syncs into a small stream.
export const UNDO_BATCH_RECORDS = Number(process.env.BLOCKPIPE_UNDO_BATCH_RECORDS) || 1024

export interface UndoInit {
  path: string
  /** The stream being applied; its header checksum ties a resumed journal to it. */
  stream: StreamHeader
  target: Device
  program: string
}

/** What `UndoJournal.check` needs to know of the target. */
export interface UndoTarget {
  path: string
  exists: boolean
  size: number
  blockDevice: boolean
}

const READ_PIECE = 1024 * 1024
const ZERO_PIECE = 1024 * 1024

/** Metadata key of the target's identity in an undo journal's header. */
export const TARGET_ID_KEY = 'target-id'

/** Whom a bound journal belongs to: its target's path, where recorded, and identity. */
export function boundTarget(metadata: Record<string, string>): string {
  return `${metadata.target ?? 'another target'} (${metadata[TARGET_ID_KEY]})`
}

/** The identity of a regular file (device and inode) or block device (major and minor) an undo journal belongs to. */
export function targetId(st: Pick<Stats, 'dev' | 'ino' | 'rdev' | 'isBlockDevice'>): string {
  if (st.isBlockDevice()) {
    const rdev = BigInt(st.rdev)
    const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n)
    const minor = (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n)
    return `block:${major}:${minor}`
  }
  return `file:${st.dev}:${st.ino}`
}

/** Whether an undo journal's header binds it to its target (records with base digests). */
export function isBoundJournal(header: StreamHeader): boolean {
  return header.kind === StreamKind.UNDO && header.metadata[TARGET_ID_KEY] !== undefined
}

export class UndoJournal {
  readonly path: string
  /** Size of the target before the apply: the journal restores it. */
  readonly oldSize: number
  /** End of the last region journaled by an earlier, interrupted run (0 if new). */
  readonly resumedUpTo: number
  /** False when this run continues the journal of an interrupted one. */
  readonly created: boolean
  readonly #fd: number
  readonly #writer: StreamWriter
  readonly #sink: FdSink
  readonly #hash: Hash64
  /** The size the apply leaves the target at: base digests stop there. */
  readonly #newSize: number
  /** Records carry base digests (a legacy journal being continued does not). */
  readonly #bound: boolean
  #regions = 0

  private constructor(
    hash: Hash64,
    path: string,
    fd: number,
    sink: FdSink,
    writer: StreamWriter,
    sizes: { old: number; new: number },
    resumedUpTo: number,
    created: boolean,
    bound: boolean,
  ) {
    this.#hash = hash
    this.#newSize = sizes.new
    this.#bound = bound
    const oldSize = sizes.old
    this.path = path
    this.#fd = fd
    this.#sink = sink
    this.#writer = writer
    this.oldSize = oldSize
    this.resumedUpTo = resumedUpTo
    this.created = created
  }

  /**
   * Refuses, before anything is written, an undo file that `open` would
   * refuse: the spooled apply checks this before it spools the stream.
   * 'new' when there is no such file yet, 'resume' for the unfinished journal
   * of this stream, 'fresh' for one whose header never reached the disk.
   */
  static check(hash: Hash64, path: string, stream: StreamHeader, target: UndoTarget): 'new' | 'resume' | 'fresh' {
    let existing: Existing
    try {
      existing = readExisting(hash, path, constants.O_RDONLY)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'new'
      throw err
    }
    try {
      return judge(existing, path, stream, target, target.exists ? statSync(target.path) : undefined)
    } finally {
      closeSync(existing.fd)
    }
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
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw cannotOpen(init.path, err)
      const existing = readExisting(hash, init.path, constants.O_RDWR)
      let verdict: 'resume' | 'fresh'
      try {
        verdict = judge(existing, init.path, init.stream, { ...init.target, exists: true }, fstatSync(init.target.fd))
      } catch (err) {
        closeSync(existing.fd)
        throw err
      }
      if (verdict === 'resume') return UndoJournal.#resume(hash, init, existing)
      fd = existing.fd
      ftruncateSync(fd, 0)
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
        [TARGET_ID_KEY]: targetId(fstatSync(init.target.fd)),
      },
    }
    const writer = new StreamWriter(hash, sink, header)
    const sizes = { old: init.target.size, new: init.stream.size }
    const journal = new UndoJournal(hash, init.path, fd, sink, writer, sizes, 0, true, true)
    try {
      await journal.#guard(() => writer.start())
      journal.sync()
    } catch (err) {
      // Nothing was journaled, nothing was written: leave nothing behind.
      closeSync(fd)
      unlinkSync(init.path)
      throw err
    }
    syncDirectory(init.path)
    return journal
  }

  static #resume(hash: Hash64, init: UndoInit, existing: Existing): UndoJournal {
    const { fd, parser } = existing
    const header = parser.header as StreamHeader
    // The records after the last whole one were never followed by a target
    // write (the journal is synced first): drop them and carry on from there.
    ftruncateSync(fd, parser.position)
    const sink = new FdSink(fd, parser.position)
    const writer = new StreamWriter(
      hash,
      sink,
      { kind: StreamKind.UNDO, size: header.size, baseSize: header.baseSize, blockSize: header.blockSize },
      { chain: parser.chain, records: parser.records, covered: parser.covered, ...parser.totals },
    )
    const sizes = { old: header.size, new: header.baseSize }
    return new UndoJournal(hash, init.path, fd, sink, writer, sizes, parser.covered, false, isBoundJournal(header))
  }

  /** Regions journaled by this run. */
  get regions(): number {
    return this.#regions
  }

  /**
   * Journals the current contents of [offset, offset+length) of the target,
   * as far as it is old data, before the apply writes `after` there (the
   * bytes from `offset` on; undefined: zeros, or nothing past the new size).
   */
  async save(target: Device, offset: number, length: number, after?: Uint8Array): Promise<void> {
    const end = Math.min(offset + length, this.oldSize)
    for (let pos = Math.max(offset, this.#writer.state.covered); pos < end;) {
      const n = Math.min(MAX_RECORD_LENGTH, end - pos)
      const old = Buffer.allocUnsafe(n)
      old.fill(0, readAt(target, old, n, pos))
      const at = pos
      const base = this.#bound ? this.#base(pos, n, after?.subarray(pos - offset)) : undefined
      await this.#guard(() => (isZero(old) ? this.#writer.zero(at, n, base) : this.#writer.data(at, old, base)))
      this.#regions++
      pos += n
    }
  }

  /** What the apply leaves in [pos, pos+n) as far as the new size: the state this record undoes. */
  #base(pos: number, n: number, after: Uint8Array | undefined): { length: number; digest: bigint } {
    const length = Math.max(0, Math.min(n, this.#newSize - pos))
    if (after !== undefined) return { length, digest: this.#hash.digest(after.subarray(0, length), 0n) }
    const h = this.#hash.create(0n)
    for (let done = 0; done < length; done += ZERO_PIECE) h.update(zeros(Math.min(ZERO_PIECE, length - done)))
    return { length, digest: h.digest() }
  }

  /** Makes what was journaled durable: call before writing the regions. */
  sync(): void {
    sync({ fd: this.#fd, path: this.path, size: 0, blockDevice: false })
  }

  /** Seals the journal after the target has been synced. */
  async finish(): Promise<void> {
    await this.#guard(() => this.#writer.end())
    this.sync()
    this.close()
  }

  close(): void {
    closeSync(this.#fd)
  }

  get bytes(): number {
    return this.#sink.position
  }

  /** Runs a write to the journal; a failure (ENOSPC, EFBIG, EIO) names the undo file. */
  async #guard(write: () => Promise<void>): Promise<void> {
    try {
      await write()
    } catch (err) {
      throw new BlockpipeError('EDEVICE', `cannot write the undo file ${this.path}: ${(err as Error).message}`)
    }
  }
}

interface Existing {
  fd: number
  parser: StreamParser
  /** The file ends inside what can still be the start of a header. */
  tornHeader: boolean
}

function cannotOpen(path: string, err: unknown): BlockpipeError {
  return new BlockpipeError(
    'EDEVICE',
    `cannot open the undo file: ${describeOpenError(err as NodeJS.ErrnoException, path)}`,
  )
}

/** Opens an existing undo file and reads it as far as it is whole. */
function readExisting(hash: Hash64, path: string, mode: number): Existing {
  let fd: number
  try {
    fd = openSync(path, mode)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw err
    throw cannotOpen(path, err)
  }
  const parser = new StreamParser(hash)
  try {
    const st = fstatSync(fd)
    if (!st.isFile()) throw refusal(path, 'is not a regular file')
    let broken = false
    for (let pos = 0; pos < st.size && !parser.done && !broken; pos += READ_PIECE) {
      // A fresh buffer each time: the parser keeps the bytes of an unfinished record.
      const buf = Buffer.allocUnsafe(Math.min(READ_PIECE, st.size - pos))
      // A read error is thrown: no reason to cut the journal short.
      const n = readAt({ fd, path }, buf, Math.min(READ_PIECE, st.size - pos), pos)
      try {
        parser.push(buf.subarray(0, n))
        while (parser.next() !== null);
      } catch {
        // A torn or damaged record: the journal is good up to the last whole one.
        broken = true
      }
    }
    const head = Buffer.alloc(Math.min(st.size, MAGIC.length))
    readAt({ fd, path }, head, head.length, 0)
    const tornHeader = !broken && parser.header === undefined && MAGIC.subarray(0, head.length).equals(head)
    return { fd, parser, tornHeader }
  } catch (err) {
    closeSync(fd)
    throw err
  }
}

function refusal(path: string, why: string): UsageError {
  return new UsageError(`the undo file ${path} exists and ${why}; give each apply a new undo file`)
}

/**
 * Whether an existing undo file may be continued ('resume') or started
 * afresh ('fresh', its header never reached the disk whole); any other file
 * is refused.
 */
function judge(
  existing: Existing,
  path: string,
  stream: StreamHeader,
  target: UndoTarget,
  targetStat: Stats | undefined,
): 'resume' | 'fresh' {
  const refuse = (err: BlockpipeError): never => {
    throw err
  }
  const st = fstatSync(existing.fd)
  if (targetStat !== undefined && st.ino === targetStat.ino && st.dev === targetStat.dev) {
    return refuse(new UsageError(`the undo file ${path} is the target itself`))
  }
  if (existing.tornHeader) return 'fresh'
  const { parser } = existing
  const header = parser.header
  if (header === undefined) return refuse(refusal(path, 'is not an undo journal'))
  if (header.kind !== StreamKind.UNDO) {
    return refuse(refusal(path, `holds a ${KIND_NAMES[header.kind]} stream, not an undo journal`))
  }
  if (parser.done) return refuse(refusal(path, 'holds the complete journal of a finished apply'))
  if (header.metadata['stream-id'] !== streamId(stream)) {
    return refuse(refusal(path, 'is the unfinished journal of another stream (roll that apply back with it first)'))
  }
  const boundTo = header.metadata[TARGET_ID_KEY]
  if (boundTo !== undefined && (targetStat === undefined || targetId(targetStat) !== boundTo)) {
    return refuse(
      new ConflictError(
        `the undo file ${path} is the unfinished journal of this stream applied to ${boundTarget(header.metadata)}, and ` +
          `${target.path} ${targetStat === undefined ? 'does not exist' : `is another ${targetStat.isBlockDevice() ? 'device' : 'file'} (${targetId(targetStat)})`}: ` +
          `finish that apply (same target, same --undo), or roll it back with ${path}. Nothing was written`,
      ),
    )
  }
  if (!target.blockDevice && target.size !== header.size && target.size !== stream.size) {
    return refuse(
      new ConflictError(
        `the undo file ${path} is the unfinished journal of this stream, made when ${target.path} was ` +
          `${header.size} bytes; it is now ${target.size} bytes, neither that nor the stream's ${stream.size}:` +
          ' the target changed since, or is another one. Nothing was written',
      ),
    )
  }
  return 'resume'
}

/** Identifies a stream by its header checksum. */
export function streamId(header: StreamHeader): string {
  return header.checksum.toString(16).padStart(16, '0')
}

/**
 * Makes a new directory entry durable: a file created and synced is not
 * found after a power loss unless its directory is synced too. Best effort:
 * some filesystems (procfs, some network ones) do not sync directories.
 */
export function syncDirectory(path: string): void {
  try {
    const fd = openSync(dirname(path), constants.O_RDONLY)
    try {
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
  } catch {
    // Nothing more can be done for the entry; the data itself was synced.
  }
}
