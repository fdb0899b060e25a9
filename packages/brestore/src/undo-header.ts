import { closeSync, fstatSync, openSync } from 'node:fs'
import {
  BlockpipeError,
  HEADER_SIZE,
  MAX_METADATA_LENGTH,
  StreamParser,
  TARGET_ID_KEY,
  describeOpenError,
  isStreamError,
  readAt,
  type Hash64,
  type StreamHeader,
} from '@blockpipe/core'

/** An undo file as the chain check sees it: its header, without its records. */
export interface UndoFile {
  path: string
  header: StreamHeader
  /** The header's `created`, in milliseconds since the epoch (NaN when missing or not a time). */
  created: number
  /** The header's `target-id`; undefined in a legacy journal. */
  targetId: string | undefined
}

/** Reads the header of the stream in `path`; a file that is not a stream fails, naming it. */
export function readUndoHeader(hash: Hash64, path: string): UndoFile {
  const fd = openUndoFile(path)
  try {
    if (!fstatSync(fd).isFile()) throw new BlockpipeError('EINPUT', `${path}: not a regular file, not an undo file`)
    const buf = Buffer.alloc(HEADER_SIZE + MAX_METADATA_LENGTH)
    const n = readAt({ fd, path }, buf, buf.length, 0)
    const parser = new StreamParser(hash)
    parser.push(buf.subarray(0, n))
    const item = parser.next()
    if (item === null) parser.finish()
    const header = (item as { header: StreamHeader }).header
    return {
      path,
      header,
      created: Date.parse(header.metadata.created ?? ''),
      targetId: header.metadata[TARGET_ID_KEY],
    }
  } catch (err) {
    if (isStreamError(err)) throw new BlockpipeError(err.code, `${path}: ${err.message}`)
    // Another error (a read error of a failing disk) passes as it is; the tests reach no such disk.
    /* c8 ignore start */
    throw err
  } finally {
    closeSync(fd)
  }
  /* c8 ignore stop */
}

/** Opens an undo file to read; a failure names it. */
export function openUndoFile(path: string): number {
  try {
    return openSync(path, 'r')
  } catch (err) {
    throw new BlockpipeError(
      'EDEVICE',
      `cannot open the undo file: ${describeOpenError(err as NodeJS.ErrnoException, path)}`,
    )
  }
}
