// Whether a region is all zeros decides between a DATA and a ZERO record, so
// it must be exact to the last byte: compare against real zeros with memcmp
// rather than sampling words by hand.

const ZEROS = Buffer.alloc(1024 * 1024)

export function isZero(buf: Uint8Array): boolean {
  for (let at = 0; at < buf.length; at += ZEROS.length) {
    const end = Math.min(at + ZEROS.length, buf.length)
    if (Buffer.compare(buf.subarray(at, end), ZEROS.subarray(0, end - at)) !== 0) return false
  }
  return true
}

/** A buffer of zeros to write from; do not modify it. */
export function zeros(length: number): Buffer {
  return length <= ZEROS.length ? ZEROS.subarray(0, length) : Buffer.alloc(length)
}
