import { readdirSync, realpathSync, type Stats } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { ConflictError, KIND_NAMES, StreamKind, UsageError, targetId, type Hash64 } from '@blockpipe/core'
import { readUndoHeader, type UndoFile } from './undo-header.js'

// The undo files must form one unbroken chain that ends at the image as it is
// now: checked on their headers here, before a byte is read or written; their
// base digests are checked against the image by the sweep.

export interface ChainImage {
  path: string
  size: number
  stat: Stats
}

/** Reads and checks the headers of `paths` (newest first). Returns them in that order. */
export function checkChain(
  hash: Hash64,
  image: ChainImage,
  paths: string[],
  force: boolean,
  warn: (message: string) => void,
): UndoFile[] {
  const files = paths.map((path) => readUndoHeader(hash, path))
  for (const f of files) {
    if (f.header.kind !== StreamKind.UNDO) {
      throw new UsageError(`${f.path} holds a ${KIND_NAMES[f.header.kind]} stream, not an undo journal`)
    }
    if (f.targetId === undefined) {
      if (!force) {
        throw new UsageError(
          `${f.path} is an undo journal of an older blockpipe, not bound to its image (no target-id):` +
            ' it cannot be checked against the image; --force restores with it unchecked',
        )
      }
      warn(`${f.path} is not bound to its image (no target-id): restoring with it unchecked (--force)`)
    }
    if (Number.isNaN(f.created)) {
      throw new ConflictError(`${f.path} does not say when it was made (no valid created time in its header)`)
    }
  }
  for (let i = 1; i < files.length; i++) {
    const [newer, older] = [files[i - 1] as UndoFile, files[i] as UndoFile]
    if (older.created >= newer.created) {
      throw new ConflictError(
        `${older.path} (made ${older.header.metadata.created}) is not older than ${newer.path}` +
          ` (made ${newer.header.metadata.created}): list the undo files newest first`,
      )
    }
  }
  const newest = files[0] as UndoFile
  if (newest.header.baseSize !== image.size) {
    throw new ConflictError(
      `${image.path} is ${image.size} bytes, but the apply of the newest undo file ${newest.path} left its image at` +
        ` ${newest.header.baseSize} bytes: a newer undo file is missing, or these undo files are of another image`,
    )
  }
  for (let i = 1; i < files.length; i++) {
    const [newer, older] = [files[i - 1] as UndoFile, files[i] as UndoFile]
    if (older.header.baseSize !== newer.header.size) {
      throw new ConflictError(
        `${older.path} does not come right before ${newer.path}: its apply left the image at` +
          ` ${older.header.baseSize} bytes, the next apply found ${newer.header.size} bytes` +
          ' (an undo file between them is missing, or they are of different images)',
      )
    }
  }
  const ids = files.filter((f) => f.targetId !== undefined)
  const first = ids[0]
  if (first !== undefined) {
    const other = ids.find((f) => f.targetId !== first.targetId)
    if (other !== undefined) {
      throw new ConflictError(
        `${other.path} is an undo file of another image (${other.targetId}) than ${first.path} (${first.targetId})`,
      )
    }
    if (targetId(image.stat) !== first.targetId) {
      warn(
        `${image.path} is not the file the undo files were made on (${first.targetId}); going on, as it may be` +
          ' a copy: its contents are checked',
      )
    }
  }
  return files
}

/**
 * Refuses a chain that skips an undo file of the same image lying beside the
 * listed ones: one made after the oldest listed file and not listed is a gap.
 */
export function checkSiblings(hash: Hash64, files: UndoFile[]): void {
  const bound = files.find((f) => f.targetId !== undefined)
  if (bound === undefined) return
  const oldest = files[files.length - 1] as UndoFile
  const listed = new Set(files.map((f) => realpathSync(f.path)))
  for (const dir of new Set(files.map((f) => dirname(resolve(f.path))))) {
    for (const name of readdirSync(dir).filter((n) => n.endsWith('.undo'))) {
      const path = join(dir, name)
      let sibling: UndoFile
      try {
        if (listed.has(realpathSync(path))) continue
        sibling = readUndoHeader(hash, path)
      } catch {
        continue // Not a stream (or gone): not part of any chain.
      }
      if (sibling.header.kind !== StreamKind.UNDO || sibling.targetId !== bound.targetId) continue
      if (sibling.created > oldest.created) {
        throw new ConflictError(
          `${path} (made ${sibling.header.metadata.created}) is an undo file of the same image, made after` +
            ` ${oldest.path}, and is not listed: the chain would skip it (a gap). List it too, newest first`,
        )
      }
    }
  }
}
