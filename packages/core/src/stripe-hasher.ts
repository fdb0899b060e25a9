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

/**
 * A WebAssembly module that calls xxhash's xxh64 once per chunk of a range
 * and stores the digests in memory: no BigInt per chunk in JavaScript, whose
 * garbage made V8 grow its heap by tens of MB over a large image, and one
 * call into WebAssembly per read instead of one per chunk. Built with wabt's
 * wat2wasm from:
 *
 *   (module
 *     (import "x" "mem" (memory 1))
 *     (import "x" "xxh64" (func $h (param i32 i32 i64) (result i64)))
 *     (func (export "many") (param $ptr i32) (param $len i32) (param $chunk i32) (param $seed i64) (param $out i32)
 *       (local $end i32) (local $n i32)
 *       (local.set $end (i32.add (local.get $ptr) (local.get $len)))
 *       (block $done
 *         (loop $next
 *           (br_if $done (i32.ge_u (local.get $ptr) (local.get $end)))
 *           (local.set $n (i32.sub (local.get $end) (local.get $ptr)))
 *           (if (i32.gt_u (local.get $n) (local.get $chunk)) (then (local.set $n (local.get $chunk))))
 *           (i64.store (local.get $out) (call $h (local.get $ptr) (local.get $n) (local.get $seed)))
 *           (local.set $out (i32.add (local.get $out) (i32.const 8)))
 *           (local.set $ptr (i32.add (local.get $ptr) (local.get $chunk)))
 *           (br $next)))))
 */
const MANY_WASM =
  'AGFzbQEAAAABEAJgA39/fgF+YAV/f39+fwACFAIBeANtZW0CAAEBeAV4eGg2NAAAAwIBAQcIAQRtYW55AAEKSgFIAQJ/IAAgAWohBQJAA0Ag' +
  'ACAFTw0BIAUgAGshBiAGIAJLBEAgAiEGCyAEIAAgBiADEAA3AwAgBEEIaiEEIAAgAmohAAwACwsL'

type Many = (ptr: number, length: number, chunk: number, seed: bigint, out: number) => void

// The project's lib setting (ES2022, no DOM) leaves WebAssembly undeclared.
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object, imports?: object) => { exports: unknown }
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
  // The memory: a read's bytes, then their chunks' digests.
  const perRead = Math.ceil(READ / B)
  const pages = Math.ceil((READ + perRead * 8) / 65536) - exports.mem.buffer.byteLength / 65536
  if (pages > 0) exports.mem.grow(pages)
  const memory = new Uint8Array(exports.mem.buffer, 0, READ)
  const digests = new BigUint64Array(exports.mem.buffer, READ, perRead)
  const many = new WebAssembly.Instance(new WebAssembly.Module(Buffer.from(MANY_WASM, 'base64')), { x: exports })
    .exports as { many: Many }
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
      const n = Math.ceil(want / B)
      many.many(0, want, B, seed, READ)
      out.set(n === perRead ? digests : digests.subarray(0, n), k)
      k += n
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
