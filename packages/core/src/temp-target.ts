import { randomBytes } from 'node:crypto'
import { constants, linkSync, openSync, rmSync, unlinkSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { BlockpipeError } from './errors.js'
import { describeOpenError } from './system-errors.js'
import { syncDirectory } from './undo.js'

// A target an apply creates is written under a temporary name beside it and
// linked into place only once whole and synced: an interrupted or failed
// create never leaves a file at the target's name that looks like a backup.

const NAME_CHARS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'

/** `.NAME.blockpipe-XXXXXX` in the target's directory. */
export function temporaryName(path: string): string {
  const tail = [...randomBytes(6)].map((b) => NAME_CHARS[b % NAME_CHARS.length]).join('')
  return join(dirname(path), `.${basename(path)}.blockpipe-${tail}`)
}

/** Creates the temporary file for `path`; a name taken already is tried again with another. */
export function createTemporary(path: string): { fd: number; temporary: string } {
  for (;;) {
    const temporary = temporaryName(path)
    try {
      return { fd: openSync(temporary, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600), temporary }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue
      throw new BlockpipeError('EDEVICE', describeOpenError(err as NodeJS.ErrnoException, path))
    }
  }
}

/**
 * Gives the synced temporary file its target name. A link, not a rename: a
 * file that appeared at the target meanwhile is kept, and this apply fails.
 */
export function placeTemporary(temporary: string, path: string): void {
  try {
    linkSync(temporary, path)
  } catch (err) {
    rmSync(temporary, { force: true })
    const e = err as NodeJS.ErrnoException
    throw new BlockpipeError(
      'EDEVICE',
      e.code === 'EEXIST'
        ? `${path} appeared while it was being created (another program made it): it was left as it is, and the` +
            ' image this apply wrote was removed; check what is at that name, then apply again'
        : `${path}: cannot give the new image its name: ${describeOpenError(e, path)}; the image was removed`,
    )
  }
  unlinkSync(temporary)
  syncDirectory(path)
}

/** Removes the temporary file of a create that did not finish. */
export function discardTemporary(temporary: string): void {
  rmSync(temporary, { force: true })
}
