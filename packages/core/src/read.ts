import { fstatSync, readSync } from 'node:fs'
import { isatty } from 'node:tty'
import { abortable } from './cancel.js'
import { refuseTerminalInput, standardInput } from './cli.js'
import type { EndInfo, StreamHeader } from './format.js'
import { loadHash, type Hash64 } from './hash.js'
import { hashScratch } from './hash-memory.js'
import { StreamParser, type StreamItem, type StreamRecord } from './parse.js'

/** Where stream bytes come from: stdin, a socket, a file read in pieces. */
export type ByteSource = AsyncIterable<Uint8Array> | Iterable<Uint8Array>

/**
 * Reads a stream from any source of bytes (stdin, a file, a socket), pulling
 * only as fast as records are consumed: memory holds one record at a time.
 */
export class StreamReader {
  readonly header: StreamHeader
  readonly parser: StreamParser
  readonly #items: AsyncGenerator<StreamItem>
  #end: EndInfo | undefined

  private constructor(header: StreamHeader, parser: StreamParser, items: AsyncGenerator<StreamItem>) {
    this.header = header
    this.parser = parser
    this.#items = items
  }

  /**
   * `scratch`: the payload of a record may be read into memory that the next
   * record reuses, for a consumer that is done with each record before it
   * asks for the next (a listing, a check), never for one that keeps them.
   */
  static async open(source: ByteSource, hash?: Hash64, scratch = false): Promise<StreamReader> {
    const parser = new StreamParser(hash ?? (await loadHash()), scratch)
    const items = source instanceof FileSource ? parseFile(source, parser, scratch) : parse(source, parser)
    const first = await items.next()
    // parse() yields the header first or throws.
    const item = first.value as Extract<StreamItem, { type: 'header' }>
    return new StreamReader(item.header, parser, items)
  }

  /** The end record, once the records have been read to the end. */
  get end(): EndInfo | undefined {
    return this.#end
  }

  async *records(): AsyncGenerator<StreamRecord, EndInfo> {
    for await (const item of this.#items) {
      if (item.type === 'record') yield item.record
      else this.#end = (item as Extract<StreamItem, { type: 'end' }>).end
    }
    return this.#end as EndInfo
  }
}

/**
 * A regular file, or a pipe or socket whose reads block, read with exactly
 * the reads the parser asks for: each field arrives in one piece and is
 * handed over without a copy (a pipe's pieces are gathered by the reads
 * themselves), and a record is hashed while it is still in the CPU cache.
 * Iterated, it gives 1 MiB pieces.
 */
export class FileSource implements Iterable<Uint8Array> {
  readonly #fd: number
  readonly #rest: (() => ByteSource) | undefined
  #scratch: Buffer = Buffer.alloc(0)
  #blocked = false
  /** Bytes read ahead to tell the format, handed out again first. */
  #head = Buffer.alloc(0)

  /**
   * `rest`, for a pipe: where to read from instead should a read find it
   * non-blocking (another process may have set its flags): a stream.
   */
  constructor(fd: number, rest?: () => ByteSource) {
    this.#fd = fd
    this.#rest = rest
  }

  /**
   * `n` bytes, fewer only at the end or once `blocked`; with `scratch`, into
   * memory the next scratch read reuses, where the hash reads it uncopied.
   */
  read(n: number, scratch = false): Buffer {
    const head = this.#head
    if (head.length > 0) {
      this.#head = head.subarray(Math.min(n, head.length))
      return head.length >= n ? head.subarray(0, n) : Buffer.concat([head, this.read(n - head.length)])
    }
    if (scratch) this.#scratch = hashScratch(this.#scratch, n)
    const buf = scratch ? this.#scratch.subarray(0, n) : Buffer.allocUnsafe(n)
    let got = 0
    while (got < n && !this.#blocked) {
      const r = this.#readSome(buf, got, n - got)
      if (r === 0) break
      got += r
    }
    return got === n ? buf : buf.subarray(0, got)
  }

  /** Whether a read found the pipe non-blocking: what is left is read from `rest()`. */
  get blocked(): boolean {
    return this.#blocked
  }

  rest(): ByteSource {
    return (this.#rest as () => ByteSource)()
  }

  #readSome(buf: Buffer, at: number, n: number): number {
    try {
      return readSync(this.#fd, buf, at, n, null)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN' || this.#rest === undefined) throw err
      this.#blocked = true
      return 0
    }
  }

  /** Puts back the bytes just read: the next read starts with them. */
  unread(head: Buffer): void {
    this.#head = Buffer.concat([head, this.#head])
  }

  *[Symbol.iterator](): Iterator<Uint8Array> {
    for (;;) {
      const piece = this.read(PIECE)
      if (piece.length > 0) yield piece
      if (piece.length < PIECE) return
    }
  }
}

const PIECE = 1024 * 1024

/**
 * Standard input to read a stream from: a regular file, a pipe or a socket
 * as a FileSource, anything else as `standardInput` gives it.
 */
export function streamInput(what: string): ByteSource {
  refuseTerminalInput({ isTTY: isatty(0) }, what)
  const stat = fstatSync(0)
  if (stat.isFile()) return new FileSource(0)
  return stat.isFIFO() || stat.isSocket() ? new FileSource(0, () => standardInput(what)) : standardInput(what)
}

/**
 * Standard input for a run that a signal may stop: a regular file as a
 * FileSource (its reads never wait, so the caller's checks of `signal`
 * between records stop it), anything else as `standardInput` gives it,
 * stopped by `signal` even while it waits for input.
 */
export function cancellableInput(what: string, signal: AbortSignal): ByteSource {
  return fstatSync(0).isFile() ? new FileSource(0) : abortable(standardInput(what), signal)
}

async function* parseFile(source: FileSource, parser: StreamParser, scratch: boolean): AsyncGenerator<StreamItem> {
  for (;;) {
    const want = parser.wanted
    const piece = source.read(want, scratch && parser.inPayload)
    parser.push(piece)
    for (let item = parser.next(); item !== null; item = parser.next()) yield item
    if (source.blocked) {
      yield* parse(source.rest(), parser)
      return
    }
    if (piece.length < want) break
  }
  parser.finish()
}

async function* parse(source: ByteSource, parser: StreamParser): AsyncGenerator<StreamItem> {
  for await (const chunk of source) {
    parser.push(chunk)
    for (let item = parser.next(); item !== null; item = parser.next()) yield item
  }
  parser.finish()
}
