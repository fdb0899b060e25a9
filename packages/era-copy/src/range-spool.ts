import { closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { FdSink, readAt } from '@blockpipe/core'
import type { BlockRange } from './era-invalidate.js'
import { openScratchFile } from './scratch-file.js'

// The block list is read to its end before the first byte of the stream is
// written, so that a block beyond the device is refused before anything is
// sent. A list of millions of ranges spills to an unlinked temporary file
// instead of memory.

const PAIRS = 65536

export class RangeSpool {
  readonly #dir: string
  #mem = new Float64Array(PAIRS * 2)
  #count = 0
  #fd: number | undefined
  #spilled = 0
  #pending: BlockRange | undefined
  #blocks = 0
  #end = 0

  constructor(dir = tmpdir()) {
    this.#dir = dir
  }

  /** Ranges in ascending order; adjacent ones are merged. */
  add(range: BlockRange): void {
    this.#blocks += range.end - range.begin
    this.#end = range.end
    if (this.#pending !== undefined && this.#pending.end === range.begin) {
      this.#pending.end = range.end
      return
    }
    this.#flushPending()
    this.#pending = { ...range }
  }

  /** Blocks listed. */
  get blocks(): number {
    return this.#blocks
  }

  /** One past the last block listed; 0 for an empty list. */
  get end(): number {
    return this.#end
  }

  #flushPending(): void {
    if (this.#pending === undefined) return
    if (this.#count === PAIRS) this.#spill()
    this.#mem[this.#count * 2] = this.#pending.begin
    this.#mem[this.#count * 2 + 1] = this.#pending.end
    this.#count++
  }

  #spill(): void {
    this.#fd ??= openScratchFile(this.#dir, 'ranges', 'the block list')
    new FdSink(this.#fd, this.#spilled * 16).write(Buffer.from(this.#mem.buffer, 0, this.#count * 16))
    this.#spilled += this.#count
    this.#count = 0
  }

  /** Every range, in order, a batch at a time. */
  *ranges(): Generator<BlockRange[]> {
    this.#flushPending()
    this.#pending = undefined
    if (this.#fd !== undefined) {
      const pairs = new Float64Array(PAIRS * 2)
      const bytes = Buffer.from(pairs.buffer)
      const file = { fd: this.#fd, path: 'the temporary range list' }
      for (let at = 0; at < this.#spilled; at += PAIRS) {
        const n = Math.min(PAIRS, this.#spilled - at)
        readAt(file, bytes, n * 16, at * 16)
        yield toRanges(pairs, n)
      }
    }
    if (this.#count > 0) yield toRanges(this.#mem, this.#count)
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd)
    this.#fd = undefined
  }
}

function toRanges(pairs: Float64Array, n: number): BlockRange[] {
  const out: BlockRange[] = []
  for (let i = 0; i < n; i++) out.push({ begin: pairs[i * 2] as number, end: pairs[i * 2 + 1] as number })
  return out
}
