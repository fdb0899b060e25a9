import {
  closeSync,
  constants,
  fstatSync,
  fsyncSync,
  lstatSync,
  ftruncateSync,
  openSync,
  readFileSync,
  readSync,
  statSync,
  writeSync,
  type BigIntStats,
} from 'node:fs'
import { BlockpipeError } from './errors.js'
import { describeOpenError } from './system-errors.js'
import { createTemporary, discardTemporary, placeTemporary } from './temp-target.js'

export { describeOpenError }

// Sources and targets are regular files or block devices, opened by path and
// read or written at explicit offsets.

export interface Device {
  path: string
  fd: number
  size: number
  blockDevice: boolean
}

export interface Target extends Device {
  /** False when this open created the file. */
  existed: boolean
  /** A file this open created: where it is written until placeTarget gives it its name. */
  temporary?: string
}

function deviceError(err: unknown, path: string): BlockpipeError {
  return new BlockpipeError('EDEVICE', describeOpenError(err as NodeJS.ErrnoException, path))
}

function sizeOf(fd: number, st: BigIntStats, path: string): number {
  if (st.isFile()) return Number(st.size)
  return blockDeviceSize(fd, st.rdev, path)
}

/** A device number's major and minor, in glibc's dev_t layout (the masks are 32-bit, as in gnu_dev_major/minor). */
export function majorMinor(rdev: bigint): { major: bigint; minor: bigint } {
  return {
    major: ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & 0xfffff000n),
    minor: (rdev & 0xffn) | ((rdev >> 12n) & 0xffffff00n),
  }
}

/**
 * fstat gives 0 for a block device. sysfs knows its size in 512-byte
 * sectors; without sysfs the end is found by reading.
 */
export function blockDeviceSize(fd: number, rdev: bigint, path: string, sysfs = '/sys/dev/block'): number {
  const { major, minor } = majorMinor(rdev)
  try {
    const sectors = readFileSync(`${sysfs}/${major}:${minor}/size`, 'latin1').trim()
    if (/^\d+$/.test(sectors)) return Number(sectors) * 512
  } catch {
    // No sysfs here (a container, another OS): read to find the end.
  }
  return sizeByReading(fd, path)
}

/** The size of what `fd` reads, found by binary search over 512-byte sectors. */
export function sizeByReading(fd: number, path: string): number {
  const one = Buffer.alloc(1)
  const readable = (pos: number): boolean => {
    try {
      return readSync(fd, one, 0, 1, pos) === 1
    } catch (err) {
      throw deviceError(err, path)
    }
  }
  let lo = 0
  let hi = 512
  while (readable(hi - 1)) {
    lo = hi
    hi *= 2
  }
  // Invariant: the size is at least lo and below hi.
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2)
    if (readable(mid - 1)) lo = mid
    else hi = mid
  }
  return lo
}

/** Opens a file or block device to read. */
export function openSource(path: string): Device {
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY)
  } catch (err) {
    throw deviceError(err, path)
  }
  const st = fstatSync(fd, { bigint: true })
  if (!st.isFile() && !st.isBlockDevice()) {
    closeSync(fd)
    throw new BlockpipeError('EDEVICE', `${path}: not a regular file or block device`)
  }
  return { path, fd, size: sizeOf(fd, st, path), blockDevice: st.isBlockDevice() }
}

export interface TargetOptions {
  /** Create a regular file if nothing is there. */
  create: boolean
}

/**
 * Opens a target to write. A block device is opened exclusively, so a mounted
 * filesystem is refused rather than overwritten under the kernel's feet.
 */
export function openTarget(path: string, options: TargetOptions): Target {
  let fd: number
  let temporary: string | undefined
  try {
    fd = openSync(path, constants.O_RDWR)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    // Something is there that open cannot follow (a dangling symbolic link): named, not replaced.
    if (code !== 'ENOENT' || !options.create || lstatSync(path, { throwIfNoEntry: false }) !== undefined) {
      throw deviceError(err, path)
    }
    ;({ fd, temporary } = createTemporary(path))
    return { path, fd, size: 0, blockDevice: false, existed: false, temporary }
  }
  const st = fstatSync(fd, { bigint: true })
  if (st.isBlockDevice()) {
    closeSync(fd)
    try {
      fd = openSync(path, constants.O_RDWR | constants.O_EXCL)
    } catch (err) {
      throw deviceError(err, path)
    }
  } else if (!st.isFile()) {
    closeSync(fd)
    throw new BlockpipeError('EDEVICE', `${path}: not a regular file or block device`)
  }
  return { path, fd, size: sizeOf(fd, st, path), blockDevice: st.isBlockDevice(), existed: true }
}

/** A created target, synced: linked into place under its name. */
export function placeTarget(target: Target): void {
  if (target.temporary !== undefined) placeTemporary(target.temporary, target.path)
}

/** A created target that did not finish: removed, so nothing is left at its name. */
export function discardTarget(target: Target): void {
  if (target.temporary !== undefined) discardTemporary(target.temporary)
}

/** What an apply finds at its target path before it opens it. */
export interface TargetState {
  exists: boolean
  size: number
  blockDevice: boolean
}

/** Looks at a target before anything is written: refusals come before a stream is read or spooled. */
export function targetState(path: string): TargetState {
  let st
  try {
    st = statSync(path)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { exists: false, size: 0, blockDevice: false }
    throw new BlockpipeError('EDEVICE', `${describeOpenError(err as NodeJS.ErrnoException, path)}; nothing was written`)
  }
  if (st.isFile()) return { exists: true, size: st.size, blockDevice: false }
  if (!st.isBlockDevice()) {
    throw new BlockpipeError('EDEVICE', `${path}: not a regular file or block device; nothing was written`)
  }
  // Opened the way the apply will open it (exclusively): a mounted or busy
  // device is refused now, not after a whole stream has been spooled.
  const dev = openTarget(path, { create: false })
  close(dev)
  return { exists: true, size: dev.size, blockDevice: true }
}

/** Reads up to `length` bytes at `position`; fewer only at the end of the file. */
export function readAt(
  dev: Pick<Device, 'fd' | 'path'>,
  buf: Buffer,
  length: number,
  position: number,
  at = 0,
): number {
  let done = 0
  while (done < length) {
    let n: number
    try {
      n = readSync(dev.fd, buf, at + done, length - done, position + done)
    } catch (err) {
      throw new BlockpipeError(
        'EDEVICE',
        `${dev.path}: read error at byte ${position + done}: ${(err as Error).message}`,
      )
    }
    if (n === 0) break
    done += n
  }
  return done
}

/** Reads exactly `length` bytes at `position`: the source must not end before. */
export function readExactly(dev: Device, buf: Buffer, length: number, position: number, at = 0): void {
  const got = readAt(dev, buf, length, position, at)
  if (got !== length) {
    throw new BlockpipeError('EDEVICE', `${dev.path}: ended at byte ${position + got} while reading (did it shrink?)`)
  }
}

/** The chunks of a device in order; each buffer is reused by the next. */
export function* readChunks(dev: Device, chunkSize: number): Generator<{ offset: number; data: Buffer }> {
  const buf = Buffer.allocUnsafe(chunkSize)
  for (let offset = 0; offset < dev.size; offset += chunkSize) {
    const want = Math.min(chunkSize, dev.size - offset)
    readExactly(dev, buf, want, offset)
    yield { offset, data: buf.subarray(0, want) }
  }
}

export function writeAt(dev: Device, buf: Uint8Array, position: number): void {
  let done = 0
  while (done < buf.length) {
    try {
      done += writeSync(dev.fd, buf, done, buf.length - done, position + done)
    } catch (err) {
      throw new BlockpipeError(
        'EDEVICE',
        `${dev.path}: write error at byte ${position + done}: ${(err as Error).message}`,
      )
    }
  }
}

export function resize(dev: Device, size: number): void {
  try {
    ftruncateSync(dev.fd, size)
  } catch (err) {
    throw new BlockpipeError('EDEVICE', `${dev.path}: cannot resize to ${size} bytes: ${(err as Error).message}`)
  }
  dev.size = size
}

export function sync(dev: Device): void {
  try {
    fsyncSync(dev.fd)
  } catch (err) {
    throw new BlockpipeError('EDEVICE', `${dev.path}: fsync failed: ${(err as Error).message}`)
  }
}

export function close(dev: Device): void {
  closeSync(dev.fd)
}
