import {
  DigestReader,
  StreamReader,
  checkCancelled,
  isStreamError,
  isZero,
  readExactly,
  stripeDigests,
  type ByteSource,
  type Device,
  type DigestWriter,
  type Hash64,
  type Progress,
  type StreamWriter,
} from '@blockpipe/core'

// bdiff digests the new image in stripes on worker threads and compares each
// batch of digests with the old image's; only the chunks that differ are read
// again, here, to be sent. The old image's digests come from a digest stream
// (bsum on the far side) or are made from the old image alongside the new
// one's (--base).

export interface BaseDigests {
  size: number
  blockSize: number
  seed: bigint
  /** --base: the old image, digested together with the new one. */
  device?: Device
  /** A digest stream: fills `into` with the digests of the next chunks of the old image. */
  fill?: (into: Buffer) => Promise<void>
  /** Called after the last chunk the new image needed. */
  finish(): Promise<void> | void
}

/** The old image's digests from a digest stream: bsum's output, read as it arrives. */
export async function streamBase(hash: Hash64, input: ByteSource): Promise<BaseDigests> {
  // DigestReader copies the digests out of a record before it asks for the next: scratch memory will do.
  const reader = new DigestReader(await fromDigestStream(StreamReader.open(input, hash, true)))
  const h = reader.header
  return {
    size: h.size,
    blockSize: h.blockSize,
    seed: h.seed,
    fill: (into) => fromDigestStream(reader.fill(into)),
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
export function localBase(old: Device, blockSize: number, seed: bigint): BaseDigests {
  return {
    size: old.size,
    blockSize,
    seed,
    device: old,
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
  /** Aborted: stops between two batches (runMain, on SIGINT, SIGTERM or SIGHUP). */
  signal?: AbortSignal,
): Promise<DiffResult> {
  const B = base.blockSize
  const result: DiffResult = { chunks: 0, changed: 0, changedBytes: 0 }
  const image = hash.create(base.seed)
  const baseChunks = Math.ceil(base.size / B)
  const images = [source]
  // Past the new image's last chunk the old image's digests are not needed.
  const old = base.device && { ...base.device, size: Math.min(base.device.size, Math.ceil(source.size / B) * B) }
  if (old !== undefined) images.push(old)
  const data = Buffer.allocUnsafe(B)
  let olds: Buffer = Buffer.alloc(0)
  for await (const batch of stripeDigests(images, B, base.seed)) {
    checkCancelled(signal)
    const digests = batch.digests[0] as Buffer
    const n = digests.length / 8
    const oldCount = Math.max(0, Math.min(n, baseChunks - batch.first))
    if (old !== undefined) olds = batch.digests[1] as Buffer
    else {
      if (olds.length < oldCount * 8) olds = Buffer.allocUnsafe(oldCount * 8)
      await (base.fill as NonNullable<BaseDigests['fill']>)(olds.subarray(0, oldCount * 8))
    }
    for (let k = 0; k < n; k++) {
      const i = batch.first + k
      const offset = i * B
      const length = Math.min(B, source.size - offset)
      const oldLength = Math.min(B, base.size - offset)
      if (k < oldCount && oldLength === length && same(digests, olds, k * 8)) continue
      readExactly(source, data, length, offset)
      const chunk = data.subarray(0, length)
      const digest = hash.digest(chunk, base.seed)
      // The source may have changed since it was digested (a live device):
      // send what was read now, and make its digest the one the stream
      // records. Should it now equal the base again, sending it is harmless.
      digests.writeBigUInt64LE(digest, k * 8)
      result.changed++
      result.changedBytes += length
      const replaces = k < oldCount ? { length: oldLength, digest: olds.readBigUInt64LE(k * 8) } : undefined
      if (isZero(chunk)) await writer.zero(offset, length, replaces)
      else await writer.data(offset, Buffer.from(chunk), replaces)
    }
    result.chunks += n
    image.update(digests)
    const end = Math.min(source.size, (batch.first + n) * B)
    await digestsOut?.addMany(digests, end - batch.first * B)
    progress?.update(end)
  }
  await base.finish()
  await writer.end(image.digest())
  await digestsOut?.end()
  return result
}

/** Whether the 8-byte digests at `at` of `a` and `b` are equal, without making bigints. */
function same(a: Buffer, b: Buffer, at: number): boolean {
  return a.readUInt32LE(at) === b.readUInt32LE(at) && a.readUInt32LE(at + 4) === b.readUInt32LE(at + 4)
}
