import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { BlockpipeError } from './errors.js'
import type { Device } from './device.js'

// Chunk digests of one or more images at once, by worker threads that each
// read and hash their own stripes of the images (positional reads, their own
// xxhash instance); the batches come back here in order. Node on one core
// hashes at half the speed of C; two cores make up for it.

/** Bytes of image a stripe covers (rounded to whole chunks). */
export const STRIPE_BYTES = 16 * 1024 * 1024
/** Bytes a worker reads at a time: small enough to stay in the CPU cache. */
export const READ_BYTES = 256 * 1024
/** Stripes a worker may hash before the main thread has taken them. */
const AHEAD = 2

/** What a hash worker is given (see hash-worker.ts). */
export interface StripeJob {
  files: { fd: number; size: number }[]
  chunkSize: number
  readSize: number
  seed: string
  stripeChunks: number
  stripes: number
  worker: number
  workers: number
  ahead: number
  control: SharedArrayBuffer
}

export interface DigestBatch {
  /** Index of the first chunk of the batch. */
  first: number
  /** Per image, its chunks' xxh64 digests as 8 little-endian bytes each; short or empty where the image ends. */
  digests: Buffer[]
}

type Message = { stripe: number; digests: ArrayBuffer[] } | { stripe: number; error: ErrorReport }
interface ErrorReport {
  file: number
  at?: number
  message?: string
}

export interface StripeOptions {
  workers?: number
  stripeBytes?: number
  readBytes?: number
}

/** The chunk digests of `images`, a batch per stripe, in order. */
export async function* stripeDigests(
  images: Device[],
  chunkSize: number,
  seed: bigint,
  options: StripeOptions = {},
): AsyncGenerator<DigestBatch> {
  const size = Math.max(0, ...images.map((d) => d.size))
  const stripeChunks = Math.max(1, Math.floor((options.stripeBytes ?? STRIPE_BYTES) / chunkSize))
  const stripes = Math.ceil(Math.ceil(size / chunkSize) / stripeChunks)
  if (stripes === 0) return
  const count = Math.max(1, Math.min(options.workers ?? 2, stripes))
  const control = new SharedArrayBuffer(4 * (1 + count))
  const flags = new Int32Array(control)
  const queues: Message[][] = []
  const exits: Promise<unknown>[] = []
  let wake: (() => void) | undefined
  let failure: Error | undefined
  for (let w = 0; w < count; w++) {
    const job: StripeJob = {
      files: images.map((d) => ({ fd: d.fd, size: d.size })),
      chunkSize,
      readSize: options.readBytes ?? READ_BYTES,
      seed: seed.toString(),
      stripeChunks,
      stripes,
      worker: w,
      workers: count,
      ahead: AHEAD,
      control,
    }
    const worker = new Worker(workerURL, { workerData: job })
    const queue: Message[] = []
    worker.on('message', (m: Message) => {
      queue.push(m)
      wake?.()
    })
    worker.on('error', (err) => {
      failure ??= err
      wake?.()
    })
    queues.push(queue)
    exits.push(new Promise((resolve) => worker.once('exit', resolve)))
  }
  try {
    for (let stripe = 0; stripe < stripes; stripe++) {
      const w = stripe % count
      const queue = queues[w] as Message[]
      while (queue.length === 0 && failure === undefined) await new Promise<void>((resolve) => (wake = resolve))
      if (failure !== undefined) throw failure
      const m = queue.shift() as Message
      if ('error' in m) throw readError(images[m.error.file] as Device, m.error)
      Atomics.add(flags, 1 + w, 1)
      Atomics.notify(flags, 1 + w)
      yield { first: stripe * stripeChunks, digests: m.digests.map((b) => Buffer.from(b)) }
    }
  } finally {
    Atomics.store(flags, 0, 1)
    for (let w = 0; w < count; w++) Atomics.notify(flags, 1 + w)
    // Told to stop, a worker ends within a stripe.
    await Promise.all(exits)
  }
}

function readError(dev: Device, e: ErrorReport): BlockpipeError {
  if (e.at !== undefined) {
    return new BlockpipeError('EDEVICE', `${dev.path}: ended at byte ${e.at} while reading (did it shrink?)`)
  }
  return new BlockpipeError('EDEVICE', `${dev.path}: read error: ${e.message}`)
}

// Under the tests the sources are TypeScript, run through a loader the worker inherits.
const workerURL = new URL(`./hash-worker${extname(fileURLToPath(import.meta.url))}`, import.meta.url)
