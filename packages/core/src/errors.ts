// Every failure the tools report is one of these: the code says what kind of
// failure it is, the exit status is what a cron script sees.

export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2
export const EXIT_CONFLICT = 3

export type ErrorCode =
  'EUSAGE' | 'ETRUNCATED' | 'ECORRUPT' | 'EBADSTREAM' | 'ECONFLICT' | 'EDEVICE' | 'EINPUT' | 'ELOCKED' | 'ECANCELED'

const STATUS: Record<ErrorCode, number> = {
  EUSAGE: EXIT_USAGE,
  ETRUNCATED: EXIT_FAILURE,
  ECORRUPT: EXIT_FAILURE,
  EBADSTREAM: EXIT_FAILURE,
  ECONFLICT: EXIT_CONFLICT,
  EDEVICE: EXIT_FAILURE,
  EINPUT: EXIT_FAILURE,
  ELOCKED: EXIT_FAILURE,
  // A cancellation exits as the shell reports a signal: 128 + its number (see CancelledError).
  ECANCELED: EXIT_FAILURE,
}

export class BlockpipeError extends Error {
  readonly code: ErrorCode
  readonly exitCode: number

  constructor(code: ErrorCode, message: string, exitCode = STATUS[code]) {
    super(message)
    this.name = 'BlockpipeError'
    this.code = code
    this.exitCode = exitCode
  }
}

/** A bad flag or argument: the user can fix the command line. */
export class UsageError extends BlockpipeError {
  constructor(message: string) {
    super('EUSAGE', message)
    this.name = 'UsageError'
  }
}

/** The target is not the one the stream was made for. */
export class ConflictError extends BlockpipeError {
  readonly offset: number | undefined

  constructor(message: string, offset?: number) {
    super('ECONFLICT', message)
    this.name = 'ConflictError'
    this.offset = offset
  }
}

/** Where in a stream a problem was met: record number and byte offset. */
export interface StreamPosition {
  /** Records before this one, the header not counted. */
  record: number
  /** Byte offset of the record in the stream. */
  offset: number
}

/**
 * The stream ended before its end record. `position` is where the cut
 * record began; everything before it was whole.
 */
export class TruncatedStreamError extends BlockpipeError {
  readonly position: StreamPosition

  constructor(message: string, position: StreamPosition) {
    super('ETRUNCATED', message)
    this.name = 'TruncatedStreamError'
    this.position = position
  }
}

/** A record failed its checksum, or broke a rule of the format. */
export class CorruptStreamError extends BlockpipeError {
  readonly position: StreamPosition

  constructor(code: 'ECORRUPT' | 'EBADSTREAM', message: string, position: StreamPosition) {
    super(code, message)
    this.name = 'CorruptStreamError'
    this.position = position
  }
}

/**
 * Bytes follow the end record: the stream before them is whole, and what
 * follows is a second stream appended to it (`cat a b`) or garbage.
 */
export class TrailingDataError extends CorruptStreamError {
  constructor(position: StreamPosition, message = trailingMessage(position.offset)) {
    super('EBADSTREAM', message, position)
    this.name = 'TrailingDataError'
  }
}

function trailingMessage(offset: number): string {
  return (
    `trailing data after the end record at byte ${offset}: the stream is whole up to there, but more input follows` +
    ' (two streams joined into one? apply each on its own)'
  )
}

export function isStreamError(err: unknown): err is TruncatedStreamError | CorruptStreamError {
  return err instanceof TruncatedStreamError || err instanceof CorruptStreamError
}

/** The same stream error with `suffix` added to its message: where it left the target, what to do. */
export function extendStreamError(
  err: TruncatedStreamError | CorruptStreamError,
  suffix: string,
): TruncatedStreamError | CorruptStreamError {
  if (err instanceof TrailingDataError) return new TrailingDataError(err.position, `${err.message}${suffix}`)
  return err instanceof TruncatedStreamError
    ? new TruncatedStreamError(`${err.message}${suffix}`, err.position)
    : new CorruptStreamError(err.code as 'ECORRUPT' | 'EBADSTREAM', `${err.message}${suffix}`, err.position)
}

export function isBlockpipeError(err: unknown): err is BlockpipeError {
  return err instanceof BlockpipeError
}
