import { fstatSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, resolve } from 'node:path'
import { CancelledError, abortable, checkCancelled } from './cancel.js'
import {
  close,
  discardTarget,
  openSource,
  openTarget,
  placeTarget,
  readAt,
  targetState,
  type Device,
  type Target,
  type TargetState,
} from './device.js'
import { applyEraRange } from './erarange-apply.js'
import { peekBytes } from './erarange.js'
import { BlockpipeError, ConflictError, UsageError, extendStreamError, isStreamError } from './errors.js'
import {
  HEADER_SIZE,
  KIND_NAMES,
  RECORD_FLAG_BASE,
  StreamKind,
  decodeHeader,
  decodeHeaderFixed,
  isFull,
  type EndInfo,
  type StreamHeader,
} from './format.js'
import { loadHash, type Hash64 } from './hash.js'
import type { StreamRecord } from './parse.js'
import { lockAll, releaseAll, type HeldLock } from './lock.js'
import { Progress } from './progress.js'
import { TargetWriter, WriterFront, type Piece } from './target-writer.js'
import { StreamReader, type ByteSource } from './read.js'
import { sniffInput } from './record-source.js'
import { formatBytes } from './size.js'
import { createSpool, fileChunks, tee } from './spool.js'
import { TARGET_ID_KEY, UndoJournal, boundTarget, isBoundJournal, targetId } from './undo.js'
import { isZero } from './zero.js'

// The apply engine behind era-apply and bpatch. Records are checked as they
// arrive (the reader verifies checksums and order), delta records are checked
// against the target (base digest), old contents go to the undo journal
// before the target is written, and the target is synced before success.
//
// What is guaranteed:
// - Nothing is written before the stream header has been read and the target
//   has passed every check that can be made from it (preflight); the target
//   is not even resized before the first record is written.
// - --spool: the whole stream is stored and verified (every checksum, the end
//   record, and for a delta every base digest against the target, read only)
//   before the target is opened to write. A stream that is not whole leaves
//   the target as it was, a target that did not exist is not created.
// - --undo: before any byte of the target changes (resize included), the old
//   contents of that byte are in the journal and the journal is synced.

export interface ApplyOptions {
  /** Names the program in messages and in the commands they suggest; it decides nothing. */
  program: 'era-apply' | 'bpatch'
  target: string
  /**
   * A delta stream (from bdiff) has every chunk checked against the target's
   * base digests (`check`, the default), or is refused (`refuse`: era-apply
   * takes block streams). --force writes it without checks either way.
   */
  deltas?: 'check' | 'refuse'
  /** An empty input is an ERARANGE stream without records (a night without changes), applied with a warning. */
  acceptEmpty?: boolean
  /** Write regardless: a delta without its checks, a partial stream to a new target, a size that does not fit. */
  force?: boolean
  /** A directory or new file name: store and verify the whole stream first. */
  spool?: string
  /** A new file: journal the old contents of every region overwritten. */
  undo?: string
  progress?: boolean
  /** Aborted (by runMain, on SIGINT, SIGTERM or SIGHUP): the apply stops between two writes. */
  signal?: AbortSignal
  /** Notes and warnings. */
  stderr?: NodeJS.WritableStream
}

export interface ApplyResult {
  header: StreamHeader
  /** The end record; undefined when an unfinished undo journal was rolled back, or for an ERARANGE stream. */
  end: EndInfo | undefined
  records: number
  /** Bytes written to the target. */
  written: number
  /** Bytes of records the target already held (a re-run, or holes). */
  skipped: number
  created: boolean
}

export async function applyStream(input: ByteSource, options: ApplyOptions): Promise<ApplyResult> {
  // Before anything of the target, the journal or the stream is read.
  const locks = lockApply(options)
  try {
    return await applyLocked(input, options)
  } finally {
    releaseAll(locks)
  }
}

/** Locks the target, the undo journal and a named spool file (a spool directory gets a name of this process). */
function lockApply(options: ApplyOptions): HeldLock[] {
  const paths = [{ path: options.target, what: options.target }]
  if (options.undo !== undefined) paths.push({ path: options.undo, what: `the undo file ${options.undo}` })
  if (options.spool !== undefined && !isDirectory(options.spool)) {
    paths.push({ path: options.spool, what: `the spool file ${options.spool}` })
  }
  return lockAll(paths, { program: options.program, stderr: options.stderr })
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    // Not there, or not reachable: the spool says why.
    return false
  }
}

async function applyLocked(input: ByteSource, options: ApplyOptions): Promise<ApplyResult> {
  const hash = await loadHash()
  input = abortable(input, options.signal)
  // The original era_copy's stream has no header: its first 8 bytes tell it.
  const sniffed = await sniffInput(input)
  const empty = sniffed.format === 'empty' && options.acceptEmpty === true
  if (sniffed.format === 'erarange' || empty) return applyEraRange(hash, sniffed.source, options, empty)
  input = sniffed.source
  let spoolAt = options.spool
  if (spoolAt === undefined) {
    // A bound undo journal is checked whole against the target before the
    // rollback writes anything: it is stored first, as with --spool.
    const peeked = await peekHeader(hash, input)
    input = peeked.source
    if (peeked.header === undefined || !isBoundJournal(peeked.header) || options.force === true) {
      return applyFrom(hash, input, options, 'stream')
    }
    spoolAt = autoSpoolDirectory(options.target)
  }
  const mode = options.spool === undefined ? 'checked' : 'spool'
  const spool = createSpool(spoolAt, options.program)
  try {
    await verifySpooled(hash, tee(input, spool.sink, spool.path), options, mode)
    return await applyFrom(hash, abortable(fileChunks(spool.fd, spool.sink.position), options.signal), options, mode)
  } finally {
    spool.close()
  }
}

/** Where an undo journal is stored to be checked: beside a file target, in the temporary directory for a device. */
function autoSpoolDirectory(target: string): string {
  const state = targetState(target)
  return state.blockDevice ? tmpdir() : dirname(resolve(target))
}

/**
 * `spool`: the stream was stored and verified whole (--spool); `checked`: a
 * bound undo journal stored and checked against the target, applied as far
 * as it is whole; `stream`: applied as it arrives.
 */
type Mode = 'spool' | 'checked' | 'stream'

/** The header of a blockpipe stream, if its start is a valid one, and the stream again from its first byte. */
async function peekHeader(hash: Hash64, input: ByteSource): Promise<{ header?: StreamHeader; source: ByteSource }> {
  let peeked = await peekBytes(input, HEADER_SIZE)
  const at = { record: 0, offset: 0 }
  try {
    const { metadataLength } = decodeHeaderFixed(peeked.head, at)
    const length = HEADER_SIZE + metadataLength
    if (peeked.head.length < length) peeked = await peekBytes(peeked.source, length)
    const head = peeked.head
    const header = decodeHeader(hash, head.subarray(0, HEADER_SIZE), head.subarray(HEADER_SIZE, length), at)
    return { header, source: peeked.source }
  } catch {
    // Not a whole, valid header: the reader says what is wrong with it.
    return { source: peeked.source }
  }
}

/** What the target is now, without opening it to write. */
/** Refuses a stream this program must not apply, or a target it does not fit, before anything is written. */
function preflight(header: StreamHeader, state: TargetState, options: ApplyOptions, resuming: () => boolean): void {
  const { target } = options
  const force = options.force === true
  if (header.kind === StreamKind.DIGEST) {
    throw new BlockpipeError('EINPUT', 'this is a digest stream (from bsum): it holds no data; give it to bdiff')
  }
  if (header.kind === StreamKind.DELTA && options.deltas === 'refuse' && !force) {
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
      if (!isFull(header) && !force && state.exists && !state.blockDevice && state.size !== header.size) {
        const why = resizeConflict(header, state, target)
        // A forced apply that was cut short left the target between sizes: its journal says so.
        if (why !== undefined && !resuming()) throw new ConflictError(why)
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

/** Why an incremental stream may not change the size of the image it is applied to, if it may not. */
function resizeConflict(header: StreamHeader, state: TargetState, target: string): string | undefined {
  const sizes = `${target} is ${state.size} bytes (${formatBytes(state.size)}), the stream is for a device of ${header.size} bytes (${formatBytes(header.size)})`
  if (header.size > state.size) {
    // thin_delta reports the blocks of a grown volume; dm-era does not report blocks it gained.
    if (header.metadata.input === 'thin_delta') return undefined
    return (
      `${sizes}: the device grew since the last backup, and an incremental stream does not hold the blocks it ` +
      'gained. Take a full copy (era-copy --all) or sync it with bsum | bdiff | bpatch; --force applies it anyway, ' +
      'with whatever the new blocks hold left as zeros'
    )
  }
  return (
    `${sizes}: applied, it would cut the image short, and this may be the backup of another device. ` +
    'Check the target; if the device really shrank, pass --force'
  )
}

/** Whether an undo file holds the unfinished journal of this very stream: an apply being continued. */
function resumes(hash: Hash64, header: StreamHeader, state: TargetState, options: ApplyOptions): boolean {
  if (options.undo === undefined) return false
  try {
    return UndoJournal.check(hash, options.undo, header, { path: options.target, ...state }) === 'resume'
  } catch {
    // Refused: the journal itself is reported when it is opened.
    return false
  }
}

/** --spool, first pass: the whole stream is read, stored and checked; the target is only read. */
async function verifySpooled(hash: Hash64, input: ByteSource, options: ApplyOptions, mode: Mode): Promise<void> {
  const untouched = `nothing was written to ${options.target}`
  const reader = await openReader(hash, input, options, untouched)
  const { header } = reader
  const state = targetState(options.target)
  preflight(header, state, options, () => resumes(hash, header, state, options))
  if (options.undo !== undefined) {
    UndoJournal.check(hash, options.undo, header, { path: options.target, ...state })
  }
  const progress = options.progress === true ? new Progress(`${options.program} (spooling)`, header.size) : undefined
  const checker = needsBaseChecks(header, options)
    ? new BaseChecker(hash, openSource(options.target), header)
    : undefined
  // A bound journal's conflicts count once it is known to be whole: see unfinishedConflict.
  let conflict: ConflictError | undefined
  try {
    for await (const rec of reader.records()) {
      try {
        checker?.check(rec, options, 'nothing was written')
      } catch (err) {
        if (mode !== 'checked' || !(err instanceof ConflictError)) throw err
        conflict ??= err
      }
      progress?.update(rec.offset + rec.length)
    }
    if (conflict !== undefined) throw conflict
  } catch (err) {
    // The journal of an interrupted apply has no end record: what it holds is rolled back, with a warning.
    if (mode === 'checked' && isStreamError(err)) return unfinishedConflict(header, options, conflict)
    throw annotate(
      err,
      header.kind === StreamKind.UNDO && isStreamError(err)
        ? `${untouched}. This undo journal has no valid end record: it belongs to an interrupted apply, or was` +
            ' cut or damaged since. To roll back the regions it holds as it is, run without --spool'
        : untouched,
    )
  } finally {
    if (checker) close(checker.dev)
  }
}

/**
 * After a crash or power loss, the target writes that followed an unfinished
 * journal's last sync may be torn (part new, part old): its digests cannot
 * tell a torn region from another image. On the target it was made for, the
 * regions are restored with a warning; on any other, nothing is written.
 */
function unfinishedConflict(header: StreamHeader, options: ApplyOptions, conflict: ConflictError | undefined): void {
  if (conflict === undefined) return
  const id = targetId(statSync(options.target))
  if (id !== header.metadata[TARGET_ID_KEY]) throw conflict
  options.stderr?.write(
    `${options.program}: warning: this unfinished undo journal does not match ${options.target} at byte` +
      ` ${conflict.offset}: regions written just before the interruption may be torn, so its regions are` +
      ' restored without that check\n',
  )
}

async function openReader(hash: Hash64, input: ByteSource, options: ApplyOptions, state: string) {
  try {
    return await StreamReader.open(input, hash)
  } catch (err) {
    throw annotate(err, state, advice(options))
  }
}

/** Without --spool or --undo, a failed apply says what they are for. */
function advice(options: ApplyOptions): string {
  return options.spool === undefined && options.undo === undefined
    ? '; --spool keeps a cut or corrupt stream from touching the target, --undo makes an apply reversible'
    : ''
}

function needsBaseChecks(header: StreamHeader, options: ApplyOptions): boolean {
  return (header.kind === StreamKind.DELTA || isBoundJournal(header)) && options.force !== true
}

/** Says what a rollback cannot check: an undo journal without digests, or one made for another file. */
function warnJournal(header: StreamHeader, options: ApplyOptions, state: TargetState & { id?: string }): void {
  if (header.kind !== StreamKind.UNDO) return
  const say = (text: string): void => void options.stderr?.write(`${options.program}: warning: ${text}\n`)
  if (!isBoundJournal(header)) {
    say(
      'this undo journal is of an older kind, without the digests of what its apply wrote: it cannot be checked' +
        ` against ${options.target}, and is applied as it is`,
    )
  } else if (state.id !== undefined && state.id !== header.metadata[TARGET_ID_KEY]) {
    say(
      `this undo journal was made for ${boundTarget(header.metadata)};` +
        ` ${options.target} is ${state.id} (a copy?): its digests decide`,
    )
  }
}

/**
 * A stream or I/O error says what state it left the target in, and what to
 * do about it. Refusals and conflicts say that themselves.
 */
function annotate(err: unknown, state: string, advice = ''): unknown {
  if (err instanceof CancelledError) return err.extend(`: ${state}`)
  if (isStreamError(err)) return extendStreamError(err, `: ${state}${advice}`)
  if (err instanceof BlockpipeError && err.code === 'EDEVICE') {
    return new BlockpipeError('EDEVICE', `${err.message}: ${state}${advice}`)
  }
  return err
}

async function applyFrom(hash: Hash64, input: ByteSource, options: ApplyOptions, mode: Mode): Promise<ApplyResult> {
  const spooled = mode === 'spool'
  const reader = await openReader(hash, input, options, `nothing was written to ${options.target}`)
  const { header } = reader
  if (mode === 'stream') {
    const state = targetState(options.target)
    preflight(header, state, options, () => resumes(hash, header, state, options))
  }
  const target = openTarget(options.target, { create: header.kind === StreamKind.BLOCK })
  let journal: UndoJournal | undefined
  let applier: Applier | undefined
  let result: ApplyResult
  try {
    if (options.undo !== undefined) {
      journal = await UndoJournal.open(hash, { path: options.undo, stream: header, target, program: options.program })
    }
    warnJournal(header, options, { ...target, exists: target.existed, id: targetId(fstatSync(target.fd)) })
    applier = new Applier(hash, header, target, options, journal)
    let rolledBackPartly = false
    try {
      for await (const rec of reader.records()) await applier.record(rec)
    } catch (err) {
      if (header.kind !== StreamKind.UNDO || spooled || !isStreamError(err)) throw err
      rolledBackPartly = true
      options.stderr?.write(
        `${options.program}: warning: the undo journal has no end record (${err.message}).` +
          ` It belongs to an apply that was interrupted: the ${applier.records} regions it recorded were restored.` +
          ' If the journal was instead cut in transit, regions after it were not restored.\n',
      )
    }
    await applier.finish()
    placeTarget(target)
    await journal?.finish()
    journal = undefined
    result = {
      header,
      end: rolledBackPartly ? undefined : reader.end,
      records: applier.records,
      written: applier.written,
      skipped: applier.skipped,
      created: !target.existed,
    }
  } catch (err) {
    throw failed(err, options, target, journal, applier, spooled)
  } finally {
    journal?.close()
    close(target)
  }
  return result
}

/**
 * Cleans up after a failed apply and says where it left the target. A file
 * this apply created holds nothing anyone had before: rather than leave a
 * half-written image that looks like a backup, it is removed. An undo journal
 * this run started for a target it has not changed holds nothing either.
 */
function failed(
  err: unknown,
  options: ApplyOptions,
  target: Target,
  journal: UndoJournal | undefined,
  applier: Applier | undefined,
  spooled: boolean,
): unknown {
  const changed = applier?.changed === true
  discardTarget(target)
  if (journal?.created === true && (!changed || !target.existed)) rmSync(journal.path, { force: true })
  let state: string
  let hint = advice(options)
  if (err instanceof CancelledError) return err.extend(`: ${cancelledState(options, target, applier)}`)
  if (!target.existed) {
    state = `${target.path} was new and has been removed`
  } else if (!changed) {
    state = `nothing was written to ${target.path}`
  } else {
    state = `${applier.records} records were applied before it, ${target.path} is incomplete (part new, part old)`
    if (options.undo !== undefined) {
      hint =
        `; to finish, run it again with the whole stream and the same --undo ${options.undo};` +
        ` to roll back: ${options.program} ${target.path} < ${options.undo}`
    }
  }
  return annotate(err, spooled && isStreamError(err) ? `the spool file was damaged: ${state}` : state, hint)
}

/** Where a cancelled apply left its target, and which command continues or rolls back. */
function cancelledState(options: ApplyOptions, target: Target, applier: Applier | undefined): string {
  const { program, undo } = options
  if (!target.existed)
    return `${target.path} was not created (nothing is left at that name); run the same command again`
  if (applier?.changed !== true) return `${target.path} is untouched (nothing was written to it)`
  return (
    `${target.path} is partly updated (${applier.records} records applied, part new, part old): run the same` +
    ` command again with the whole stream to continue` +
    (undo === undefined ? '' : `, or roll back with: ${program} ${target.path} < ${undo}`)
  )
}

/** A blockpipe stream's records: base checks, then the target writer. */
class Applier extends WriterFront {
  readonly #options: ApplyOptions
  readonly #journal: UndoJournal | undefined
  readonly #checker: BaseChecker | undefined

  constructor(hash: Hash64, header: StreamHeader, target: Target, options: ApplyOptions, journal?: UndoJournal) {
    super(
      new TargetWriter(target, journal, {
        program: options.program,
        size: header.size,
        progress: options.progress,
        noteDeviceTail: header.kind !== StreamKind.BLOCK,
        stderr: options.stderr,
      }),
    )
    this.#options = options
    this.#journal = journal
    // A bound journal was checked whole before the first write (unfinished, it may not match: see unfinishedConflict).
    const checked = isBoundJournal(header)
    this.#checker = needsBaseChecks(header, options) && !checked ? new BaseChecker(hash, target, header) : undefined
  }

  async record(rec: StreamRecord): Promise<void> {
    // Between two writes, never in the middle of one: a flushed batch is journaled, synced and written whole.
    checkCancelled(this.#options.signal)
    // A record an interrupted run journaled may have been written, in part:
    // its chunk can be torn, so its base digest proves nothing. It passed
    // that check in the run that journaled it. Past the old end nothing needs
    // journaling, so there any record of that run may have been written.
    const journal = this.#journal
    const journaled =
      journal !== undefined && !journal.created && (rec.offset < journal.resumedUpTo || rec.offset >= journal.oldSize)
    if (this.#checker !== undefined && !journaled) {
      const verdict = this.#checker.check(rec, this.#options, `${this.records} records were applied before it`)
      if (verdict === 'same') {
        this.writer.skip(rec)
        return
      }
    }
    // Digest streams (SUMS records) were refused by preflight.
    await this.writer.put(rec as Piece)
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
    // Undo records are not cut to the block size: up to the format's record length.
    if (span > this.#buf.length) this.#buf = Buffer.allocUnsafe(span)
    const got = readAt(this.dev, this.#buf, span, rec.offset)
    const current = this.#buf.subarray(0, got)
    const now = current.subarray(0, rec.length)
    const same = now.length === rec.length && (rec.type === 'ZERO' ? isZero(now) : now.equals(rec.payload))
    if (same) return 'same'
    // Past the end of the image the delta was made against, the target holds
    // holes (grown by this apply or an interrupted one) or the new data. Any
    // other data there belongs to another image of the new size: keep it.
    if (!hasBase && isZero(current)) return 'base'
    if (
      hasBase &&
      got >= rec.baseLength &&
      this.#hash.digest(current.subarray(0, rec.baseLength), this.#header.seed) === rec.baseDigest
    ) {
      return 'base'
    }
    const chunk = Math.floor(rec.offset / this.#header.blockSize)
    if (this.#header.kind === StreamKind.UNDO) {
      throw new ConflictError(
        `conflict at byte ${rec.offset}: ${options.target} holds neither what the apply this undo journal` +
          ' undoes wrote there nor the old data it restores. The target changed since, this journal is for' +
          ' another image, or undo journals are applied out of order (newest first, each to the image its' +
          ` apply left). Stopped: ${before}. Use --force to write regardless`,
        rec.offset,
      )
    }
    const holds = hasBase
      ? 'neither the data this delta was made against nor its new data'
      : `data past the end of the ${this.#header.baseSize}-byte image this delta was made against (neither zeros nor its new data)`
    throw new ConflictError(
      `conflict at byte ${rec.offset} (chunk ${chunk}): ${options.target} holds ${holds}.` +
        ` The target changed since its digests were taken, or this ${KIND_NAMES[this.#header.kind]}` +
        ` is for another image. Stopped: ${before}. Use --force to write regardless`,
      rec.offset,
    )
  }
}
