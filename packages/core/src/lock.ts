import {
  closeSync,
  constants,
  fstatSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { hostname } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { majorMinor } from './device.js'
import { BlockpipeError } from './errors.js'
import { describeOpenError, describeSystemError } from './system-errors.js'

// Exclusive locks on what an apply writes: its target, its undo journal and
// its spool file. A lock is a file created with O_EXCL that names its owner:
// `.NAME.blockpipe-lock` beside a file, /run/lock/blockpipe/dev-MAJ:MIN.lock
// for a block device (whatever path names it). A lock whose owner died on
// this host (its pid is gone, or is another process now) is taken over.

export const DEVICE_LOCK_DIR = '/run/lock/blockpipe'

/** Who holds a lock, as its file says (one `key=value` a line). */
export interface LockOwner {
  pid: number
  host: string
  bootId: string
  /** Field 22 of /proc/PID/stat: with the boot id, tells a reused pid from the owner. */
  startTime: string
  program: string
}

export interface LockOptions {
  program: string
  /** Notices (a stale lock taken over). */
  stderr?: NodeJS.WritableStream
  /** Where block devices are locked. */
  deviceLockDir?: string
  /** Where /proc is. */
  proc?: string
}

export interface HeldLock {
  /** The lock file. */
  path: string
  release(): void
}

/** The lock file of `path`: beside a file (symbolic links followed), in `deviceDir` for a block device. */
export function lockPathOf(path: string, deviceDir = DEVICE_LOCK_DIR): { file: string; device: boolean } {
  let real: string
  try {
    real = realpathSync(path)
  } catch {
    // Not there yet (a target to create), or a dangling link: locked by the name it will have.
    real = join(realDirectory(dirname(path)), basename(path))
  }
  const st = statOrUndefined(real)
  if (st?.isBlockDevice() === true) {
    const { major, minor } = majorMinor(st.rdev)
    return { file: join(deviceDir, `dev-${major}:${minor}.lock`), device: true }
  }
  return { file: join(dirname(real), `.${basename(real)}.blockpipe-lock`), device: false }
}

function realDirectory(dir: string): string {
  try {
    return realpathSync(dir)
  } catch {
    return dir
  }
}

function statOrUndefined(path: string) {
  try {
    return statSync(path, { bigint: true })
  } catch {
    return undefined
  }
}

/** What this process writes into its lock files. */
export function ownLock(program: string, proc = '/proc'): LockOwner {
  return {
    pid: process.pid,
    host: hostname(),
    bootId: bootId(proc),
    startTime: startTimeOf(process.pid, proc) ?? '',
    program,
  }
}

export function bootId(proc = '/proc'): string {
  try {
    return readFileSync(join(proc, 'sys/kernel/random/boot_id'), 'latin1').trim()
  } catch {
    // No /proc (not Linux): the pid alone tells whether the owner lives.
    return ''
  }
}

/** When process `pid` started (clock ticks since boot), or undefined if there is no such process. */
export function startTimeOf(pid: number, proc = '/proc'): string | undefined {
  let stat: string
  try {
    stat = readFileSync(join(proc, String(pid), 'stat'), 'latin1')
  } catch {
    return undefined
  }
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]
}

export function formatLock(owner: LockOwner): string {
  return (
    `pid=${owner.pid}\nhost=${owner.host}\nboot-id=${owner.bootId}\n` +
    `start-time=${owner.startTime}\nprogram=${owner.program}\n`
  )
}

/** The owner a lock file names, or undefined if it names none (empty, or being written). */
export function parseLock(text: string): LockOwner | undefined {
  const fields = new Map<string, string>()
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) fields.set(line.slice(0, eq).trim(), line.slice(eq + 1).trim())
  }
  const pid = Number(fields.get('pid'))
  if (!Number.isSafeInteger(pid) || pid <= 0) return undefined
  return {
    pid,
    host: fields.get('host') ?? '',
    bootId: fields.get('boot-id') ?? '',
    startTime: fields.get('start-time') ?? '',
    program: fields.get('program') ?? 'another process',
  }
}

/**
 * Whether the owner of a lock is gone: only a lock of this host can tell.
 * Another boot id on this host means a reboot since; a pid that now belongs
 * to a process started at another time is not the owner.
 */
export function isStale(owner: LockOwner, me: LockOwner, proc = '/proc'): boolean {
  if (owner.host !== me.host) return false
  if (owner.bootId !== '' && me.bootId !== '' && owner.bootId !== me.bootId) return true
  const started = startTimeOf(owner.pid, proc)
  if (started === undefined) return !isAlive(owner.pid)
  return owner.startTime !== '' && started !== owner.startTime
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** A lock file being written by its owner names it within this time. */
const WRITING_MS = 2000

/**
 * Takes the lock of each path in turn (`what` names it in messages), or
 * fails with exit 1 naming the holder; locks already taken are released.
 */
export function lockAll(paths: { path: string; what: string }[], options: LockOptions): HeldLock[] {
  const held: HeldLock[] = []
  try {
    for (const { path, what } of paths) {
      const { file, device } = lockPathOf(path, options.deviceLockDir)
      if (held.some((lock) => lock.path === file)) continue
      if (device) makeDirectory(dirname(file))
      const lock = takeLock(file, what, options)
      if (lock !== undefined) held.push(lock)
    }
  } catch (err) {
    releaseAll(held)
    throw err
  }
  return held
}

export function releaseAll(locks: HeldLock[]): void {
  for (const lock of locks.reverse()) lock.release()
}

/** Takes the lock file `file`; undefined when its directory does not exist (then neither does what it locks). */
export function takeLock(file: string, what: string, options: LockOptions): HeldLock | undefined {
  const me = ownLock(options.program, options.proc)
  const deadline = Date.now() + WRITING_MS
  for (;;) {
    const text = formatLock(me)
    const created = create(file, text, options)
    if (created === 'missing') return undefined
    if (created !== 'exists') return { path: file, release: () => removeIfSame(file, created.ino, created.text) }
    const found = readLock(file)
    /* c8 ignore next -- released by its owner between two system calls */
    if (found === undefined) continue
    const owner = parseLock(found.text)
    if (owner === undefined && Date.now() < deadline) {
      sleep(20)
      continue
    }
    if (owner === undefined || !isStale(owner, me, options.proc)) throw lockedError(what, file, owner, found.since)
    options.stderr?.write(
      `${options.program}: note: removed the stale lock ${file} of ${owner.program} (pid ${owner.pid}, which is` +
        ` gone, since ${formatTime(found.since)})\n`,
    )
    removeIfSame(file, found.ino, found.text)
  }
}

function makeDirectory(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true })
  } catch {
    // Not allowed here: creating the lock file says why.
  }
}

function create(
  file: string,
  text: string,
  options: LockOptions,
): { ino: number; text: string } | 'exists' | 'missing' {
  let fd: number
  try {
    fd = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EEXIST') return 'exists'
    // No directory there: what it would lock cannot be opened either, and its open says why.
    if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing'
    throw new BlockpipeError(
      'EDEVICE',
      `cannot create the lock file ${describeOpenError(err as NodeJS.ErrnoException, file)}; nothing was written`,
    )
  }
  let written = text
  try {
    writeSync(fd, text)
  } catch (err) {
    written = ''
    // A full disk: the lock still excludes, but names no owner, so nobody can tell when it is stale.
    options.stderr?.write(
      `${options.program}: note: the lock file ${file} is held empty, its owner could not be written` +
        ` (${describeSystemError(err as NodeJS.ErrnoException)}): should this apply be killed, remove it by hand\n`,
    )
  }
  try {
    return { ino: fstatSync(fd).ino, text: written }
  } finally {
    closeSync(fd)
  }
}

function readLock(file: string): { text: string; since: Date; ino: number } | undefined {
  let fd: number
  try {
    fd = openSync(file, constants.O_RDONLY)
    /* c8 ignore next 3 -- released by its owner between two system calls */
  } catch {
    return undefined
  }
  try {
    const st = fstatSync(fd)
    return { text: readFileSync(fd, 'utf8'), since: st.mtime, ino: st.ino }
  } finally {
    closeSync(fd)
  }
}

/**
 * Removes `file` if it is still the lock file `ino` holding `text`. It is
 * moved aside first, so that of two processes taking over one stale lock,
 * the second does not remove the lock the first has just taken: that one is
 * put back.
 */
function removeIfSame(file: string, ino: number, text: string): void {
  const aside = `${file}.${process.pid}.removing`
  try {
    renameSync(file, aside)
  } catch {
    return // already gone
  }
  if (statSync(aside).ino !== ino || readFileSync(aside, 'utf8') !== text) {
    try {
      linkSync(aside, file)
      /* c8 ignore start -- a third process must take the lock between two system calls */
    } catch {
      // Yet another process took the lock meanwhile: it holds it.
    }
    /* c8 ignore stop */
  }
  unlinkSync(aside)
}

function lockedError(what: string, file: string, owner: LockOwner | undefined, since: Date): BlockpipeError {
  const by =
    owner === undefined
      ? `a lock file that names no owner (since ${formatTime(since)})`
      : `${owner.program} (pid ${owner.pid} on ${owner.host}, since ${formatTime(since)})`
  return new BlockpipeError('ELOCKED', `${what} is locked by ${by}; wait for it or, if it is gone, remove ${file}`)
}

function formatTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace('T', ' ')} UTC`
}

function sleep(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}
