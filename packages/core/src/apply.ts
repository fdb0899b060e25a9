import { statSync, unlinkSync } from 'node:fs'
import { close, openSource, openTarget, readAt, resize, sync, writeAt, type Device, type Target } from './device.js'
import { BlockpipeError, ConflictError, CorruptStreamError, TruncatedStreamError, UsageError } from './errors.js'
import { KIND_NAMES, RECORD_FLAG_BASE, StreamKind, isFull, type EndInfo, type StreamHeader } from './format.js'
import { loadHash, type Hash64 } from './hash.js'
import type { StreamRecord } from './parse.js'
import { Progress } from './progress.js'
import { StreamReader, type ByteSource } from './read.js'
import { formatBytes } from './size.js'
import { createSpool, fileChunks, tee } from './spool.js'
import { UndoJournal } from './undo.js'
import { isZero, zeros } from './zero.js'

// The apply engine behind era-apply and bpatch. Records are checked as they
// arrive (the reader verifies checksums and order), delta records are checked
// against the target (base digest), old contents go to the undo journal
// before the target is written, and the target is synced before success.

export interface ApplyOptions {
  program: 'era-apply' | 'bpatch'
  target: string
  /** era-apply: write a delta without checks; bpatch: write regardless of base digests and sizes. */
  force?: boolean
  /** A directory or new file name: store and verify the whole stream first. */
  spool?: string
  /** A new file: journal the old contents of every region overwritten. */
  undo?: string
  progress?: boolean
  /** Notes and warnings. */
  stderr?: NodeJS.WritableStream
}

export interface ApplyResult {
  header: StreamHeader
  /** The end record; undefined when an unfinished undo journal was rolled back. */
  end: EndInfo | undefined
  records: number
  /** Bytes written to the target. */
  written: number
  /** Bytes of records the target already held (a re-run, or holes). */
  skipped: number
  created: boolean
}

/** Batches of target writes wait for their old contents to reach the journal. */
const UNDO_BATCH_BYTES = 32 * 1024 * 1024
const UNDO_BATCH_RECORDS = 1024
const ZERO_PIECE = 1024 * 1024

export async function applyStream(input: ByteSource, options: ApplyOptions): Promise<ApplyResult> {
  const hash = await loadHash()
  if (options.spool === undefined) return applyFrom(hash, input, options, false)
  const spool = createSpool(options.spool, options.program)
  try {
    await verifySpooled(hash, tee(input, spool.sink), options)
    return await applyFrom(hash, fileChunks(spool.fd, spool.sink.position), options, true)
  } finally {
    spool.close()
  }
}

/** What the target is now, without opening it to write. */
interface TargetState {
  exists: boolean
  size: number
  blockDevice: boolean
}

function targetState(path: string): TargetState {
  let st
  try {
    st = statSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { exists: false, size: 0, blockDevice: false }
    throw new BlockpipeError('EDEVICE', `${path}: ${(err as Error).message}`)
  }
  if (!st.isBlockDevice()) return { exists: true, size: st.size, blockDevice: false }
  const dev = openSource(path)
  close(dev)
  return { exists: true, size: dev.size, blockDevice: true }
}

/** Refuses a stream this program must not apply, or a target it does not fit, before anything is written. */
function preflight(header: StreamHeader, state: TargetState, options: ApplyOptions): void {
  const { program, target } = options
  const force = options.force === true
  if (header.kind === StreamKind.DIGEST) {
    throw new BlockpipeError('EINPUT', 'this is a digest stream (from bsum): it holds no data; give it to bdiff')
  }
  if (header.kind === StreamKind.DELTA && program === 'era-apply' && !force) {
    throw new UsageError(
      'this is a delta stream (from bdiff): apply it with bpatch, which checks every chunk against the target;' +
        ' era-apply writes it without those checks only with --force',
    )
  }
  if (state.blockDevice && state.size < header.size) {
    throw new BlockpipeError(
      'EDEVICE',
      `${target} is too small: ${state.size} bytes (${formatBytes(state.size)}), the stream is for ` +
        `${header.size} bytes (${formatBytes(header.size)}); nothing was written`,
    )
  }
  switch (header.kind) {
    case StreamKind.BLOCK:
      if (!isFull(header) && !force && (!state.exists || state.size === 0)) {
        const since = header.metadata['written-since']
        throw new ConflictError(
          `${target} ${state.exists ? 'is empty' : 'does not exist'}, and this stream holds only some blocks` +
            `${since === undefined ? '' : ` (those written since era ${since})`}, not a full copy: applied to it, ` +
            'every other block would be zeros. Apply a full stream first (era-copy --all), or pass --force',
        )
      }
      return
    case StreamKind.DELTA:
      if (!state.exists) {
        throw new ConflictError(
          `${target} does not exist: a delta applies only to the image its digests were made from`,
        )
      }
      if (!force && state.size !== header.baseSize && (state.blockDevice || state.size !== header.size)) {
        throw new ConflictError(
          `${target} is ${state.size} bytes, the delta was made against an image of ${header.baseSize} bytes:` +
            ' it is for another image (use --force to apply it anyway)',
        )
      }
      return
    default:
      if (!state.exists)
        throw new ConflictError(`${target} does not exist: an undo journal rolls back an existing target`)
      if (!force && !state.blockDevice && state.size !== header.baseSize && state.size !== header.size) {
        throw new ConflictError(
          `${target} is ${state.size} bytes; the apply this journal undoes left it at ${header.baseSize} bytes:` +
            ' it is for another target (use --force to apply it anyway)',
        )
      }
  }
}

/** --spool, first pass: the whole stream is read, stored and checked; the target is only read. */
async function verifySpooled(hash: Hash64, input: ByteSource, options: ApplyOptions): Promise<void> {
  const reader = await StreamReader.open(input, hash)
  const { header } = reader
  const state = targetState(options.target)
  preflight(header, state, options)
  const progress = options.progress === true ? new Progress(`${options.program} (spooling)`, header.size) : undefined
  const checker = needsBaseChecks(header, options)
    ? new BaseChecker(hash, openSource(options.target), header)
    : undefined
  try {
    for await (const rec of reader.records()) {
      checker?.check(rec, options, 'nothing was written')
      progress?.update(rec.offset + rec.length)
    }
  } catch (err) {
    if (header.kind === StreamKind.UNDO && isStreamError(err)) return
    throw annotate(err, options, 'nothing was written to the target')
  } finally {
    if (checker) close(checker.dev)
  }
}

function needsBaseChecks(header: StreamHeader, options: ApplyOptions): boolean {
  return header.kind === StreamKind.DELTA && options.force !== true
}

function isStreamError(err: unknown): boolean {
  return err instanceof TruncatedStreamError || err instanceof CorruptStreamError
}

/** A stream error after the target was touched says what state the target is in. */
function annotate(err: unknown, options: ApplyOptions, state: string): unknown {
  if (!isStreamError(err)) return err
  const e = err as TruncatedStreamError | CorruptStreamError
  const advice =
    options.spool === undefined
      ? options.undo === undefined
        ? '; --spool keeps a cut or corrupt stream from touching the target, --undo makes an apply reversible'
        : `; roll back with: ${options.program} ${options.target} < ${options.undo}`
      : ''
  const out =
    e instanceof TruncatedStreamError
      ? new TruncatedStreamError(`${e.message}: ${state}${advice}`, e.position)
      : new CorruptStreamError(e.code as 'ECORRUPT' | 'EBADSTREAM', `${e.message}: ${state}${advice}`, e.position)
  return out
}

async function applyFrom(
  hash: Hash64,
  input: ByteSource,
  options: ApplyOptions,
  spooled: boolean,
): Promise<ApplyResult> {
  const reader = await StreamReader.open(input, hash)
  const { header } = reader
  if (!spooled) preflight(header, targetState(options.target), options)
  const target = openTarget(options.target, { create: header.kind === StreamKind.BLOCK })
  let journal: UndoJournal | undefined
  try {
    if (options.undo !== undefined) {
      journal = await UndoJournal.open(hash, { path: options.undo, stream: header, target, program: options.program })
    }
    const applier = new Applier(hash, header, target, options, journal)
    applier.begin()
    let rolledBackPartly = false
    try {
      for await (const rec of reader.records()) await applier.record(rec)
    } catch (err) {
      if (!(header.kind === StreamKind.UNDO && isStreamError(err))) {
        const what = target.existed
          ? `${applier.records} records were applied before it, ${options.target} is incomplete (part new, part old)`
          : `${options.target} was new and has been removed`
        throw annotate(err, options, spooled ? `${what}: the spool file was damaged` : what)
      }
      rolledBackPartly = true
      options.stderr?.write(
        `${options.program}: warning: the undo journal has no end record (${(err as Error).message}).` +
          ` It belongs to an apply that was interrupted: the ${applier.records} regions it recorded were restored.` +
          ' If the journal was instead cut in transit, regions after it were not restored.\n',
      )
    }
    await applier.finish()
    await journal?.finish()
    journal = undefined
    return {
      header,
      end: rolledBackPartly ? undefined : reader.end,
      records: applier.records,
      written: applier.written,
      skipped: applier.skipped,
      created: !target.existed,
    }
  } catch (err) {
    // A file this apply created holds nothing anyone had before: rather
    // than leave a half-written image that looks like a backup, remove it.
    if (!target.existed) unlinkSync(target.path)
    throw err
  } finally {
    journal?.close()
    close(target)
  }
}

class Applier {
  readonly #header: StreamHeader
  readonly #target: Target
  readonly #options: ApplyOptions
  readonly #journal: UndoJournal | undefined
  readonly #checker: BaseChecker | undefined
  readonly #progress: Progress | undefined
  /** Where the target's regular file reads as holes: grown by this apply. */
  readonly #holesFrom: number
  #pending: StreamRecord[] = []
  #pendingBytes = 0
  records = 0
  written = 0
  skipped = 0

  constructor(hash: Hash64, header: StreamHeader, target: Target, options: ApplyOptions, journal?: UndoJournal) {
    this.#header = header
    this.#target = target
    this.#options = options
    this.#journal = journal
    this.#checker = needsBaseChecks(header, options) ? new BaseChecker(hash, target, header) : undefined
    this.#progress = options.progress === true ? new Progress(options.program, header.size) : undefined
    const before = journal?.oldSize ?? target.size
    this.#holesFrom = target.blockDevice ? Infinity : target.existed ? before : 0
  }

  /** Grows a regular file now; shrinking waits until its tail is journaled. */
  begin(): void {
    if (!this.#target.blockDevice && this.#target.size < this.#header.size) resize(this.#target, this.#header.size)
  }

  async record(rec: StreamRecord): Promise<void> {
    const journaled = this.#journal !== undefined && rec.offset + rec.length <= this.#journal.resumedUpTo
    if (this.#checker !== undefined && !journaled) {
      const verdict = this.#checker.check(rec, this.#options, `${this.records} records were applied before it`)
      if (verdict === 'same') {
        this.#done(rec, false)
        return
      }
    }
    if (rec.type === 'ZERO' && rec.offset >= this.#holesFrom) {
      this.#done(rec, false)
      return
    }
    if (this.#journal === undefined) {
      this.#write(rec)
      return
    }
    this.#pending.push(rec)
    this.#pendingBytes += rec.length
    if (this.#pendingBytes >= UNDO_BATCH_BYTES || this.#pending.length >= UNDO_BATCH_RECORDS) await this.#flush()
  }

  async #flush(): Promise<void> {
    const journal = this.#journal as UndoJournal
    if (this.#pending.length === 0) return
    for (const rec of this.#pending) await journal.save(this.#target, rec.offset, rec.length)
    journal.sync()
    for (const rec of this.#pending) this.#write(rec)
    this.#pending = []
    this.#pendingBytes = 0
  }

  #write(rec: StreamRecord): void {
    if (rec.type === 'DATA') {
      writeAt(this.#target, rec.payload, rec.offset)
    } else {
      for (let pos = rec.offset; pos < rec.offset + rec.length; pos += ZERO_PIECE) {
        writeAt(this.#target, zeros(Math.min(ZERO_PIECE, rec.offset + rec.length - pos)), pos)
      }
    }
    this.#done(rec, true)
  }

  #done(rec: StreamRecord, written: boolean): void {
    this.records++
    if (written) this.written += rec.length
    else this.skipped += rec.length
    this.#progress?.update(rec.offset + rec.length)
  }

  async finish(): Promise<void> {
    if (this.#journal !== undefined) await this.#flush()
    const size = this.#header.size
    const target = this.#target
    if (!target.blockDevice && target.size > size) {
      if (this.#journal !== undefined) {
        await this.#journal.save(target, size, target.size - size)
        this.#journal.sync()
      }
      resize(target, size)
    } else if (target.blockDevice && target.size > size && this.#header.kind !== StreamKind.BLOCK) {
      this.#options.stderr?.write(
        `${this.#options.program}: note: ${target.path} is a block device of ${target.size} bytes;` +
          ` the image is ${size} bytes, the bytes after it are left as they are\n`,
      )
    }
    sync(target)
    this.#progress?.finish(this.#header.size, `${formatBytes(this.written)} written`)
  }
}

/**
 * bpatch's safety check: before a chunk is overwritten, the target must hold
 * either the data the delta was made against (base digest) or already the
 * new data (an earlier run got this far). Anything else is another image.
 */
class BaseChecker {
  readonly dev: Device
  readonly #hash: Hash64
  readonly #header: StreamHeader
  #buf: Buffer

  constructor(hash: Hash64, dev: Device, header: StreamHeader) {
    this.dev = dev
    this.#hash = hash
    this.#header = header
    this.#buf = Buffer.allocUnsafe(header.blockSize)
  }

  check(rec: StreamRecord, options: ApplyOptions, before: string): 'same' | 'base' {
    const hasBase = (rec.flags & RECORD_FLAG_BASE) !== 0
    const span = Math.max(rec.length, rec.baseLength)
    const got = readAt(this.dev, this.#buf, span, rec.offset)
    const current = this.#buf.subarray(0, got)
    const now = current.subarray(0, rec.length)
    const same = now.length === rec.length && (rec.type === 'ZERO' ? isZero(now) : now.equals(rec.payload))
    if (same) return 'same'
    if (!hasBase) return 'base'
    if (
      got >= rec.baseLength &&
      this.#hash.digest(current.subarray(0, rec.baseLength), this.#header.seed) === rec.baseDigest
    ) {
      return 'base'
    }
    const chunk = Math.floor(rec.offset / this.#header.blockSize)
    throw new ConflictError(
      `conflict at byte ${rec.offset} (chunk ${chunk}): ${options.target} holds neither the data this delta was made` +
        ` against nor its new data. The target changed since its digests were taken, or this ${KIND_NAMES[this.#header.kind]}` +
        ` is for another image. Stopped: ${before}. Use --force to write regardless`,
      rec.offset,
    )
  }
}
