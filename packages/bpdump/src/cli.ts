#!/usr/bin/env node
import { fstatSync, openSync, readSync, closeSync } from 'node:fs'
import {
  BlockpipeError,
  ERARANGE_DESCRIPTION,
  UsageError,
  WritableSink,
  commandLine,
  describeDigest,
  describeEraRangeRecord,
  describeEraRangeSummary,
  describeHeader,
  describeOpenError,
  describeRecord,
  describeTotals,
  digestJson,
  eraRangeRecordJson,
  eraRangeSummaryJson,
  headerJson,
  inspectStream,
  ERARANGE_WARNING,
  listEraRange,
  recordDigests,
  recordJson,
  standardInput,
  runMain,
  sniffInput,
  summaryJson,
  type ByteSource,
  type CorruptStreamError,
  type TruncatedStreamError,
} from '@blockpipe/core'

const PROGRAM = 'bpdump'
const READ_PIECE = 1024 * 1024
/** Lines are handed to stdout in batches of about this many bytes. */
const FLUSH_AT = 64 * 1024

async function main(argv: string[]): Promise<void> {
  const args = await commandLine(
    PROGRAM,
    argv,
    `Usage: $0 [--json] [--digests] [FILE|-]

Lists what a blockpipe stream holds, without a target: its header, every
record and the totals. Block, delta, digest and undo streams, and the stream
of the original era_copy (ERARANGE). The stream is verified as it is listed:
a corrupt or cut stream is listed up to the damage, then $0 fails (exit 1).`,
  )
    .option('json', { type: 'boolean', default: false, describe: 'one JSON object per line' })
    .option('digests', { type: 'boolean', default: false, describe: 'digest streams: every chunk digest too' })
    .example('$0 incr.bps', '')
    .example('gunzip < full.bps.gz | $0 --json | jq -c \'select(.type == "record")\'', '')
    .parseAsync()

  const files = args._.map(String)
  if (files.length > 1) throw new UsageError(`one FILE only, got ${files.join(' ')}`)
  const file = files[0] ?? '-'
  let input: ByteSource
  if (file === '-') {
    input = standardInput('a stream')
  } else {
    input = readFile(file)
  }
  const out = new Lines(new WritableSink(process.stdout), args.json)
  try {
    const sniffed = await sniffInput(input)
    if (sniffed.format === 'erarange') await listLegacy(sniffed.source, out)
    else await list(sniffed.source, out, args.digests)
  } catch (err) {
    // What came before the damage is listed; then the error.
    try {
      if (args.json && err instanceof BlockpipeError) {
        const at = (err as Partial<CorruptStreamError | TruncatedStreamError>).position
        const where = at === undefined ? {} : { record: at.record, position: at.offset }
        await out.put({ type: 'error', code: err.code, message: err.message, ...where })
      }
      await out.flush()
    } catch {
      // Standard output is gone (a closed pipe): the error to report is the first one.
    }
    throw err
  }
  await out.flush()
}

async function list(input: ByteSource, out: Lines, digests: boolean): Promise<void> {
  const summary = await inspectStream(input, {
    header: (header) => out.put(headerJson(header), describeHeader(header)),
    record: async (rec, header) => {
      await out.put(recordJson(rec), [describeRecord(rec)])
      if (!digests) return
      for (const d of recordDigests(rec, header)) await out.put(digestJson(rec, d), [describeDigest(d)])
    },
  })
  await out.put(summaryJson(summary), describeTotals(summary))
}

async function listLegacy(input: ByteSource, out: Lines): Promise<void> {
  process.stderr.write(`${PROGRAM}: warning: ${ERARANGE_WARNING}\n`)
  await out.put({ type: 'header', format: 'erarange' }, [`format:     ${ERARANGE_DESCRIPTION}`])
  const summary = await listEraRange(input, (rec) => out.put(eraRangeRecordJson(rec), [describeEraRangeRecord(rec)]))
  await out.put(eraRangeSummaryJson(summary), describeEraRangeSummary(summary))
}

/** Text lines or JSON lines to stdout, in batches, waiting when stdout is full. */
class Lines {
  readonly #sink: WritableSink
  readonly #json: boolean
  #text = ''

  constructor(sink: WritableSink, json: boolean) {
    this.#sink = sink
    this.#json = json
  }

  async put(json: Record<string, unknown>, text: string[] = []): Promise<void> {
    this.#text += this.#json ? `${JSON.stringify(json)}\n` : text.map((l) => `${l}\n`).join('')
    if (this.#text.length >= FLUSH_AT) await this.#write()
  }

  async flush(): Promise<void> {
    await this.#write()
    await this.#sink.close()
  }

  async #write(): Promise<void> {
    const text = this.#text
    this.#text = ''
    if (text !== '') await this.#sink.write(Buffer.from(text))
  }
}

/** A file, a device or a named pipe, read in order. */
function* readFile(path: string): Generator<Buffer> {
  let fd: number
  try {
    fd = openSync(path, 'r')
  } catch (err) {
    throw new BlockpipeError('EDEVICE', describeOpenError(err as NodeJS.ErrnoException, path))
  }
  try {
    if (fstatSync(fd).isDirectory()) throw new BlockpipeError('EDEVICE', `${path}: is a directory`)
    for (;;) {
      const buf = Buffer.allocUnsafe(READ_PIECE)
      let n: number
      try {
        n = readSync(fd, buf, 0, READ_PIECE, null)
      } catch (err) {
        throw new BlockpipeError('EDEVICE', `${path}: read error: ${(err as Error).message}`)
      }
      if (n === 0) return
      yield buf.subarray(0, n)
    }
  } finally {
    closeSync(fd)
  }
}

await runMain(PROGRAM, () => main(process.argv.slice(2)))
