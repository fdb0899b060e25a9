import { closeSync, constants, openSync, statSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { describeOpenError, readAt } from './device.js'
import { BlockpipeError, UsageError } from './errors.js'
import type { ByteSource } from './read.js'
import { FdSink } from './write.js'

// --spool stores the whole stream before the target is touched. The file is
// unlinked as soon as it is created: it lives as long as the process and no
// crash leaves it behind.

export interface Spool {
  fd: number
  path: string
  sink: FdSink
  close(): void
}

let spools = 0

export function createSpool(path: string, program: string): Spool {
  let isDirectory = false
  try {
    isDirectory = statSync(path).isDirectory()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new BlockpipeError('EDEVICE', `--spool ${describeOpenError(err as NodeJS.ErrnoException, path)}`)
    }
  }
  // A name of this process alone: several applies may spool into one directory.
  const file = isDirectory
    ? join(path, `.${program}-spool-${process.pid}-${Date.now().toString(36)}-${++spools}`)
    : path
  let fd: number
  try {
    fd = openSync(file, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, 0o600)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw new UsageError(`--spool ${path}: the file exists; give a directory or a new file name`)
    }
    throw new BlockpipeError(
      'EDEVICE',
      `--spool: cannot create ${describeOpenError(err as NodeJS.ErrnoException, file)}`,
    )
  }
  unlinkSync(file)
  return { fd, path: file, sink: new FdSink(fd), close: () => closeSync(fd) }
}

/** Passes `source` through, storing every byte in `sink` (the spool file at `path`) first. */
export async function* tee(source: ByteSource, sink: FdSink, path = 'the spool file'): AsyncGenerator<Uint8Array> {
  for await (const chunk of source) {
    try {
      sink.write(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length))
    } catch (err) {
      throw new BlockpipeError('EDEVICE', `--spool: cannot store the stream in ${path}: ${(err as Error).message}`)
    }
    yield chunk
  }
}

/** The first `size` bytes of a file, in pieces. */
export function* fileChunks(fd: number, size: number, piece = 1024 * 1024): Generator<Buffer> {
  for (let pos = 0; pos < size; pos += piece) {
    const buf = Buffer.allocUnsafe(Math.min(piece, size - pos))
    yield buf.subarray(0, readAt({ fd, path: 'the spool file' }, buf, buf.length, pos))
  }
}
