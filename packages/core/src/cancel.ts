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

async function* pull(source: ByteSource, signal: AbortSignal): AsyncGenerator<Uint8Array> {
  const it =
    Symbol.asyncIterator in source
      ? source[Symbol.asyncIterator]()
      : (source as Iterable<Uint8Array>)[Symbol.iterator]()
  let stop!: (reason: Error) => void
  const stopped = new Promise<never>((_resolve, reject) => (stop = reject))
  const onAbort = (): void => stop(signal.reason as Error)
  signal.addEventListener('abort', onAbort, { once: true })
  // Not every run is cancelled: a rejection nobody awaits must not count as unhandled.
  stopped.catch(() => {})
  let done = false
  let sinceTurn = 0
  try {
    for (;;) {
      // A source read without waiting (a file) gives the event loop, and so a signal handler, no turn.
      if (sinceTurn >= TURN_BYTES) {
        sinceTurn = 0
        await yieldToSignals()
      }
      checkCancelled(signal)
      const next = await Promise.race([it.next(), stopped])
      if (next.done === true) {
        done = true
        return
      }
      sinceTurn += next.value.length
      yield next.value
    }
  } finally {
    signal.removeEventListener('abort', onAbort)
    if (!done) {
      // A read may still be pending: destroying the stream ends it; return() would wait for it.
      ;(source as { destroy?: () => void }).destroy?.()
      void it.return?.()
    }
  }
}

/** One turn of the event loop, where signal handlers run. */
export function yieldToSignals(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve))
}
