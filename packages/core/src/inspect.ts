import { KIND_NAMES, isFull, type EndInfo, type StreamHeader } from './format.js'
import { loadHash } from './hash.js'
import type { StreamRecord } from './parse.js'
import { StreamReader, type ByteSource } from './read.js'
import { formatBytes } from './size.js'

// Reading a stream without a target: era-apply --check, and listings.

export interface StreamSummary {
  header: StreamHeader
  end: EndInfo
  /** Bytes of the stream itself. */
  bytes: number
}

/** Reads and verifies a whole stream; `each` sees every record. */
export async function verifyStream(
  input: ByteSource,
  each?: (rec: StreamRecord, header: StreamHeader) => void,
): Promise<StreamSummary> {
  const reader = await StreamReader.open(input, await loadHash())
  for await (const rec of reader.records()) each?.(rec, reader.header)
  return { header: reader.header, end: reader.end as EndInfo, bytes: reader.parser.position }
}

export function describeHeader(header: StreamHeader): string[] {
  const lines = [
    `kind:       ${KIND_NAMES[header.kind]}${isFull(header) ? ' (full: covers the whole image)' : ''}, format version ${header.version}`,
    `image size: ${header.size} bytes (${formatBytes(header.size)})`,
  ]
  if (header.baseSize !== 0 || header.kind === 2) {
    lines.push(`base size:  ${header.baseSize} bytes (${formatBytes(header.baseSize)})`)
  }
  lines.push(`block size: ${header.blockSize} bytes (${formatBytes(header.blockSize)})`)
  if (header.kind === 2 || header.kind === 3) lines.push(`digests:    xxh64, seed ${header.seed}`)
  for (const [key, value] of Object.entries(header.metadata)) lines.push(`${`${key}:`.padEnd(12)}${value}`)
  return lines
}

export function describeSummary(summary: StreamSummary): string[] {
  const { end } = summary
  return [
    ...describeHeader(summary.header),
    `records:    ${end.records}`,
    `data:       ${end.dataBytes} bytes (${formatBytes(end.dataBytes)})`,
    `zeros:      ${end.zeroBytes} bytes (${formatBytes(end.zeroBytes)})`,
    `length:     ${summary.bytes} bytes (${formatBytes(summary.bytes)})`,
    'verified:   every record checksum, the order of records and the end record',
  ]
}
