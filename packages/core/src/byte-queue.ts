// Input arrives in pieces of any size (gzip and ssh hand over short reads);
// the parser asks for whole fields. This holds the pieces until a field is
// complete and hands it over without copying when it sits in one piece.
// A consumed piece is released at once: memory holds what is queued, not
// what went through.

/** A piece whose view is less than this share of its memory is copied, not kept. */
const KEEP_RATIO = 4
/** Pieces below this size are kept as they are whatever memory they share. */
const SMALL_PIECE = 4096

export class ByteQueue {
  #chunks: (Buffer | undefined)[] = []
  #first = 0
  #head = 0
  #length = 0

  get length(): number {
    return this.#length
  }

  /**
   * Keeps `chunk` itself, not a copy, so the caller must not reuse it; a
   * short view into much larger memory is copied so as not to keep that alive.
   */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    let piece = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length)
    if (piece.length >= SMALL_PIECE && piece.buffer.byteLength > KEEP_RATIO * piece.length) {
      piece = Buffer.from(piece)
    }
    this.#chunks.push(piece)
    this.#length += piece.length
  }

  /** A copy of up to the first `n` bytes, left in the queue. */
  peek(n: number): Buffer {
    const parts: Buffer[] = []
    let want = Math.min(n, this.#length)
    let head = this.#head
    for (let i = this.#first; want > 0; i++) {
      const chunk = this.#chunks[i] as Buffer
      const part = chunk.subarray(head, head + want)
      parts.push(part)
      want -= part.length
      head = 0
    }
    return Buffer.concat(parts)
  }

  /**
   * Removes and returns the first `n` bytes; the caller checks `length`
   * first. Bytes in more than one piece are gathered into `into` when given
   * (memory the caller reuses), else into new memory.
   */
  shift(n: number, into?: Buffer): Buffer {
    if (n > this.#length) throw new RangeError(`shift(${n}) with ${this.#length} bytes queued`)
    const first = this.#chunks[this.#first]
    if (first !== undefined && first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n)
      this.#advance(first, n)
      return out
    }
    const out = into === undefined ? Buffer.allocUnsafe(n) : into.subarray(0, n)
    let filled = 0
    while (filled < n) {
      const chunk = this.#chunks[this.#first] as Buffer
      const take = Math.min(chunk.length - this.#head, n - filled)
      chunk.copy(out, filled, this.#head, this.#head + take)
      filled += take
      this.#advance(chunk, take)
    }
    return out
  }

  #advance(chunk: Buffer, n: number): void {
    this.#head += n
    this.#length -= n
    if (this.#head < chunk.length) return
    this.#chunks[this.#first++] = undefined
    this.#head = 0
    // Removing each piece from the front would cost O(queued) per piece when
    // a field arrives in many tiny pieces; drop the released slots in bulk,
    // once they are at least half of the array.
    if (this.#first === this.#chunks.length) {
      this.#chunks = []
      this.#first = 0
    } else if (this.#first >= 1024 && 2 * this.#first >= this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first)
      this.#first = 0
    }
  }
}
