import { readFileSync, readSync } from 'node:fs'
import { parentPort, workerData } from 'node:worker_threads'
import type { StripeJob } from './stripe-digests.js'

// One hashing thread of a StripeHasher. It reads its own stripes with
// positional reads straight into the memory of its own xxhash WebAssembly
// instance and hashes them there: no copy, promise or allocation per chunk.

interface XxhExports {
  mem: { buffer: ArrayBuffer; grow(pages: number): number }
  xxh64: (ptr: number, length: number, seed: bigint) => bigint
}

// The project's lib setting (ES2022, no DOM) leaves WebAssembly undeclared.
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { exports: unknown }
}

const job = workerData as StripeJob
const port = parentPort as NonNullable<typeof parentPort>
const wasm = readFileSync(new URL('../workerd/xxhash.wasm', import.meta.resolve('xxhash-wasm')))
const exports = new WebAssembly.Instance(new WebAssembly.Module(wasm)).exports as XxhExports
const READ = Math.max(job.chunkSize, Math.floor(job.readSize / job.chunkSize) * job.chunkSize)
const pages = Math.ceil(READ / 65536) - exports.mem.buffer.byteLength / 65536
if (pages > 0) exports.mem.grow(pages)
const memory = new Uint8Array(exports.mem.buffer, 0, READ)
const control = new Int32Array(job.control)
const xxh64 = exports.xxh64
const seed = BigInt.asIntN(64, BigInt(job.seed))

function hashRange(fd: number, from: number, to: number, out: BigUint64Array): number {
  const B = job.chunkSize
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

/** Waits until the main thread has taken enough of this worker's stripes; false once told to stop. */
function mayGoOn(produced: number): boolean {
  for (;;) {
    if (Atomics.load(control, 0) !== 0) return false
    const taken = Atomics.load(control, 1 + job.worker)
    if (produced - taken < job.ahead) return true
    Atomics.wait(control, 1 + job.worker, taken)
  }
}

function run(): void {
  let produced = 0
  for (let stripe = job.worker; stripe < job.stripes; stripe += job.workers) {
    if (!mayGoOn(produced)) return
    const digests: ArrayBuffer[] = []
    const start = stripe * job.stripeChunks * job.chunkSize
    for (let f = 0; f < job.files.length; f++) {
      const { fd, size } = job.files[f] as StripeJob['files'][number]
      const end = Math.min(size, start + job.stripeChunks * job.chunkSize)
      const out = new BigUint64Array(Math.max(0, Math.ceil((end - start) / job.chunkSize)))
      let short: number
      try {
        short = hashRange(fd, start, end, out)
      } catch (err) {
        port.postMessage({ stripe, error: { file: f, message: (err as Error).message } })
        return
      }
      if (short >= 0) {
        port.postMessage({ stripe, error: { file: f, at: short } })
        return
      }
      digests.push(out.buffer)
    }
    port.postMessage({ stripe, digests }, digests)
    produced++
  }
}

run()
