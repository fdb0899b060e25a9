#!/usr/bin/env node
import type { Readable } from 'node:stream'
import {
  DEFAULT_CHUNK_SIZE,
  MAX_CHUNK_SIZE,
  Progress,
  UsageError,
  WritableSink,
  close,
  commandLine,
  onePositional,
  loadHash,
  openSource,
  parseBlockSize,
  parseSeed,
  randomSeed,
  standardInput,
  refuseTerminalOutput,
  runMain,
} from '@blockpipe/core'
import { rechunk, streamSink, sum, sumDevice, textSink } from './sum.js'

const PROGRAM = 'bsum'

async function main(argv: string[]): Promise<void> {
  const args = await commandLine(
    PROGRAM,
    argv,
    `Usage: $0 [-b SIZE] [--text] SOURCE > digests
       ... | $0 --size BYTES - > digests

Digests SOURCE (a file, a block device, or - for standard input) chunk by
chunk with xxh64 and writes a blockpipe digest stream, for bdiff.`,
  )
    .option('block-size', {
      alias: 'b',
      type: 'string',
      describe: 'chunk size: sectors of 512 bytes (128), or bytes with K, M or G (default 4K)',
    })
    .option('text', { type: 'boolean', default: false, describe: 'print a line per chunk: offset, length, digest' })
    .option('seed', {
      type: 'string',
      describe: 'digest seed (default: random, so that no one can craft a chunk that collides)',
    })
    .option('size', { type: 'string', describe: 'with -: the length of standard input in bytes' })
    .option('progress', { type: 'boolean', default: false, describe: 'show progress on stderr' })
    .example('ssh backup bsum /srv/vm.img | bdiff /dev/vg/vm-snap | ssh backup bpatch /srv/vm.img', '')
    .example('$0 --text --seed 0 disk.img', '')
    .parseAsync()

  const source = onePositional(args, 'SOURCE')
  const blockSize = args['block-size'] === undefined ? DEFAULT_CHUNK_SIZE : parseBlockSize(args['block-size'])
  if (blockSize > MAX_CHUNK_SIZE) throw new UsageError(`--block-size at most ${MAX_CHUNK_SIZE / 1024 / 1024}M for bsum`)
  const seed = args.seed === undefined ? randomSeed() : parseSeed(args.seed)
  let size: number | undefined
  if (args.size !== undefined) {
    if (source !== '-') throw new UsageError('--size is for standard input (-) only')
    size = Number(args.size)
    if (!/^\d+$/.test(args.size) || !Number.isSafeInteger(size)) {
      throw new UsageError(`--size ${JSON.stringify(args.size)} is not a number of bytes`)
    }
  }
  if (!args.text) refuseTerminalOutput(process.stdout)
  const hash = await loadHash()
  const dev = source === '-' ? undefined : openSource(source)
  let input: Readable | undefined
  try {
    if (dev !== undefined) size = dev.size
    else {
      input = standardInput('the data to digest')
      if (size === undefined && !args.text) {
        throw new UsageError('reading standard input, bsum needs its length for the stream header: give --size BYTES')
      }
    }
    const options = {
      blockSize,
      seed,
      size,
      source,
      progress: args.progress && size !== undefined ? new Progress(PROGRAM, size) : undefined,
    }
    const out = new WritableSink(process.stdout)
    const sink = args.text
      ? textSink(hash, (line) => out.write(Buffer.from(line)), options)
      : await streamSink(hash, out, options)
    const total =
      dev === undefined
        ? await sum(hash, rechunk(input as Readable, blockSize), sink, options)
        : await sumDevice(dev, sink, options)
    await out.close()
    options.progress?.finish(total)
  } finally {
    if (dev !== undefined) close(dev)
  }
}

await runMain(PROGRAM, () => main(process.argv.slice(2)))
