import { ERARANGE_MAGIC, EraRangeParser, eraRangeItems, isEraRange, peekBytes, type EraRangeItem } from './erarange.js'
import type { Hash64 } from './hash.js'
import { FileSource, StreamReader, type ByteSource } from './read.js'

// What an apply or a check reads: a blockpipe stream, or a stream of the
// original era_copy (ERARANGE records, no header). The input is looked at
// once, here, and handed to the reader of its format from its first byte.

export type InputFormat = 'blockpipe' | 'erarange' | 'empty'

export const ERARANGE_WARNING =
  'this is a stream of the original era_copy (ERARANGE records): it has no checksums and no end marker,' +
  ' so corrupt data, or a stream cut between two records, cannot be detected'

export const EMPTY_WARNING =
  'the input is empty: taken as a stream of the original era_copy without records (a night without' +
  ' changes). A blockpipe stream or undo journal is never empty: if one was expected, it did not arrive'

/** Which format an input is in, by its first bytes, and the input again from its first byte. */
export async function sniffInput(input: ByteSource): Promise<{ format: InputFormat; source: ByteSource }> {
  const n = ERARANGE_MAGIC.length
  let head: Buffer
  let source = input
  if (input instanceof FileSource) {
    // Put back rather than replayed: the file keeps its reads of exactly what the parser asks for.
    head = input.read(n)
    input.unread(head)
  } else {
    ;({ head, source } = await peekBytes(input, n))
  }
  // The whole magic: a scrap of it is no stream at all, and is said to be not a blockpipe stream.
  const format =
    head.length === 0 ? 'empty' : head.length >= n && isEraRange(head.subarray(0, n)) ? 'erarange' : 'blockpipe'
  return { format, source }
}

export interface RecordSourceOptions {
  /** An empty input is an ERARANGE stream without records (era-apply), not a cut blockpipe stream. */
  acceptEmpty?: boolean
  /** Record payloads may share memory with the next record (see StreamReader.open). */
  scratch?: boolean
}

export type RecordSource =
  | { format: 'blockpipe'; reader: StreamReader; warnings: string[] }
  | {
      format: 'erarange'
      /** Its parser: the summary, once the items have all been read. */
      parser: EraRangeParser
      /** Record headers and data pieces, in stream order. */
      items(): AsyncGenerator<EraRangeItem>
      warnings: string[]
    }

/** Sniffs an input and opens the reader of its format. */
export async function openRecordSource(
  input: ByteSource,
  hash: Hash64,
  options: RecordSourceOptions = {},
): Promise<RecordSource> {
  const { format, source } = await sniffInput(input)
  const empty = format === 'empty' && options.acceptEmpty === true
  if (format === 'erarange' || empty) {
    const parser = new EraRangeParser({ acceptEmpty: empty })
    return {
      format: 'erarange',
      parser,
      items: () => eraRangeItems(source, parser),
      warnings: [empty ? EMPTY_WARNING : ERARANGE_WARNING],
    }
  }
  return { format: 'blockpipe', reader: await StreamReader.open(source, hash, options.scratch), warnings: [] }
}
