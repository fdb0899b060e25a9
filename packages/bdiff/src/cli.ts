#!/usr/bin/env node
import { fsyncSync, openSync, renameSync, unlinkSync, closeSync, constants } from 'node:fs'
import {
  BlockpipeError,
  describeOpenError,
  DEFAULT_CHUNK_SIZE,
  DigestWriter,
  FdSink,
  MAX_CHUNK_SIZE,
  Progress,
  StreamKind,
  StreamWriter,
  UsageError,
  cancellableInput,
  producerMetadata,
  WritableSink,
  close,
  commandLine,
  onePositional,
  formatBytes,
  loadHash,
  openSource,
  parseBlockSize,
  parseSeed,
  randomSeed,
  refuseTerminalOutput,
  runMain,
  type Device,
  type Hash64,
} from '@blockpipe/core'
import { diff, localBase, streamBase, type BaseDigests } from './diff.js'

const PROGRAM = 'bdiff'

async function main(argv: string[], signal: AbortSignal): Promise<void> {
  const args = await commandLine(
    PROGRAM,
    argv,
    `Usage: $0 [--digests-out FILE] SOURCE < digests > delta
       $0 --base OLD NEW > delta

Compares SOURCE chunk by chunk with the digests of an older image (a digest
stream from bsum on standard input) and writes a delta stream of the chunks
that differ, for bpatch.`,
  )
    .option('base', { type: 'string', describe: 'digest this local old image instead of reading digests' })
    .option('digests-out', {
      type: 'string',
      describe: "also write SOURCE's digest stream to FILE, to feed the next run instead of a new bsum",
    })
    .option('block-size', { alias: 'b', type: 'string', describe: 'with --base: chunk size (default 4K)' })
    .option('seed', { type: 'string', describe: 'with --base: digest seed (default: random)' })
    .option('progress', { type: 'boolean', default: false, describe: 'show progress on stderr' })
    .example('ssh backup bsum /srv/vm.img | $0 /dev/vg/vm-snap | ssh backup bpatch /srv/vm.img', '')
    .example('$0 --digests-out today.sum /dev/vg/snap < yesterday.sum | ssh backup bpatch /srv/vm.img', '')
    .parseAsync()

  if (args.base === undefined && (args['block-size'] !== undefined || args.seed !== undefined)) {
    throw new UsageError('--block-size and --seed go with --base; otherwise they come from the digest stream')
  }
  const blockSize = args['block-size'] === undefined ? DEFAULT_CHUNK_SIZE : parseBlockSize(args['block-size'])
  if (blockSize > MAX_CHUNK_SIZE) throw new UsageError(`--block-size at most ${MAX_CHUNK_SIZE / 1024 / 1024}M`)
  const seed = args.seed === undefined ? randomSeed() : parseSeed(args.seed)
  refuseTerminalOutput(process.stdout)
  const hash = await loadHash()
  const source = openSource(onePositional(args, 'SOURCE'))
  let old: Device | undefined
  try {
    let base: BaseDigests
    if (args.base !== undefined) {
      old = openSource(args.base)
      base = localBase(old, blockSize, seed)
    } else {
      base = await streamBase(hash, cancellableInput('a digest stream from bsum', signal))
    }
    await run(hash, source, base, args['digests-out'], args.progress, signal)
  } finally {
    close(source)
    if (old !== undefined) close(old)
  }
}

async function run(
  hash: Hash64,
  source: Device,
  base: BaseDigests,
  digestsOut: string | undefined,
  progress: boolean,
  signal: AbortSignal,
) {
  const out = new WritableSink(process.stdout)
  const writer = new StreamWriter(hash, out, {
    kind: StreamKind.DELTA,
    size: source.size,
    baseSize: base.size,
    blockSize: base.blockSize,
    seed: base.seed,
    metadata: producerMetadata(PROGRAM, source.path),
  })
  const sums = digestsOut === undefined ? undefined : openDigestsOut(hash, digestsOut, source, base)
  try {
    await sums?.start()
    await writer.start()
    const meter = progress ? new Progress(PROGRAM, source.size) : undefined
    const result = await diff(hash, source, base, writer, sums?.writer, meter, signal)
    await out.close()
    sums?.commit()
    meter?.finish(source.size, `${result.changed} of ${result.chunks} chunks differ, ${formatBytes(writer.bytes)} sent`)
  } finally {
    sums?.abandon()
  }
}

/** The digest file is written under a temporary name and renamed once whole. */
function openDigestsOut(hash: Hash64, path: string, source: Device, base: BaseDigests) {
  const tmp = `${path}.tmp-${process.pid}`
  let fd: number
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
  } catch (err) {
    throw new BlockpipeError(
      'EDEVICE',
      `--digests-out: cannot create ${describeOpenError(err as NodeJS.ErrnoException, tmp)}`,
    )
  }
  const stream = new StreamWriter(hash, new FdSink(fd, 0, `the --digests-out file ${path} (as ${tmp}, now removed)`), {
    kind: StreamKind.DIGEST,
    size: source.size,
    blockSize: base.blockSize,
    seed: base.seed,
    metadata: producerMetadata(PROGRAM, source.path),
  })
  let open = true
  return {
    /** Inside the caller's try: a failure here is cleaned up by abandon() as any later one. */
    start: () => stream.start(),
    writer: new DigestWriter(hash, stream, base.blockSize, base.seed),
    commit() {
      fsyncSync(fd)
      closeSync(fd)
      open = false
      renameSync(tmp, path)
    },
    abandon() {
      if (!open) return
      closeSync(fd)
      unlinkSync(tmp)
    },
  }
}

await runMain(PROGRAM, (signal) => main(process.argv.slice(2), signal), { cancellable: true })
