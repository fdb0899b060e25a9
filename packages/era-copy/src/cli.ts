#!/usr/bin/env node
import {
  FLAG_FULL,
  Progress,
  StreamKind,
  StreamWriter,
  UsageError,
  VERSION,
  WritableSink,
  commandLine,
  onePositional,
  formatBytes,
  loadHash,
  openSource,
  parseBlockSize,
  refuseTerminalInput,
  refuseTerminalOutput,
  runMain,
} from '@blockpipe/core'
import { ExtentCopier } from './copy.js'
import { eraInvalidateRanges } from './era-invalidate.js'
import { RangeSpool } from './range-spool.js'
import { XmlInputError } from './xml-events.js'

const PROGRAM = 'era-copy'

async function main(argv: string[]): Promise<void> {
  const args = commandLine(
    PROGRAM,
    argv,
    `Usage: $0 [-b SIZE] DEVICE < era_invalidate.xml > stream
       $0 --all [-b SIZE] DEVICE > stream

Copies the blocks of DEVICE that era_invalidate lists as written into a
blockpipe block stream on standard output, for era-apply to write elsewhere.`,
  )
    .option('block-size', {
      alias: 'b',
      type: 'string',
      describe: 'dm-era block size: sectors of 512 bytes (128), or bytes with K, M or G (64K)',
    })
    .option('all', {
      type: 'boolean',
      default: false,
      describe: 'copy the whole device, no XML (the first full backup)',
    })
    .option('written-since', {
      type: 'string',
      describe: 'the era given to era_invalidate --written-since, recorded in the stream header',
    })
    .option('progress', { type: 'boolean', default: false, describe: 'show progress on stderr' })
    .example('era_invalidate --written-since 7 /dev/meta | $0 -b 128 /dev/mapper/vm_era > incr.bps', '')
    .example('$0 --all -b 128 /dev/mapper/vm_era | gzip > full.bps.gz', '')
    .parseSync()

  const path = onePositional(args, 'DEVICE')
  if (args['block-size'] === undefined && !args.all) {
    throw new UsageError('--block-size is required: give the dm-era block size, e.g. -b 128 (sectors) or -b 64K')
  }
  const blockSize = parseBlockSize(args['block-size'] ?? '64K')
  const writtenSince = args['written-since']
  if (writtenSince !== undefined && !/^\d+$/.test(writtenSince)) {
    throw new UsageError(`--written-since ${JSON.stringify(writtenSince)} is not an era number`)
  }
  refuseTerminalOutput(process.stdout)
  const hash = await loadHash()
  const dev = openSource(path)
  const nrBlocks = Math.ceil(dev.size / blockSize)

  const spool = new RangeSpool()
  try {
    if (args.all) {
      if (nrBlocks > 0) spool.add({ begin: 0, end: nrBlocks })
    } else {
      refuseTerminalInput(process.stdin, 'era_invalidate XML')
      for await (const batch of eraInvalidateRanges(process.stdin)) {
        for (const range of batch) spool.add(range)
      }
      if (spool.end > nrBlocks) {
        throw new XmlInputError(
          `block ${spool.end - 1} is beyond the end of ${path}, which has ${nrBlocks} blocks of ` +
            `${formatBytes(blockSize)} (${formatBytes(dev.size)}): wrong device or wrong block size (-b)?`,
        )
      }
    }
    const full = spool.blocks === nrBlocks
    const metadata: Record<string, string> = {
      producer: `${PROGRAM} ${VERSION}`,
      source: path,
      input: args.all ? 'all' : 'era_invalidate',
    }
    if (writtenSince !== undefined) metadata['written-since'] = writtenSince
    const sink = new WritableSink(process.stdout)
    const writer = new StreamWriter(hash, sink, {
      kind: StreamKind.BLOCK,
      flags: full ? FLAG_FULL : 0,
      size: dev.size,
      blockSize,
      metadata,
    })
    const progress = args.progress ? new Progress(PROGRAM, dev.size) : undefined
    const copier = new ExtentCopier(dev, writer, progress)
    await writer.start()
    for (const batch of spool.ranges()) {
      for (const range of batch) {
        const offset = range.begin * blockSize
        await copier.copy({ offset, length: Math.min(range.end * blockSize, dev.size) - offset })
      }
    }
    await writer.end()
    await sink.close()
    progress?.finish(dev.size, `${formatBytes(writer.bytes)} written`)
  } finally {
    spool.close()
  }
}

await runMain(PROGRAM, () => main(process.argv.slice(2)))
