import { closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { FdSink, readAt } from '@blockpipe/core'
import { openScratchFile } from './scratch-file.js'

// Sorts block numbers that come in any order (a dm-snapshot store lists
// chunks in the order they were first written) with bounded memory: runs of
// RUN numbers are sorted in memory and spilled to an unlinked temporary file,
// then merged, READ numbers of each run at a time.

const RUN = 1024 * 1024
const READ = 8192
const BATCH = 65536

/** A spilled run: its place in the temporary file, in numbers. */
interface Run {
  start: number
  length: number
}

/** One run being merged: a window of it in memory. */
interface Cursor {
  run: Run
  buf: Float64Array
  /** Numbers of the run read into buf so far. */
  read: number
  /** Numbers in buf, and the index of the current one. */
  fill: number
  at: number
}

export class BlockSorter {
  readonly #dir: string
  readonly #runLength: number
  readonly #readLength: number
  #mem: Float64Array
  #count = 0
  #fd: number | undefined
  readonly #runs: Run[] = []
  #spilled = 0

  constructor(dir = tmpdir(), runLength = RUN, readLength = READ) {
    this.#dir = dir
    this.#runLength = runLength
    this.#readLength = readLength
    this.#mem = new Float64Array(runLength)
  }

  add(block: number): void {
    if (this.#count === this.#runLength) this.#spill()
    this.#mem[this.#count++] = block
  }

  #spill(): void {
    this.#fd ??= openScratchFile(this.#dir, 'chunks', 'the chunk list')
    const run = this.#mem.subarray(0, this.#count).sort()
    new FdSink(this.#fd, this.#spilled * 8).write(Buffer.from(run.buffer, run.byteOffset, run.byteLength))
    this.#runs.push({ start: this.#spilled, length: this.#count })
    this.#spilled += this.#count
    this.#count = 0
  }

  /** Every block added, in ascending order, each once, a batch at a time. */
  *sorted(): Generator<number[]> {
    if (this.#count > 0 && this.#runs.length > 0) this.#spill()
    const heads = this.#runs.length > 0 ? this.#runs.map((run) => this.#cursor(run)) : [this.#inMemory()]
    const heap = heads.filter((c) => c.fill > 0)
    for (let i = (heap.length >> 1) - 1; i >= 0; i--) siftDown(heap, i)
    let batch: number[] = []
    let last = -1
    while (heap.length > 0) {
      const top = heap[0] as Cursor
      const value = top.buf[top.at] as number
      if (value !== last) {
        batch.push(value)
        last = value
        if (batch.length === BATCH) {
          yield batch
          batch = []
        }
      }
      if (++top.at === top.fill) this.#refill(top)
      if (top.fill === 0) {
        // The run is merged: the last cursor takes its place.
        const moved = heap.pop() as Cursor
        if (heap.length > 0) heap[0] = moved
      }
      if (heap.length > 0) siftDown(heap, 0)
    }
    if (batch.length > 0) yield batch
  }

  #inMemory(): Cursor {
    const buf = this.#mem.subarray(0, this.#count).sort()
    return { run: { start: 0, length: this.#count }, buf, read: this.#count, fill: this.#count, at: 0 }
  }

  #cursor(run: Run): Cursor {
    const cursor = { run, buf: new Float64Array(this.#readLength), read: 0, fill: 0, at: 0 }
    this.#refill(cursor)
    return cursor
  }

  /** The next window of a run; fill 0 once the run is merged. */
  #refill(c: Cursor): void {
    const n = Math.min(c.buf.length, c.run.length - c.read)
    if (n > 0) {
      const file = { fd: this.#fd as number, path: 'the temporary chunk list' }
      readAt(file, Buffer.from(c.buf.buffer), n * 8, (c.run.start + c.read) * 8)
    }
    c.read += n
    c.fill = n
    c.at = 0
  }

  close(): void {
    if (this.#fd !== undefined) closeSync(this.#fd)
    this.#fd = undefined
  }
}

const head = (c: Cursor): number => c.buf[c.at] as number

function siftDown(heap: Cursor[], i: number): void {
  for (;;) {
    const l = 2 * i + 1
    const r = l + 1
    let least = i
    if (l < heap.length && head(heap[l] as Cursor) < head(heap[least] as Cursor)) least = l
    if (r < heap.length && head(heap[r] as Cursor) < head(heap[least] as Cursor)) least = r
    if (least === i) return
    const t = heap[i] as Cursor
    heap[i] = heap[least] as Cursor
    heap[least] = t
    i = least
  }
}
