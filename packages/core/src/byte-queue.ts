// Input arrives in pieces of any size (gzip and ssh hand over short reads);
// the parser asks for whole fields. This holds the pieces until a field is
// complete and hands it over without copying when it sits in one piece.

export class ByteQueue {
  #chunks: Buffer[] = []
  #first = 0
  #head = 0
  #length = 0

  get length(): number {
    return this.#length
  }

  /** Keeps `chunk` itself, not a copy: the caller must not reuse it. */
  push(chunk: Uint8Array): void {
    if (chunk.length === 0) return
    this.#chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length))
    this.#length += chunk.length
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

  /** Removes and returns the first `n` bytes; the caller checks `length` first. */
  shift(n: number): Buffer {
    if (n > this.#length) throw new RangeError(`shift(${n}) with ${this.#length} bytes queued`)
    const first = this.#chunks[this.#first]
    if (first !== undefined && first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n)
      this.#advance(first, n)
      return out
    }
    const out = Buffer.allocUnsafe(n)
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
    if (this.#head === chunk.length) {
      this.#first++
      this.#head = 0
      // Dropping consumed pieces one by one would cost O(n) each when a
      // field arrives in many tiny pieces; drop them in bulk instead.
      if (this.#first === this.#chunks.length) {
        this.#chunks = []
        this.#first = 0
      } else if (this.#first >= 1024) {
        this.#chunks = this.#chunks.slice(this.#first)
        this.#first = 0
      }
    }
  }
}
