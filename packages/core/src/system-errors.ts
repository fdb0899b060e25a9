import { lstatSync, readlinkSync, statSync } from 'node:fs'
import { BlockpipeError } from './errors.js'

// The one place where what the system says (an errno) becomes what a user
// reads: the open errors of every file and device, the write errors of
// standard output and of the files the tools write, and whatever system
// error reaches the report of a command.

const PHRASES: Record<string, string> = {
  ENOSPC: 'no space left on the device (ENOSPC)',
  EDQUOT: 'disk quota exceeded (EDQUOT)',
  EFBIG: 'file too large for its file system (EFBIG)',
  EPIPE: 'the reading end of the output went away (broken pipe)',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'read-only file system',
  ELOOP: 'too many levels of symbolic links (a loop of symbolic links?)',
  EISDIR: 'is a directory',
  ENOTDIR: 'a component of the path is not a directory',
  ENOENT: 'no such file or device',
  EEXIST: 'already exists',
  EIO: 'input/output error (EIO): the device or its connection is failing',
  EBUSY: 'the device is in use (mounted, or open by another program); unmount it first',
  ENXIO: 'no such device (ENXIO): the device went away or its driver is not loaded',
  ENAMETOOLONG: 'file name too long',
  EMFILE: 'too many open files (EMFILE)',
  ECONNRESET: 'the connection was reset by the other end (ECONNRESET)',
}

/** Does `err` come from a system call (it carries an errno code)? */
export function isSystemError(err: unknown): err is NodeJS.ErrnoException {
  const code = (err as NodeJS.ErrnoException | null)?.code
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)
}

/** What the errno of `err` means, in words; unknown codes keep the system's text. */
export function systemPhrase(err: NodeJS.ErrnoException): string {
  const phrase = PHRASES[err.code as string]
  if (phrase !== undefined) return phrase
  // "EXDEV: cross-device link not permitted, rename 'a' -> 'b'": the words, and the code.
  const words = /^[A-Z0-9]+: ([^,]*)/.exec(err.message)?.[1]
  return words === undefined ? err.message : `${words} (${err.code})`
}

/** A system error on `what` (a file, standard output), for the user. */
export class SystemError extends BlockpipeError {
  /** The errno code: ENOSPC, EPIPE, ... */
  readonly errno: string

  constructor(err: NodeJS.ErrnoException, message: string) {
    super('EDEVICE', message)
    this.name = 'SystemError'
    this.errno = err.code as string
  }
}

/** `err` from writing `what` (standard output, a file) as a SystemError; other errors as they are. */
export function writeError(err: unknown, what: string): Error {
  if (err instanceof BlockpipeError || !isSystemError(err)) return err as Error
  if (err.code === 'EPIPE') return new SystemError(err, systemPhrase(err))
  return new SystemError(err, `cannot write ${what}: ${systemPhrase(err)}`)
}

/** A system error that no caller put in words: what failed, on what, and why. */
export function describeSystemError(err: NodeJS.ErrnoException): string {
  if (err.path !== undefined && err.syscall === 'open') return describeOpenError(err, err.path)
  if (err.code === 'EPIPE') return systemPhrase(err)
  const on = err.path === undefined ? '' : ` ${err.path}`
  return err.syscall === undefined ? systemPhrase(err) : `${err.syscall}${on}: ${systemPhrase(err)}`
}

/**
 * Why `path` could not be opened, in words. Looks at the path again where the
 * errno alone misleads: a dangling symbolic link gives ENOENT or EEXIST, and
 * EACCES on a regular file has nothing to do with block devices.
 */
export function describeOpenError(err: NodeJS.ErrnoException, path: string): string {
  switch (err.code) {
    case 'ENOENT':
    case 'EEXIST': {
      const link = danglingLink(path)
      if (link !== undefined) return `${path}: dangling symbolic link to ${link} (which does not exist)`
      return `${path}: ${systemPhrase(err)}`
    }
    case 'EACCES':
    case 'EPERM':
      return `${path}: permission denied (${permissionHint(path)})`
    default:
      return `${path}: ${systemPhrase(err)}`
  }
}

function danglingLink(path: string): string | undefined {
  try {
    if (!lstatSync(path).isSymbolicLink()) return undefined
    statSync(path)
    return undefined
  } catch {
    // lstat failed (no such path) or stat did (the link leads nowhere).
  }
  try {
    return readlinkSync(path)
  } catch {
    return undefined
  }
}

function permissionHint(path: string): string {
  let st
  try {
    st = statSync(path)
  } catch {
    return 'a directory on the way is not accessible to this user'
  }
  if (st.isBlockDevice()) return 'block devices need root'
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0')
  const what = st.isDirectory() ? 'directory' : st.isFile() ? 'file' : 'path'
  return `the ${what} has mode ${mode} and owner uid ${st.uid}: this user may not open it as needed; check chmod/chown`
}
