import {
  BlockpipeError,
  DigestWriter,
  StreamKind,
  StreamWriter,
  VERSION,
  producerMetadata,
  stripeDigests,
  type Device,
  type ByteSink,
  type Hash64,
  type Progress,
} from '@blockpipe/core'

// bsum reads its source once, front to back, and digests each chunk. The
// source is a file or device read in place, or standard input read as it
// comes, which is re-cut into chunks here.

export interface SumOptions {
  blockSize: number
  seed: bigint
  /** The source's size; for standard input, what --size promised (unknown for --text). */
  size: number | undefined
  source: string
  progress?: Progress
}

/** Re-cuts arbitrary pieces into chunks of `size` bytes (the last may be short). */
export async function* rechunk(
  pieces: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(size)
  let fill = 0
  for await (const piece of pieces) {
    for (let at = 0; at < piece.length;) {
      const n = Math.min(size - fill, piece.length - at)
      buf.set(piece.subarray(at, at + n), fill)
      fill += n
      at += n
      if (fill === size) {
        yield buf
        buf = Buffer.allocUnsafe(size)
        fill = 0
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill)
}

export interface DigestSink {
  chunk(offset: number, length: number, digest: bigint): Promise<void> | void
  /** The digests of the chunks from `offset` on (8 bytes each), covering `length` bytes. */
  many(offset: number, digests: Buffer, length: number): Promise<void> | void
  end(): Promise<void> | void
}

/** The binary digest stream. */
export async function streamSink(hash: Hash64, out: ByteSink, options: SumOptions): Promise<DigestSink> {
  const writer = new StreamWriter(hash, out, {
    kind: StreamKind.DIGEST,
    size: options.size as number,
    blockSize: options.blockSize,
    seed: options.seed,
    metadata: producerMetadata('bsum', options.source),
  })
  await writer.start()
  const digests = new DigestWriter(hash, writer, options.blockSize, options.seed)
  return {
    chunk: (_offset, length, digest) => digests.add(digest, length),
    many: (_offset, d, length) => digests.addMany(d, length),
    end: () => digests.end(),
  }
}

/** `--text`: a line per chunk, then the image digest. */
export function textSink(hash: Hash64, write: (line: string) => Promise<void> | void, options: SumOptions): DigestSink {
  const image = hash.create(options.seed)
  const d = Buffer.alloc(8)
  let size = 0
  let started = false
  const header = `# bsum ${VERSION} ${options.source} block-size ${options.blockSize} seed ${options.seed}\n`
  const sink: DigestSink = {
    async many(offset, digests, length) {
      for (let k = 0; k < digests.length / 8; k++) {
        const at = offset + k * options.blockSize
        await sink.chunk(at, Math.min(options.blockSize, offset + length - at), digests.readBigUInt64LE(k * 8))
      }
    },
    chunk(offset, length, digest) {
      d.writeBigUInt64LE(digest)
      image.update(d)
      size = offset + length
      const line = `${offset} ${length} ${hex(digest)}\n`
      if (started) return write(line)
      started = true
      return write(header + line)
    },
    end() {
      return write(`${started ? '' : header}# size ${size} image ${hex(image.digest())}\n`)
    },
  }
  return sink
}

export function hex(n: bigint): string {
  return n.toString(16).padStart(16, '0')
}

/** Digests a file or device in stripes on worker threads; returns the bytes read. */
export async function sumDevice(dev: Device, sink: DigestSink, options: SumOptions): Promise<number> {
  const B = options.blockSize
  for await (const { first, digests } of stripeDigests([dev], B, options.seed)) {
    const d = digests[0] as Buffer
    const end = Math.min(dev.size, (first + d.length / 8) * B)
    await sink.many(first * B, d, end - first * B)
    options.progress?.update(end)
  }
  await sink.end()
  return dev.size
}

/** Digests every chunk of a stream of chunks into `sink`; returns the bytes read. */
export async function sum(
  hash: Hash64,
  chunks: AsyncIterable<Buffer> | Iterable<Buffer>,
  sink: DigestSink,
  options: SumOptions,
): Promise<number> {
  const size = options.size ?? Infinity
  let offset = 0
  for await (const data of chunks) {
    if (offset + data.length > size) {
      throw new BlockpipeError('EINPUT', `${options.source} is longer than --size ${size}`)
    }
    await sink.chunk(offset, data.length, hash.digest(data, options.seed))
    offset += data.length
    options.progress?.update(offset)
  }
  if (options.size !== undefined && offset !== options.size) {
    throw new BlockpipeError(
      'EINPUT',
      `${options.source} ended after ${offset} bytes, not the ${options.size} expected`,
    )
  }
  await sink.end()
  return offset
}
