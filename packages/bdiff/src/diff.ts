import {
  DigestReader,
  StreamReader,
  isStreamError,
  isZero,
  readChunks,
  type ByteSource,
  type Device,
  type DigestWriter,
  type Hash64,
  type Progress,
  type StreamWriter,
} from '@blockpipe/core'

// bdiff walks the new image chunk by chunk, in step with the digests of the
// old one, and writes a record for every chunk whose digest differs, as soon
// as it knows. The old image's digests come from a digest stream (bsum on the
// far side) or from reading the old image here (--base).

export interface BaseDigests {
  size: number
  blockSize: number
  seed: bigint
  /** Digest and length of the next chunk of the old image. */
  next(): Promise<{ digest: bigint; length: number }> | { digest: bigint; length: number }
  /** Called after the last chunk the new image needed. */
  finish(): Promise<void> | void
}

/** The old image's digests from a digest stream: bsum's output, read as it arrives. */
export async function streamBase(hash: Hash64, input: ByteSource): Promise<BaseDigests> {
  const reader = new DigestReader(await fromDigestStream(StreamReader.open(input, hash)))
  const h = reader.header
  return {
    size: h.size,
    blockSize: h.blockSize,
    seed: h.seed,
    next: () => fromDigestStream(reader.next()),
    finish: () => fromDigestStream(reader.finish()),
  }
}

/** bdiff reads one stream and writes another: a stream error names the one it is in. */
async function fromDigestStream<T>(promise: Promise<T>): Promise<T> {
  try {
    return await promise
  } catch (err) {
    if (isStreamError(err)) {
      err.message = `the digest stream on standard input: ${err.message}`
    }
    throw err
  }
}

/** --base OLD: the old image is here; digest it as we go. */
export function localBase(hash: Hash64, old: Device, blockSize: number, seed: bigint): BaseDigests {
  const chunks = readChunks(old, blockSize)
  return {
    size: old.size,
    blockSize,
    seed,
    next() {
      const { data } = chunks.next().value as { data: Buffer }
      return { digest: hash.digest(data, seed), length: data.length }
    },
    finish() {},
  }
}

export interface DiffResult {
  chunks: number
  changed: number
  changedBytes: number
}

export async function diff(
  hash: Hash64,
  source: Device,
  base: BaseDigests,
  writer: StreamWriter,
  digestsOut: DigestWriter | undefined,
  progress: Progress | undefined,
): Promise<DiffResult> {
  const result: DiffResult = { chunks: 0, changed: 0, changedBytes: 0 }
  const image = hash.create(base.seed)
  const raw = Buffer.alloc(8)
  for (const { offset, data } of readChunks(source, base.blockSize)) {
    const digest = hash.digest(data, base.seed)
    raw.writeBigUInt64LE(digest)
    image.update(raw)
    await digestsOut?.add(digest, data.length)
    result.chunks++
    let old: { digest: bigint; length: number } | undefined
    if (offset < base.size) {
      old = await base.next()
      if (old.digest === digest && old.length === data.length) {
        progress?.update(offset + data.length)
        continue
      }
    }
    result.changed++
    result.changedBytes += data.length
    const replaces = old && { length: old.length, digest: old.digest }
    if (isZero(data)) await writer.zero(offset, data.length, replaces)
    else await writer.data(offset, Buffer.from(data), replaces)
    progress?.update(offset + data.length)
  }
  await base.finish()
  await writer.end(image.digest())
  await digestsOut?.end()
  return result
}
