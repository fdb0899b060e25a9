import { readFileSync } from 'node:fs'

// An xxhash WebAssembly instance of its own whose memory holds the caller's
// buffers: bytes read straight into it are hashed where they lie, with no
// copy into the hasher (xxhash-wasm's API copies every byte it hashes).

interface XxhExports {
  mem: { buffer: ArrayBuffer; grow(pages: number): number }
  init64: (state: number, seed: bigint) => void
  update64: (state: number, at: number, length: number) => void
  digest64: (state: number) => bigint
}

// The project's lib setting (ES2022, no DOM) leaves WebAssembly undeclared.
declare const WebAssembly: {
  Module: new (bytes: Uint8Array) => object
  Instance: new (module: object) => { exports: unknown }
}

/** Bytes of the incremental xxh64 state (88), kept at the start of the memory. */
const STATE = 128
/** A part outside the memory of at most this many bytes (a record header) is copied in to be hashed. */
export const SMALL_PART = 256
const ROOM = STATE + SMALL_PART
const PAGE = 65536

let module: object | undefined
const holders = new WeakMap<ArrayBuffer, HashMemory>()

export class HashMemory {
  readonly #x: XxhExports
  readonly #buffer: ArrayBuffer
  readonly #state: Uint8Array
  readonly #small: Uint8Array

  /** Room for `size` bytes of the caller's. The memory never grows later, so views of it stay valid. */
  constructor(size: number) {
    module ??= new WebAssembly.Module(
      readFileSync(new URL('../workerd/xxhash.wasm', import.meta.resolve('xxhash-wasm'))),
    )
    this.#x = new WebAssembly.Instance(module).exports as XxhExports
    const pages = Math.ceil((ROOM + size) / PAGE) - this.#x.mem.buffer.byteLength / PAGE
    if (pages > 0) this.#x.mem.grow(pages)
    this.#buffer = this.#x.mem.buffer
    this.#state = new Uint8Array(this.#buffer, 0, STATE)
    this.#small = new Uint8Array(this.#buffer, STATE, SMALL_PART)
    holders.set(this.#buffer, this)
  }

  /** The HashMemory `bytes` are a view of, if any. */
  static holding(bytes: Uint8Array): HashMemory | undefined {
    return holders.get(bytes.buffer as ArrayBuffer)
  }

  /** `length` bytes of the memory at `at` (0 is the first byte of the caller's room). */
  view(at: number, length: number): Buffer {
    return Buffer.from(this.#buffer, ROOM + at, length)
  }

  /**
   * xxh64 with `seed` of the parts one after the other. Each part is a view
   * of this memory, hashed where it lies, or a small one (up to SMALL_PART
   * bytes) that is copied in.
   */
  hash(seed: bigint, ...parts: Uint8Array[]): bigint {
    const x = this.#x
    // init64 sets the seed but counts on the rest of the state being zeros.
    this.#state.fill(0)
    x.init64(0, BigInt.asIntN(64, seed))
    for (const part of parts) {
      if (part.buffer === this.#buffer) {
        x.update64(0, part.byteOffset, part.length)
      } else if (part.length <= SMALL_PART) {
        this.#small.set(part)
        x.update64(0, STATE, part.length)
      } else {
        throw new RangeError(`hash of ${part.length} bytes outside the hash memory`)
      }
    }
    return BigInt.asUintN(64, x.digest64(0))
  }
}

/**
 * Scratch memory for at least `n` bytes where the record checksum hashes
 * them uncopied: `current` if it is large enough, else a new HashMemory.
 */
export function hashScratch(current: Buffer | undefined, n: number): Buffer {
  return current !== undefined && current.length >= n ? current : new HashMemory(n).view(0, n)
}
