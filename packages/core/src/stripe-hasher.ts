import { readFileSync, readSync } from 'node:fs'

// The hashing of one stripe, for the worker threads and the main thread of
// stripeDigests alike: positional reads straight into the memory of an own
// xxhash WebAssembly instance, hashed there, with no copy, promise or
// allocation per chunk.

export interface HashJob {
  files: { fd: number; size: number }[]
  chunkSize: number
  readSize: number
  seed: string
  stripeChunks: number
}

export interface ErrorReport {
  file: number
  /** Where the file ended, short of its size. */
  at?: number
  message?: string
}

/** Per image, how many chunk digests of the stripe were written to its place, or what went wrong. */
export type StripeResult = { counts: number[] } | { error: ErrorReport }

/** Bytes of one stripe's digests of every file: a slot of the memory they are written to. */
export function slotBytes(job: HashJob): number {
  return job.files.length * job.stripeChunks * 8
}

/** Where in the memory the digests of file `file` go in slot `slot`. */
export function slotOffset(job: HashJob, slot: number, file: number): number {
  return slot * slotBytes(job) + file * job.stripeChunks * 8
}

interface XxhExports {
  mem: { buffer: ArrayBuffer; grow(pages: number): number }
  xxh64: (ptr: number, length: number, seed: bigint) => bigint
}

// The project's lib setting (ES2022, no DOM) leaves WebAssembly undeclared.
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { exports: unknown }
}

/**
 * The hasher of stripes of `job`'s files, on the calling thread: it writes a
 * stripe's digests to a slot of `results` (see slotOffset), which the caller
 * reuses once they are taken.
 */
export function stripeHasher(job: HashJob, results: ArrayBufferLike): (stripe: number, slot: number) => StripeResult {
  const wasm = readFileSync(new URL('../workerd/xxhash.wasm', import.meta.resolve('xxhash-wasm')))
  const exports = new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports as XxhExports
  const B = job.chunkSize
  const READ = Math.max(B, Math.floor(job.readSize / B) * B)
  const pages = Math.ceil(READ / 65536) - exports.mem.buffer.byteLength / 65536
  if (pages > 0) exports.mem.grow(pages)
  const memory = new Uint8Array(exports.mem.buffer, 0, READ)
  const xxh64 = exports.xxh64
  const seed = BigInt.asIntN(64, BigInt(job.seed))

  /** Hashes [from, to) of fd into out; -1, or where the file ended. */
  function hashRange(fd: number, from: number, to: number, out: BigUint64Array): number {
    let k = 0
    for (let pos = from; pos < to;) {
      const want = Math.min(READ, to - pos)
      let got = 0
      while (got < want) {
        const n = readSync(fd, memory, got, want - got, pos + got)
        if (n === 0) return pos + got
        got += n
      }
      for (let at = 0; at < want; at += B) out[k++] = xxh64(at, Math.min(B, want - at), seed)
      pos += want
    }
    return -1
  }

  return (stripe, slot) => {
    const counts: number[] = []
    const start = stripe * job.stripeChunks * B
    for (let f = 0; f < job.files.length; f++) {
      const { fd, size } = job.files[f] as HashJob['files'][number]
      const end = Math.min(size, start + job.stripeChunks * B)
      const count = Math.max(0, Math.ceil((end - start) / B))
      const out = new BigUint64Array(results, slotOffset(job, slot, f), count)
      let short: number
      try {
        short = hashRange(fd, start, end, out)
      } catch (err) {
        return { error: { file: f, message: (err as Error).message } }
      }
      if (short >= 0) return { error: { file: f, at: short } }
      counts.push(count)
    }
    return { counts }
  }
}
