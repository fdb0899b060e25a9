import { statSync, writeFileSync } from 'node:fs'
import { StreamKind } from '../../packages/core/src/format.js'
import { build, hash } from '../core/streams.js'

// Undo files crafted in process with the real writer: the odd journals the
// real tools do not write (legacy, a record without its base digest, a grow
// without its tail), for the rules that only such files exercise.

export interface CraftedRecord {
  offset: number
  /** The old bytes; or a length of zeros. */
  data: Buffer | number
  /** Without a base digest (a legacy record). */
  noBase?: boolean
  /** A wrong base length, to be refused. */
  baseLength?: number
}

export interface CraftedUndo {
  /** The size it restores. */
  size: number
  /** The image its apply left: base digests are of these bytes. */
  after: Buffer
  records: CraftedRecord[]
  /** undefined: legacy (no target-id). */
  targetId?: string
  created?: string
}

export async function craftUndo(path: string, u: CraftedUndo): Promise<void> {
  const metadata: Record<string, string> = { producer: 'test' }
  if (u.created !== undefined) metadata.created = u.created
  if (u.targetId !== undefined) metadata['target-id'] = u.targetId
  const stream = await build(
    { kind: StreamKind.UNDO, size: u.size, baseSize: u.after.length, blockSize: 65536, metadata },
    async (w) => {
      for (const r of u.records) {
        const length = typeof r.data === 'number' ? r.data : r.data.length
        const baseLength = Math.max(0, Math.min(length, u.after.length - r.offset))
        const base = r.noBase
          ? undefined
          : {
              length: r.baseLength ?? baseLength,
              digest: hash.digest(u.after.subarray(r.offset, r.offset + baseLength), 0n),
            }
        if (typeof r.data === 'number') await w.zero(r.offset, r.data, base)
        else await w.data(r.offset, r.data, base)
      }
    },
  )
  writeFileSync(path, stream)
}

/** The target-id the engine gives a regular file. */
export function fileId(path: string): string {
  const st = statSync(path)
  return `file:${st.dev}:${st.ino}`
}
