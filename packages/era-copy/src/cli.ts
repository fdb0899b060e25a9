#!/usr/bin/env node
import {
  EraRangeWriter,
  FLAG_FULL,
  Progress,
  StreamKind,
  StreamWriter,
  UsageError,
  producerMetadata,
  WritableSink,
  close,
  commandLine,
  onePositional,
  formatBytes,
  loadHash,
  openSource,
  parseBlockSize,
  standardInput,
  refuseTerminalOutput,
  runMain,
} from '@blockpipe/core'
import { ExtentCopier, eraRangeRecords } from './copy.js'
import { DATTO_BLOCK, checkDattoSequence, readDattoBlocks, readDattoHeader } from './datto-cow.js'
import { eraInvalidateRanges } from './era-invalidate.js'
import { RangeSpool } from './range-spool.js'
import { readSnapshotChunks, readSnapshotHeader } from './snapshot-cow.js'
import { mergeRanges, readThinDelta, thinBlockSize } from './thin-delta.js'
import { XmlInputError } from './xml-events.js'

const PROGRAM = 'era-copy'

async function main(argv: string[]): Promise<void> {
  const args = await commandLine(
    PROGRAM,
    argv,
    `Usage: $0 [-b SIZE] DEVICE < era_invalidate.xml > stream
       $0 --thin-delta DEVICE < thin_delta.xml > stream
       $0 --snapshot-cow COW_DEVICE ORIGIN > stream
       $0 --datto-cow COW_FILE SNAPSHOT_DEVICE > stream
       $0 --all [-b SIZE] DEVICE > stream

Copies the blocks of DEVICE that changed into a blockpipe block stream on
standard output, for era-apply to write elsewhere. Sources of the list of
changed blocks: era_invalidate XML (dm-era, the default); thin_delta XML
(LVM thin snapshots); the exception store of an old-style LVM (dm-snapshot)
snapshot, its -cow device; the COW file a dattobd snapshot left; none with
--all (the first, full copy).`,
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
    .option('thin-delta', {
      type: 'boolean',
      default: false,
      describe: 'read thin_delta XML (LVM thin snapshots): the block size is its data_block_size',
    })
    .option('snapshot-cow', {
      type: 'string',
      describe: 'the -cow device of an LVM snapshot: copy the chunks of ORIGIN changed since it was taken',
    })
    .option('datto-cow', {
      type: 'string',
      describe: 'the COW file of the previous dattobd snapshot: copy the blocks it marks as changed',
    })
    .option('format', {
      choices: ['blockpipe', 'erarange'],
      default: 'blockpipe',
      describe: 'erarange: the stream of the original era_copy, for an old era_apply (no checksums)',
    })
    .option('progress', { type: 'boolean', default: false, describe: 'show progress on stderr' })
    .example('era_invalidate --written-since 7 /dev/meta | $0 -b 128 /dev/mapper/vm_era > incr.bps', '')
    .example('$0 --all -b 128 /dev/mapper/vm_era | gzip > full.bps.gz', '')
    .example('thin_delta -m --snap1 12 --snap2 13 /dev/mapper/pool_tmeta | $0 --thin-delta /dev/vg/snap13', '')
    .example('$0 --snapshot-cow /dev/mapper/vg-vm_mon-cow /dev/vg/vm_tue > incr.bps', '')
    .example('$0 --datto-cow /var/backup/datto.1 /dev/datto4 > incr.bps', '')
    .parseAsync()

  const snapshotCow = args['snapshot-cow']
  const dattoCow = args['datto-cow']
  const path = onePositional(
    args,
    snapshotCow !== undefined ? 'ORIGIN' : dattoCow !== undefined ? 'SNAPSHOT_DEVICE' : 'DEVICE',
  )
  const thin = args['thin-delta']
  const sources = [
    thin && '--thin-delta',
    args.all && '--all',
    snapshotCow !== undefined && '--snapshot-cow',
    dattoCow !== undefined && '--datto-cow',
  ].filter((x) => x !== false)
  if (sources.length > 1) {
    throw new UsageError(
      `${sources.slice(0, 2).join(' and ')} exclude each other: ` +
        (args.all ? '--all reads no XML and no COW store' : 'give one source of the changed blocks'),
    )
  }
  const cowSource = sources.find((x) => x === '--snapshot-cow' || x === '--datto-cow')
  if (cowSource !== undefined && (args['block-size'] !== undefined || args['written-since'] !== undefined)) {
    throw new UsageError(
      `${cowSource} takes neither --block-size nor --written-since: the block size comes from the ${cowSource === '--datto-cow' ? 'COW file (4 KiB)' : "store's chunk size"}`,
    )
  }
  if (args['block-size'] === undefined && !args.all && !thin && cowSource === undefined) {
    throw new UsageError('--block-size is required: give the dm-era block size, e.g. -b 128 (sectors) or -b 64K')
  }
  const givenBlockSize = args['block-size'] === undefined ? undefined : parseBlockSize(args['block-size'])
  const writtenSince = args['written-since']
  if (writtenSince !== undefined && !/^\d+$/.test(writtenSince)) {
    throw new UsageError(`--written-since ${JSON.stringify(writtenSince)} is not an era number`)
  }
  if (thin && writtenSince !== undefined) throw new UsageError('--written-since is an era: thin_delta has none')
  refuseTerminalOutput(process.stdout)
  const hash = await loadHash()
  const dev = openSource(path)

  const spool = new RangeSpool()
  // thin_delta's left_only blocks: unmapped in the newer device, they read as zeros.
  const unmapped = new RangeSpool()
  try {
    let blockSize = givenBlockSize ?? 64 * 1024
    /** One past the last block the XML names. */
    let listed = 0
    let right: string | undefined
    let input = args.all ? 'all' : thin ? 'thin_delta' : 'era_invalidate'
    const extra: Record<string, string> = {}
    if (args.all) {
      const nrBlocks = Math.ceil(dev.size / blockSize)
      if (nrBlocks > 0) spool.add({ begin: 0, end: nrBlocks })
    } else if (snapshotCow !== undefined) {
      const cow = openSource(snapshotCow)
      try {
        const store = readSnapshotHeader(cow)
        blockSize = store.chunkBytes
        extra.exceptions = String(readSnapshotChunks(cow, store, dev, spool))
      } finally {
        close(cow)
      }
      input = 'snapshot_cow'
      extra.cow = snapshotCow
    } else if (dattoCow !== undefined) {
      const cow = openSource(dattoCow)
      try {
        const info = readDattoHeader(cow, dev)
        checkDattoSequence(dattoCow, info, path)
        readDattoBlocks(cow, info, dev, spool)
        blockSize = DATTO_BLOCK
        extra['datto-seqid'] = info.seqid
        extra['datto-uuid'] = info.uuid
      } finally {
        close(cow)
      }
      input = 'datto_cow'
      extra.cow = dattoCow
    } else if (thin) {
      const info = await readThinDelta(standardInput('thin_delta XML'), (range) => {
        listed = range.end
        if (range.kind === 'left_only') unmapped.add(range)
        else if (range.kind !== 'same') spool.add(range)
      })
      blockSize = thinBlockSize(info, givenBlockSize)
      right = info.right
    } else {
      for await (const batch of eraInvalidateRanges(standardInput('era_invalidate XML'))) {
        for (const range of batch) spool.add(range)
      }
      listed = spool.end
    }
    const nrBlocks = Math.ceil(dev.size / blockSize)
    if (listed > nrBlocks) {
      throw new XmlInputError(
        `block ${listed - 1} is beyond the end of ${path}, which has ${nrBlocks} blocks of ` +
          `${formatBytes(blockSize)} (${formatBytes(dev.size)}): ` +
          (thin ? "wrong device (thin_delta's --snap2)?" : 'wrong device or wrong block size (-b)?'),
      )
    }
    const full = spool.blocks + unmapped.blocks === nrBlocks
    const metadata = producerMetadata(PROGRAM, path)
    metadata.input = input
    Object.assign(metadata, extra)
    if (writtenSince !== undefined) metadata['written-since'] = writtenSince
    const sink = new WritableSink(process.stdout)
    const writer =
      args.format === 'erarange'
        ? new EraRangeWriter(sink)
        : new StreamWriter(hash, sink, {
            kind: StreamKind.BLOCK,
            flags: full ? FLAG_FULL : 0,
            size: dev.size,
            blockSize,
            metadata,
          })
    const progress = args.progress ? new Progress(PROGRAM, dev.size) : undefined
    const copier = new ExtentCopier(dev, writer instanceof EraRangeWriter ? eraRangeRecords(writer) : writer, progress)
    await writer.start()
    // Unmapped blocks are read too: data there means the XML is not about
    // this device (or --snap1 and --snap2 were swapped), and the data is sent.
    let unexpected = 0
    let firstUnexpected = 0
    for (const { range, second } of mergeRanges(spool.ranges(), unmapped.ranges())) {
      const offset = range.begin * blockSize
      const before = copier.dataBytes
      await copier.copy({ offset, length: Math.min(range.end * blockSize, dev.size) - offset })
      if (second && copier.dataBytes > before) {
        if (unexpected === 0) firstUnexpected = range.begin
        unexpected += copier.dataBytes - before
      }
    }
    await writer.end()
    await sink.close()
    progress?.finish(dev.size, `${formatBytes(writer.bytes)} written`)
    if (unexpected > 0) {
      process.stderr.write(
        `${PROGRAM}: warning: thin_delta lists blocks as left_only (unmapped in device ${right}), but ${path}` +
          ` holds ${formatBytes(unexpected)} of data in them, from block ${firstUnexpected} on; that data was` +
          ` copied. Is ${path} the --snap2 device, and was --snap1 the older one?\n`,
      )
    }
  } finally {
    spool.close()
    unmapped.close()
  }
}

await runMain(PROGRAM, () => main(process.argv.slice(2)))
