import type { EraRangeRecord, EraRangeSummary } from './erarange.js'
import { DIGEST_SIZE, KIND_NAMES, StreamKind, isFull, type EndInfo, type StreamHeader } from './format.js'
import { loadHash } from './hash.js'
import type { StreamRecord } from './parse.js'
import { StreamReader, type ByteSource } from './read.js'
import { openRecordSource } from './record-source.js'
import { formatBytes } from './size.js'

// Reading a stream without a target: era-apply --check, and listings
// (bpdump), as text lines and as JSON objects. In JSON, 64-bit hash values
// (checksums, digests) are 16 hex digits and the seed a decimal string.

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
  return inspectStream(input, { record: each })
}

/** What a listing is shown, in stream order; it may make the reading wait. */
export interface StreamVisitor {
  header?(header: StreamHeader): void | Promise<void>
  record?(rec: StreamRecord, header: StreamHeader): void | Promise<void>
}

/** Reads and verifies a whole stream, showing `visit` the header and then every record as it is read. */
export async function inspectStream(input: ByteSource, visit: StreamVisitor): Promise<StreamSummary> {
  return inspectReader(await StreamReader.open(input, await loadHash(), true), visit)
}

async function inspectReader(reader: StreamReader, visit: StreamVisitor): Promise<StreamSummary> {
  await visit.header?.(reader.header)
  for await (const rec of reader.records()) await visit.record?.(rec, reader.header)
  return { header: reader.header, end: reader.end as EndInfo, bytes: reader.parser.position }
}

export interface CheckOptions {
  /** An empty input is an ERARANGE stream without records, as era-apply applies it. */
  acceptEmpty?: boolean
  /** Told what cannot be verified, before the stream is read. */
  warn?: (text: string) => void
}

/**
 * era-apply --check: reads and verifies a whole stream of either format
 * era-apply applies, and describes it in lines of text.
 */
export async function checkStream(input: ByteSource, options: CheckOptions = {}): Promise<string[]> {
  const source = await openRecordSource(input, await loadHash(), { acceptEmpty: options.acceptEmpty, scratch: true })
  for (const text of source.warnings) options.warn?.(text)
  if (source.format === 'blockpipe') return describeSummary(await inspectReader(source.reader, {}))
  for await (const item of source.items()) void item
  return [`format:     ${ERARANGE_DESCRIPTION}`, ...describeEraRangeSummary(source.parser.summary)]
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
  // A key longer than the column (written-since) still gets its space.
  for (const [key, value] of Object.entries(header.metadata)) lines.push(`${`${key}:`.padEnd(11)} ${value}`)
  return lines
}

export function describeSummary(summary: StreamSummary): string[] {
  return [...describeHeader(summary.header), ...describeTotals(summary)]
}

/** The end record's totals and what was verified. */
export function describeTotals(summary: StreamSummary): string[] {
  const { end } = summary
  const lines = [
    `records:    ${end.records}`,
    `data:       ${end.dataBytes} bytes (${formatBytes(end.dataBytes)})`,
    `zeros:      ${end.zeroBytes} bytes (${formatBytes(end.zeroBytes)})`,
  ]
  if (hasImageDigest(summary.header)) lines.push(`image:      xxh64 ${hex64(end.imageDigest)} (of the chunk digests)`)
  lines.push(
    `length:     ${summary.bytes} bytes (${formatBytes(summary.bytes)})`,
    'verified:   every record checksum, the order of records and the end record',
  )
  return lines
}

/** 16 hex digits, as xxhsum -H64 prints an xxh64. */
export function hex64(value: bigint): string {
  return value.toString(16).padStart(16, '0')
}

function hasImageDigest(header: StreamHeader): boolean {
  return header.kind === StreamKind.DELTA || header.kind === StreamKind.DIGEST
}

/** One line for a record. */
export function describeRecord(rec: StreamRecord): string {
  let line = `record ${rec.index} at byte ${rec.position}: ${rec.type} offset ${rec.offset} length ${rec.length} (${formatBytes(rec.length)})`
  if (rec.type === 'SUMS') line += `, ${rec.payloadLength / DIGEST_SIZE} digests`
  else if (rec.type === 'DATA') line += `, payload ${rec.payloadLength}`
  if (rec.baseLength !== 0) line += `, base ${rec.baseLength} bytes xxh64 ${hex64(rec.baseDigest)}`
  return line
}

export interface ChunkDigest {
  chunk: number
  offset: number
  length: number
  digest: bigint
}

/** The digests a SUMS record holds, one per chunk. */
export function recordDigests(rec: StreamRecord, header: StreamHeader): ChunkDigest[] {
  if (rec.type !== 'SUMS') return []
  const B = header.blockSize
  const end = rec.offset + rec.length
  const out: ChunkDigest[] = []
  for (let i = 0; i * DIGEST_SIZE < rec.payload.length; i++) {
    const offset = rec.offset + i * B
    out.push({
      chunk: offset / B,
      offset,
      length: Math.min(B, end - offset),
      digest: rec.payload.readBigUInt64LE(i * DIGEST_SIZE),
    })
  }
  return out
}

export function describeDigest(d: ChunkDigest): string {
  return `  chunk ${d.chunk} offset ${d.offset} length ${d.length}: xxh64 ${hex64(d.digest)}`
}

export function headerJson(header: StreamHeader): Record<string, unknown> {
  return {
    type: 'header',
    format: 'blockpipe',
    version: header.version,
    kind: KIND_NAMES[header.kind],
    flags: header.flags,
    full: isFull(header),
    size: header.size,
    baseSize: header.baseSize,
    blockSize: header.blockSize,
    hash: 'xxh64',
    seed: header.seed.toString(),
    metadata: header.metadata,
    checksum: hex64(header.checksum),
    bytes: header.byteLength,
  }
}

export function recordJson(rec: StreamRecord): Record<string, unknown> {
  const out: Record<string, unknown> = {
    type: 'record',
    index: rec.index,
    position: rec.position,
    record: rec.type,
    flags: rec.flags,
    offset: rec.offset,
    length: rec.length,
    payloadLength: rec.payloadLength,
  }
  if (rec.type === 'SUMS') out.digests = rec.payloadLength / DIGEST_SIZE
  if (rec.baseLength !== 0) {
    out.baseLength = rec.baseLength
    out.baseDigest = hex64(rec.baseDigest)
  }
  out.checksum = hex64(rec.checksum)
  return out
}

export function digestJson(rec: StreamRecord, d: ChunkDigest): Record<string, unknown> {
  return {
    type: 'digest',
    record: rec.index,
    chunk: d.chunk,
    offset: d.offset,
    length: d.length,
    digest: hex64(d.digest),
  }
}

export function summaryJson(summary: StreamSummary): Record<string, unknown> {
  const { end } = summary
  const out: Record<string, unknown> = {
    type: 'end',
    format: 'blockpipe',
    records: end.records,
    payloadBytes: end.payloadBytes,
    dataBytes: end.dataBytes,
    zeroBytes: end.zeroBytes,
    size: end.size,
  }
  if (hasImageDigest(summary.header)) out.imageDigest = hex64(end.imageDigest)
  out.bytes = summary.bytes
  out.verified = true
  return out
}

// The original era_copy's stream (erarange.ts): no header, no checksums.

export const ERARANGE_DESCRIPTION =
  'ERARANGE, the stream of the original era_copy: no header, no checksums, no end marker'

export function describeEraRangeRecord(rec: EraRangeRecord): string {
  return `record ${rec.index} at byte ${rec.position}: ERARANGE offset ${rec.offset} length ${rec.length} (${formatBytes(rec.length)})`
}

export function describeEraRangeSummary(summary: EraRangeSummary): string[] {
  return [
    `records:    ${summary.records}`,
    `data:       ${summary.dataBytes} bytes (${formatBytes(summary.dataBytes)})`,
    `extent:     up to byte ${summary.end} (${formatBytes(summary.end)})`,
    `order:      ${summary.ascending ? 'ascending' : 'not ascending (several streams one after another?)'}`,
    `length:     ${summary.bytes} bytes (${formatBytes(summary.bytes)})`,
    'verified:   only the structure (every record starts with ERARANGE and its data is whole):' +
      ' corrupt data, or a cut between two records, cannot be detected',
  ]
}

export function eraRangeRecordJson(rec: EraRangeRecord): Record<string, unknown> {
  return {
    type: 'record',
    index: rec.index,
    position: rec.position,
    record: 'ERARANGE',
    offset: rec.offset,
    length: rec.length,
  }
}

export function eraRangeSummaryJson(summary: EraRangeSummary): Record<string, unknown> {
  return { type: 'end', format: 'erarange', ...summary, verified: false }
}
