import { randomBytes } from 'node:crypto'
import { existsSync, unlinkSync } from 'node:fs'
import type { ApplyOptions, ApplyResult } from './apply.js'
import { CancelledError, abortable, checkCancelled } from './cancel.js'
import { close, discardTarget, openTarget, placeTarget, targetState, type Target } from './device.js'
import {
  EraRangeParser,
  listEraRange,
  type EraRangeItem,
  type EraRangeOptions,
  type EraRangeRecord,
  type EraRangeSummary,
} from './erarange.js'
import { BlockpipeError, UsageError, extendStreamError, isStreamError } from './errors.js'
import { StreamKind, type StreamHeader } from './format.js'
import type { Hash64 } from './hash.js'
import { TargetWriter, WriterFront } from './target-writer.js'
import type { ByteSource } from './read.js'
import { EMPTY_WARNING, ERARANGE_WARNING } from './record-source.js'
import { formatBytes } from './size.js'
import { createSpool, fileChunks, tee } from './spool.js'
import { UndoJournal } from './undo.js'

// Applying an ERARANGE stream (era-apply and bpatch, when the input starts
// with the magic): plain writes, in stream order, into a target that exists
// or is created, and grows to the end of the furthest record.
//
// --spool stores the whole stream and checks its structure before the target
// is touched, so a stream cut inside a record or garbled where a record
// should start writes nothing; it cannot catch corrupt data or a cut between
// records. --undo journals the old contents of every region, as for any
// stream; the journal must know the size the apply leaves the target at
// before the first write, which this format tells only at its end: so
// without --spool the target must exist and may not grow, and records must
// come in ascending order (the journal is a stream too). Such a journal is
// never continued by a re-run (nothing identifies the stream): after an
// interrupted apply, roll it back first.

/** `empty`: the input has no bytes at all, a stream without records. */
export async function applyEraRange(
  hash: Hash64,
  input: ByteSource,
  options: ApplyOptions,
  empty = false,
): Promise<ApplyResult> {
  options.stderr?.write(`${options.program}: warning: ${empty ? EMPTY_WARNING : ERARANGE_WARNING}\n`)
  if (empty && !targetState(options.target).exists) {
    throw new BlockpipeError(
      'EINPUT',
      `${options.target} does not exist, and the input is empty: there is nothing to make it from; nothing was created`,
    )
  }
  const parse = { acceptEmpty: empty }
  if (options.spool === undefined) return applyRecords(hash, input, options, undefined, parse)
  const header = legacyHeader(0)
  if (options.undo !== undefined)
    UndoJournal.check(hash, options.undo, header, { path: options.target, ...targetState(options.target) })
  const spool = createSpool(options.spool, options.program)
  try {
    let known: EraRangeSummary
    try {
      known = await listEraRange(tee(input, spool.sink, spool.path), undefined, parse)
    } catch (err) {
      throw withState(err, 'nothing was written to the target')
    }
    return await applyRecords(
      hash,
      abortable(fileChunks(spool.fd, spool.sink.position), options.signal),
      options,
      known,
      parse,
    )
  } finally {
    spool.close()
  }
}

/** What the apply engine and the undo journal know of a stream: an ERARANGE stream has no header. */
function legacyHeader(size: number): StreamHeader {
  return {
    version: 0,
    kind: StreamKind.BLOCK,
    flags: 0,
    size,
    baseSize: 0,
    blockSize: 512,
    hash: 0,
    seed: 0n,
    metadata: { input: 'erarange' },
    // Nothing identifies the stream, so its undo journal is never continued.
    checksum: randomBytes(8).readBigUInt64LE(0),
    byteLength: 0,
  }
}

/** A stream error, with what state the target was left in. */
function withState(err: unknown, state: string): unknown {
  if (err instanceof CancelledError) return err.extend(`: ${state}`)
  return isStreamError(err) ? extendStreamError(err, `: ${state}`) : err
}

async function applyRecords(
  hash: Hash64,
  input: ByteSource,
  options: ApplyOptions,
  known: EraRangeSummary | undefined,
  parse: EraRangeOptions,
): Promise<ApplyResult> {
  const { program, undo } = options
  if (undo !== undefined && known === undefined && !existsSync(options.target)) {
    throw new UsageError(
      `${options.target} does not exist: with --undo, a stream of the original era_copy is applied to a new` +
        ' target only with --spool (the journal must know the size of the target before the first write)',
    )
  }
  const target = openTarget(options.target, { create: true })
  let journal: UndoJournal | undefined
  let applier: LegacyApplier
  try {
    const growTo = target.blockDevice ? target.size : Math.max(target.size, known?.end ?? 0)
    if (known !== undefined) refuseBeforehand(known, target, options)
    if (undo !== undefined) {
      journal = await UndoJournal.open(hash, { path: undo, stream: legacyHeader(growTo), target, program })
    }
    applier = new LegacyApplier(target, options, journal, known)
    const parser = new EraRangeParser(parse)
    try {
      for await (const chunk of input) {
        parser.push(chunk)
        for (let item = parser.next(); item !== null; item = parser.next()) await applier.item(item)
      }
      parser.finish()
    } catch (err) {
      // The journal of an apply that wrote nothing holds nothing: removed, its name can be given again.
      if (journal !== undefined && applier.written === 0) {
        journal.close()
        journal = undefined
        unlinkSync(undo as string)
      }
      throw withState(err, applier.state())
    }
    await applier.finish()
    placeTarget(target)
    await journal?.finish()
    journal = undefined
  } catch (err) {
    // A file this apply created holds nothing anyone had before: remove it
    // rather than leave a half-written image that looks like a backup.
    discardTarget(target)
    throw err
  } finally {
    journal?.close()
    close(target)
  }
  return {
    header: legacyHeader(applier.size),
    end: undefined,
    records: applier.records,
    written: applier.written,
    skipped: applier.skipped,
    created: !target.existed,
  }
}

/** With the whole stream spooled, what would fail half-way fails before anything is written. */
function refuseBeforehand(known: EraRangeSummary, target: Target, options: ApplyOptions): void {
  if (target.blockDevice && known.end > target.size) {
    throw new BlockpipeError(
      'EDEVICE',
      `${target.path} is too small: ${target.size} bytes (${formatBytes(target.size)}), the stream writes up to` +
        ` byte ${known.end} (${formatBytes(known.end)}); nothing was written`,
    )
  }
  if (options.undo !== undefined && !known.ascending) {
    throw new BlockpipeError(
      'EINPUT',
      'the records of this stream are not in ascending order (streams of era_copy put one after another?):' +
        ' an undo journal needs them in order; apply without --undo, or one stream at a time; nothing was written',
    )
  }
}

/** An ERARANGE stream's records: checked as their headers arrive, their data handed to the target writer. */
class LegacyApplier extends WriterFront {
  readonly #target: Target
  readonly #options: ApplyOptions
  readonly #journal: UndoJournal | undefined
  /** The target may grow only when the journal was told its final size. */
  readonly #mayGrow: boolean
  readonly #oldSize: number
  #covered = 0

  constructor(target: Target, options: ApplyOptions, journal: UndoJournal | undefined, known?: EraRangeSummary) {
    super(
      new TargetWriter(target, journal, {
        program: options.program,
        size: target.size,
        progress: options.progress,
        progressTotal: Math.max(target.size, known?.end ?? 0),
        stderr: options.stderr,
      }),
    )
    this.#target = target
    this.#options = options
    this.#journal = journal
    this.#mayGrow = journal === undefined || known !== undefined
    this.#oldSize = target.size
  }

  /** The target's size once applied. */
  get size(): number {
    return this.writer.size
  }

  async item(item: EraRangeItem): Promise<void> {
    checkCancelled(this.#options.signal)
    if (item.type === 'record') {
      this.#check(item.record)
      return
    }
    const piece = { type: 'DATA' as const, offset: item.offset, length: item.data.length, payload: item.data }
    await this.writer.put(piece, item.last)
  }

  /** Refuses a record that cannot be applied, before any of it is written. */
  #check(rec: EraRangeRecord): void {
    const { target } = this.#options
    const end = rec.offset + rec.length
    const where = `record ${rec.index} at byte ${rec.position} (image bytes ${rec.offset}..${end})`
    if (this.#target.blockDevice && end > this.#target.size) {
      throw new BlockpipeError(
        'EDEVICE',
        `${where} reaches beyond the end of ${target}, a block device of ${this.#target.size} bytes` +
          ` (${formatBytes(this.#target.size)}): the stream is for a larger device: ${this.state()}`,
      )
    }
    if (this.#journal !== undefined && rec.offset < this.#covered) {
      throw new BlockpipeError(
        'EINPUT',
        `${where} comes before the end of the record before it (${this.#covered}): an undo journal needs the` +
          ` records in ascending order: ${this.state()}`,
      )
    }
    if (!this.#mayGrow && end > this.#oldSize) {
      throw new BlockpipeError(
        'EINPUT',
        `${where} reaches beyond the end of ${target} (${this.#oldSize} bytes): with --undo, a stream of the` +
          ' original era_copy grows the target only with --spool (the journal must know the final size before' +
          ` the first write): ${this.state()}`,
      )
    }
    this.#covered = end
    this.writer.extend(end)
    // A record without data is done as soon as it is read.
    if (rec.length === 0) this.writer.skip({ offset: rec.offset, length: 0 })
  }

  /** The state the target is left in when the apply stops here, for a message. */
  state(): string {
    const { program, target, undo } = this.#options
    if (!this.#target.existed) return `${target} was new and has been removed`
    // Pieces waiting for the journal are not written: with --undo, a stream
    // refused early leaves the target untouched.
    if (this.written === 0) {
      return `nothing was written to ${target}${undo === undefined ? '' : `, and the undo file ${undo} was removed`}`
    }
    return (
      `${this.records} records were applied before it, ${target} is incomplete (part new, part old)` +
      (undo === undefined ? '' : `; roll back with: ${program} ${target} < ${undo}`)
    )
  }
}
