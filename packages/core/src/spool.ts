import { closeSync, constants, existsSync, openSync, statSync, unlinkSync } from 'node:fs'
import { dirname, join } from 'node:path'
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

/**
 * `path` is a directory that exists (the spool is a temporary file in it), or
 * the name of a new file in a directory that exists. A name ending in "/"
 * must be a directory. A new file is named on stderr, so that a mistyped
 * directory does not pass unnoticed.
 */
export function createSpool(path: string, program: string, stderr: NodeJS.WritableStream = process.stderr): Spool {
  let isDirectory = false
  try {
    isDirectory = statSync(path).isDirectory()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new BlockpipeError('EDEVICE', `--spool ${describeOpenError(err as NodeJS.ErrnoException, path)}`)
    }
    if (path.endsWith('/')) {
      throw new UsageError(`--spool ${path}: no such directory; create it first, or name a new file in one that exists`)
    }
    if (!existsSync(dirname(path))) {
      throw new UsageError(
        `--spool ${path}: neither a directory nor a new file in one (${dirname(path)} does not exist); ` +
          'give an existing directory',
      )
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
  if (!isDirectory) {
    stderr.write(
      `${program}: --spool ${path} is not a directory: spooling into that new file (unlinked at once: nothing is left behind)\n`,
    )
  }
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
