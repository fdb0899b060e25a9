import { openSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { BlockpipeError } from '@blockpipe/core'

// Lists too long for memory spill to a temporary file, unlinked at once so
// that nothing is left behind whatever way the program ends.

let counter = 0

/** Opens a new, already unlinked temporary file era-copy-NAME-… in `dir` for reading and writing. */
export function openScratchFile(dir: string, name: string, what: string): number {
  const path = join(dir, `era-copy-${name}-${process.pid}-${Date.now()}-${counter++}`)
  let fd: number
  try {
    fd = openSync(path, 'wx+', 0o600)
  } catch (err) {
    throw new BlockpipeError(
      'EDEVICE',
      `cannot create a temporary file for ${what} in ${dir}: ${(err as Error).message} (set TMPDIR)`,
    )
  }
  unlinkSync(path)
  return fd
}
