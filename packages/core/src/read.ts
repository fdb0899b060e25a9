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

  static async open(source: ByteSource, hash?: Hash64): Promise<StreamReader> {
    const parser = new StreamParser(hash ?? (await loadHash()))
    const items = parse(source, parser)
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

async function* parse(source: ByteSource, parser: StreamParser): AsyncGenerator<StreamItem> {
  for await (const chunk of source) {
    parser.push(chunk)
    for (let item = parser.next(); item !== null; item = parser.next()) yield item
  }
  parser.finish()
}
