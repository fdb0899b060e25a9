import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'

// Deterministic test data: a failure can be reproduced from its seed.

/** A small, fast, seeded PRNG (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `length` pseudo-random bytes from `seed`. */
export function randomBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length)
  let counter = 0
  for (let at = 0; at < length; at += 32) {
    const block = createHash('sha256').update(`${seed}:${counter++}`).digest()
    block.copy(out, at, 0, Math.min(32, length - at))
  }
  return out
}

/** Writes a file of random bytes with some all-zero regions: [offset, length] pairs. */
export function writeImage(path: string, size: number, seed: number, zeroRegions: [number, number][] = []): Buffer {
  const data = randomBytes(size, seed)
  for (const [offset, length] of zeroRegions) data.fill(0, offset, Math.min(offset + length, size))
  writeFileSync(path, data)
  return data
}

/** Overwrites [offset, offset + length) of a file with random bytes from `seed`. */
export function scribble(path: string, offset: number, length: number, seed: number): void {
  const data = readFileSync(path)
  randomBytes(length, seed).copy(data, offset)
  writeFileSync(path, data)
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}
