#!/usr/bin/env node
import {
  UsageError,
  applyAndReport,
  commandLine,
  checkStream,
  onePositional,
  standardInput,
  streamInput,
  runMain,
  withApplyOptions,
} from '@blockpipe/core'

const PROGRAM = 'era-apply'

async function main(argv: string[], signal: AbortSignal): Promise<void> {
  const args = await withApplyOptions(
    commandLine(
      PROGRAM,
      argv,
      `Usage: $0 [--spool DIR] [--undo FILE] TARGET < stream
       $0 --check < stream

Writes a blockpipe block stream (from era-copy) into TARGET, a regular file or
a block device. Every record is verified before it is written and the target
is synced before $0 exits 0.`,
    ).option('check', {
      type: 'boolean',
      default: false,
      describe: 'verify the stream and print a summary; no target',
    }),
    {
      spool: 'store and verify the whole stream in this directory (or new file) before writing anything',
      undo: 'write the old contents of every overwritten region to this new file',
      force: 'apply a partial stream to a new or empty target, or a delta stream without its checks',
    },
  )
    .example('gunzip < incr.bps.gz | $0 /srv/vm.img', '')
    .example('$0 --spool /srv/tmp --undo /srv/undo/vm.$(date +%F).undo /srv/vm.img < incr.bps', '')
    .example('$0 /srv/vm.img < /srv/undo/vm.2026-11-21.undo   # roll back', '')
    .parseAsync()

  if (args.check) {
    if (args._.length > 0) throw new UsageError('--check takes no TARGET')
    const lines = await checkStream(streamInput('a blockpipe stream'), {
      acceptEmpty: true,
      warn: (text) => process.stderr.write(`${PROGRAM}: warning: ${text}\n`),
    })
    process.stdout.write(`${lines.join('\n')}\n`)
    return
  }
  const target = onePositional(args, 'TARGET')
  await applyAndReport(standardInput('a blockpipe stream'), {
    ...args,
    program: PROGRAM,
    target,
    deltas: 'refuse',
    acceptEmpty: true,
    signal,
    stderr: process.stderr,
  })
}

// Past a file size limit (ulimit -f), a write fails with EFBIG and is reported, rather than killing the process.
process.on('SIGXFSZ', () => undefined)
await runMain(PROGRAM, (signal) => main(process.argv.slice(2), signal), { cancellable: true })
