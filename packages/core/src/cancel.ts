import { constants } from 'node:os'
import { BlockpipeError } from './errors.js'
import type { ByteSource } from './read.js'

// Cancellation: runMain turns SIGINT, SIGTERM and SIGHUP into an abort, and
// the apply engines stop between writes, never in the middle of one.

export const CANCEL_SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const
export type CancelSignal = (typeof CANCEL_SIGNALS)[number]

/** A run stopped by a signal; it exits 128 + the signal's number, as a shell reports one. */
export class CancelledError extends BlockpipeError {
  readonly signal: CancelSignal

  constructor(signal: CancelSignal, message = `interrupted by ${signal}`) {
    super('ECANCELED', message, 128 + constants.signals[signal])
    this.name = 'CancelledError'
    this.signal = signal
  }

  /** The same cancellation, saying more: where it left the target, what to do. */
  extend(suffix: string): CancelledError {
    return new CancelledError(this.signal, `${this.message}${suffix}`)
  }
}

/** Throws the cancellation, if the run was cancelled. */
export function checkCancelled(signal: AbortSignal | undefined): void {
  if (signal?.aborted === true) throw signal.reason
}

/**
 * `source`, stopped by `signal` even while it waits for input (a pipe whose
 * writer is idle): the pending read is abandoned and the source destroyed.
 */
export function abortable(source: ByteSource, signal: AbortSignal | undefined): ByteSource {
  if (signal === undefined) return source
  return pull(source, signal)
}

const TURN_BYTES = 16 << 20

// No Promise.race against a promise that lives as long as the run: every race
// would leave a reaction on it holding the chunk it resolved with, and the
// whole stream would stay in memory. A signal destroys the source instead,
// which ends a pending read.
async function* pull(source: ByteSource, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const destroy = (): void => (source as { destroy?: () => void }).destroy?.()
  signal.addEventListener('abort', destroy, { once: true })
  let sinceTurn = 0
  try {
    for await (const chunk of source) {
      // A source read without waiting (a file) gives the event loop, and so a signal handler, no turn.
      if (sinceTurn >= TURN_BYTES) {
        sinceTurn = 0
        await yieldToSignals()
      }
      checkCancelled(signal)
      sinceTurn += chunk.length
      yield chunk
    }
  } catch (err) {
    // A destroyed source ends with an error of its own: the signal is what happened.
    checkCancelled(signal)
    throw err
  } finally {
    signal.removeEventListener('abort', destroy)
  }
  checkCancelled(signal)
}

/** One turn of the event loop, where signal handlers run. */
export function yieldToSignals(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
