#!/usr/bin/env node
import { UsageError, WritableSink, commandLine, refuseTerminalOutput, runMain } from '@blockpipe/core'
import { defaultUndoDir, parseAsOf, undoFilesAfter } from './as-of.js'
import { restore } from './restore.js'

const PROGRAM = 'brestore'

async function main(argv: string[]): Promise<void> {
  const args = await commandLine(
    PROGRAM,
    argv,
    `Usage: $0 [--raw] [--force] IMAGE UNDO... > stream     (undo files newest first)
       $0 [--raw] --as-of DATE [--undo-dir DIR] IMAGE > stream
       $0 --check IMAGE UNDO...

Writes IMAGE as it was before the apply of the oldest UNDO file, as a full
block stream for era-apply (or the bytes with --raw), without changing IMAGE
or the undo files. The undo files must form one unbroken chain ending at IMAGE
as it is now: a gap, a wrong order or another image's file is refused (exit 3)
before anything is written.`,
  )
    .option('raw', { type: 'boolean', default: false, describe: 'write the bytes of the image, not a block stream' })
    .option('as-of', {
      type: 'string',
      describe: 'restore the image as of DATE (YYYY-MM-DD: the end of that day, UTC): the undo files made after it',
    })
    .option('undo-dir', {
      type: 'string',
      describe: 'where --as-of finds the undo files (default IMAGE.undo if it exists, else the directory of IMAGE)',
    })
    .option('check', { type: 'boolean', default: false, describe: 'check the chain against IMAGE; write nothing' })
    .option('force', {
      type: 'boolean',
      default: false,
      describe: 'use undo files not bound to their image, unchecked',
    })
    .example('$0 /srv/vm.img $(ls -r /srv/vm.img.undo/*.undo | head -n 2) | era-apply /srv/2-nights-ago.img', '')
    .example('$0 --as-of 2026-11-20 /srv/vm.img | ssh host era-apply /srv/vm-1120.img', '')
    .example('$0 --raw --as-of 2026-11-20T18:00 /srv/vm.img | dd of=/dev/vg/restore bs=1M', '')
    .parseAsync()

  const [image, ...undo] = args._.map(String)
  if (image === undefined) throw new UsageError('missing IMAGE')
  const asOfText = args['as-of']
  if (asOfText !== undefined && undo.length > 0) {
    throw new UsageError('give either --as-of DATE or the UNDO files, not both')
  }
  if (asOfText === undefined && undo.length === 0)
    throw new UsageError('missing UNDO files (newest first), or --as-of DATE')
  if (args['undo-dir'] !== undefined && asOfText === undefined) throw new UsageError('--undo-dir goes with --as-of')
  if (asOfText !== undefined) {
    const dir = args['undo-dir'] ?? defaultUndoDir(image)
    undo.push(...undoFilesAfter(dir, image, parseAsOf(asOfText)))
    if (undo.length === 0)
      warn(`no undo file of ${image} in ${dir} was made after ${asOfText}: the image is as it was then`)
  }
  if (!args.check) refuseTerminalOutput(process.stdout)
  const options = { image, undo, force: args.force, raw: args.raw, asOf: asOfText, warn }
  if (args.check) {
    const { files, size } = await restore(options)
    process.stdout.write(
      `${image}: ${files.length} undo files form one chain ending at it; it was ${size} bytes before` +
        ` ${files[files.length - 1]?.header.metadata.created ?? 'then'}\n`,
    )
    return
  }
  await restore(options, new WritableSink(process.stdout))
}

function warn(message: string): void {
  process.stderr.write(`${PROGRAM}: warning: ${message}\n`)
}

await runMain(PROGRAM, () => main(process.argv.slice(2)))
