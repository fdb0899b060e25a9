import { extname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { BlockpipeError } from './errors.js'
import type { Device } from './device.js'
import {
  slotBytes,
  slotOffset,
  stripeHasher,
  type ErrorReport,
  type HashJob,
  type StripeResult,
} from './stripe-hasher.js'

// Chunk digests of one or more images at once, in stripes hashed in turn by
// worker threads and by the main thread itself, each reading its own stripes
// (positional reads, its own xxhash instance); the batches come out in
// order. Node on one core hashes at half the speed of C; two cores make up
// for it. The main thread takes a share rather than a second worker: a
// worker costs a process about 10 MB.

/** Bytes of image a stripe covers (rounded to whole chunks). */
export const STRIPE_BYTES = 16 * 1024 * 1024
/** Bytes a thread reads at a time: small enough to stay in the CPU cache. */
export const READ_BYTES = 256 * 1024
/** Stripes a worker may hash before the main thread has taken them. */
const AHEAD = 2

/** What a hash worker is given (see hash-worker.ts). */
export interface StripeJob extends HashJob {
  stripes: number
  worker: number
  /** Threads hashing: the workers and the main thread, which hashes the stripes of index workers - 1. */
  workers: number
  ahead: number
  control: SharedArrayBuffer
  /** The worker's `ahead` + 1 slots of digests. */
  results: SharedArrayBuffer
}

export interface DigestBatch {
  /** Index of the first chunk of the batch. */
  first: number
  /**
   * Per image, its chunks' xxh64 digests as 8 little-endian bytes each;
   * short or empty where the image ends. Memory that later batches reuse:
   * valid until the next batch is asked for.
   */
  digests: Buffer[]
}

type Message = StripeResult & { stripe: number; slot?: number }

export interface StripeOptions {
  /** Threads hashing, the main thread included (default 2). */
  threads?: number
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
  const count = Math.max(1, Math.min(options.threads ?? 2, stripes))
  const main = count - 1
  const control = new SharedArrayBuffer(4 * count)
  const flags = new Int32Array(control)
  const job: HashJob = {
    files: images.map((d) => ({ fd: d.fd, size: d.size })),
    chunkSize,
    readSize: options.readBytes ?? READ_BYTES,
    seed: seed.toString(),
    stripeChunks,
  }
  const queues: Message[][] = []
  const exits: Promise<unknown>[] = []
  let wake: (() => void) | undefined
  let failure: Error | undefined
  const memories: ArrayBufferLike[] = []
  for (let w = 0; w < main; w++) {
    const results = new SharedArrayBuffer((AHEAD + 1) * slotBytes(job))
    memories.push(results)
    const workerData: StripeJob = { ...job, stripes, worker: w, workers: count, ahead: AHEAD, control, results }
    const worker = new Worker(workerURL, { workerData })
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
  let hash: ((stripe: number, slot: number) => StripeResult) | undefined
  try {
    for (let stripe = 0; stripe < stripes; stripe++) {
      const w = stripe % count
      let m: Message
      if (w === main) {
        if (hash === undefined) {
          const own = new ArrayBuffer(slotBytes(job))
          memories.push(own)
          hash = stripeHasher(job, own)
        }
        m = { stripe, slot: 0, ...hash(stripe, 0) }
      } else {
        const queue = queues[w] as Message[]
        while (queue.length === 0 && failure === undefined) await new Promise<void>((resolve) => (wake = resolve))
        if (failure !== undefined) throw failure
        m = queue.shift() as Message
        Atomics.add(flags, 1 + w, 1)
        Atomics.notify(flags, 1 + w)
      }
      if ('error' in m) throw readError(images[m.error.file] as Device, m.error)
      const memory = memories[w] as ArrayBufferLike
      const slot = m.slot as number
      yield {
        first: stripe * stripeChunks,
        digests: m.counts.map((n, f) => Buffer.from(memory, slotOffset(job, slot, f), n * 8)),
      }
    }
  } finally {
    Atomics.store(flags, 0, 1)
    for (let w = 0; w < main; w++) Atomics.notify(flags, 1 + w)
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
