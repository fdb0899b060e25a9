#!/usr/bin/env node
import { applyAndReport, commandLine, onePositional, standardInput, runMain, withApplyOptions } from '@blockpipe/core'

const PROGRAM = 'bpatch'

async function main(argv: string[], signal: AbortSignal): Promise<void> {
  const args = await withApplyOptions(
    commandLine(
      PROGRAM,
      argv,
      `Usage: $0 [--spool DIR] [--undo FILE] [--force] TARGET < delta

Applies a delta stream from bdiff to TARGET. Before a chunk is overwritten
its current contents are checked: already the new data, it is skipped; the
data the delta was made against, it is written; anything else is a conflict
(exit 3). Also applies era-copy block streams and undo journals.`,
    ),
    {
      spool: 'store and verify the whole delta (and every chunk of the target) before writing anything',
      undo: 'write the old contents of every overwritten chunk to this new file',
      force: 'write regardless of what the target holds',
    },
  )
    .example('ssh backup bsum /srv/vm.img | bdiff /dev/vg/vm-snap | ssh backup $0 /srv/vm.img', '')
    .parseAsync()

  const target = onePositional(args, 'TARGET')
  await applyAndReport(standardInput('a delta stream from bdiff'), {
    ...args,
    program: PROGRAM,
    target,
    deltas: 'check',
    signal,
    stderr: process.stderr,
  })
}

// Past a file size limit (ulimit -f), a write fails with EFBIG and is reported, rather than killing the process.
process.on('SIGXFSZ', () => undefined)
await runMain(PROGRAM, (signal) => main(process.argv.slice(2), signal), { cancellable: true })
