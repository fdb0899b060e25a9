import xxhash from 'xxhash-wasm'

// xxhash-wasm compiles a WebAssembly module on load; do it once per process.

export interface IncrementalHash {
  update(data: Uint8Array): IncrementalHash
  digest(): bigint
}

export interface Hash64 {
  /** xxh64 of the bytes, as an unsigned 64-bit bigint. */
  digest(data: Uint8Array, seed: bigint): bigint
  /** An incremental xxh64. */
  create(seed: bigint): IncrementalHash
}

let loading: Promise<Hash64> | undefined

export function loadHash(): Promise<Hash64> {
  loading ??= xxhash().then((api) => ({
    digest: (data, seed) => api.h64Raw(data, seed),
    create: (seed) => api.create64(seed),
  }))
  return loading
}
