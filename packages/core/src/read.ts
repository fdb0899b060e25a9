import { fstatSync, readSync } from 'node:fs'
import { isatty } from 'node:tty'
import { refuseTerminalInput, standardInput } from './cli.js'
import type { EndInfo, StreamHeader } from './format.js'
import { loadHash, type Hash64 } from './hash.js'
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
    const parser = new StreamParser(hash ?? (await loadHash()))
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
 * A regular file read with exactly the reads the parser asks for: each field
 * arrives in one piece and is handed over without a copy, and a record is
 * hashed while it is still in the CPU cache. Iterated, it gives 1 MiB pieces.
 */
export class FileSource implements Iterable<Uint8Array> {
  readonly #fd: number
  #scratch = Buffer.alloc(0)
  /** Bytes read ahead to tell the format, handed out again first. */
  #head = Buffer.alloc(0)

  constructor(fd: number) {
    this.#fd = fd
  }

  /** `n` bytes, fewer only at the end; with `scratch`, into memory the next scratch read reuses. */
  read(n: number, scratch = false): Buffer {
    const head = this.#head
    if (head.length > 0) {
      this.#head = head.subarray(Math.min(n, head.length))
      return head.length >= n ? head.subarray(0, n) : Buffer.concat([head, this.read(n - head.length)])
    }
    if (scratch && this.#scratch.length < n) this.#scratch = Buffer.allocUnsafe(n)
    const buf = scratch ? this.#scratch.subarray(0, n) : Buffer.allocUnsafe(n)
    let got = 0
    for (let r = 1; got < n && r > 0; got += r) r = readSync(this.#fd, buf, got, n - got, null)
    return got === n ? buf : buf.subarray(0, got)
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

/** Standard input to read a stream from: a regular file as a FileSource, else as `standardInput` gives it. */
export function streamInput(what: string): ByteSource {
  refuseTerminalInput({ isTTY: isatty(0) }, what)
  return fstatSync(0).isFile() ? new FileSource(0) : standardInput(what)
}

// eslint-disable-next-line @typescript-eslint/require-await -- an async generator, as parse() is, though it reads synchronously
async function* parseFile(source: FileSource, parser: StreamParser, scratch: boolean): AsyncGenerator<StreamItem> {
  for (;;) {
    const want = parser.wanted
    const piece = source.read(want, scratch && parser.inPayload)
    parser.push(piece)
    for (let item = parser.next(); item !== null; item = parser.next()) yield item
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
