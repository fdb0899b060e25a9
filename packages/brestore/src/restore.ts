import { fstatSync } from 'node:fs'
import { BlockpipeError, VERSION, close, loadHash, openSource, type ByteSink } from '@blockpipe/core'
import { checkChain, checkSiblings } from './chain.js'
import { BlockOutput, RawOutput, type Output } from './output.js'
import { sweep } from './sweep.js'
import type { UndoFile } from './undo-header.js'

export interface RestoreOptions {
  image: string
  /** Newest first. */
  undo: string[]
  force: boolean
  raw: boolean
  /** What `as-of` says in the output's header. */
  asOf: string | undefined
  warn: (message: string) => void
}

export interface Restored {
  files: UndoFile[]
  size: number
}

/**
 * Checks the chain of undo files against the image, then (unless `sink` is
 * undefined: --check) checks it again while it writes the image as it was
 * before the oldest one's apply. Nothing is written before the first check
 * has passed; neither the image nor the undo files are opened to write.
 */
export async function restore(
  options: RestoreOptions,
  sink?: ByteSink & { close(): Promise<void> },
): Promise<Restored> {
  const hash = await loadHash()
  const image = openSource(options.image)
  try {
    const before = fstatSync(image.fd)
    let files: UndoFile[] = []
    if (options.undo.length > 0) {
      files = checkChain(
        hash,
        { path: image.path, size: image.size, stat: before },
        options.undo,
        options.force,
        options.warn,
      )
      checkSiblings(hash, files)
    }
    const size = files[files.length - 1]?.header.size ?? image.size
    await sweep(hash, image, files, { again: false })
    if (sink === undefined) return { files, size }
    const output: Output = options.raw
      ? new RawOutput(sink)
      : new BlockOutput(hash, sink, size, {
          producer: `brestore ${VERSION}`,
          source: image.path,
          created: new Date().toISOString(),
          input: files.length === 0 ? 'image' : `image and ${files.length} undo files`,
          'as-of': options.asOf ?? `before ${(files[files.length - 1] as UndoFile).header.metadata.created}`,
        })
    await output.start()
    await sweep(hash, image, files, { again: true }, (offset, length, bytes) => output.piece(offset, length, bytes))
    const after = fstatSync(image.fd)
    if (after.mtimeMs !== before.mtimeMs || after.size !== before.size) {
      throw new BlockpipeError(
        'EINPUT',
        `${image.path} changed while brestore read it: the output is unusable;` +
          ' run brestore again when nothing writes to the image',
      )
    }
    await output.end()
    await sink.close()
    return { files, size }
  } finally {
    close(image)
  }
}
