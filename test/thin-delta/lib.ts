import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from '../lib/data.js'

// Two thin devices of a pool without a kernel: their mappings written as
// thin_dump XML, restored into a metadata file with the real thin_restore,
// compared with the real thin_delta; and the images the devices would read
// as (a mapped block reads its pool block, an unmapped one zeros).

export const SECTORS = 128
export const BLOCK = SECTORS * 512

/** Pool data block of each thin block of a device; null where unmapped. */
export type Mapping = (number | null)[]

export interface Pool {
  left: Mapping
  right: Mapping
  /** Pool blocks that read as zeros although mapped (a mapped block may hold zeros). */
  zeroBlocks?: number[]
}

export function thinDumpXml(pool: Pool): string {
  const used = [...pool.left, ...pool.right].filter((b): b is number => b !== null)
  const device = (id: number, m: Mapping, time: number): string => {
    let x = `  <device dev_id="${id}" mapped_blocks="${m.filter((b) => b !== null).length}" transaction="0" creation_time="${time}" snap_time="${time}">\n`
    m.forEach((b, i) => {
      if (b !== null) x += `    <single_mapping origin_block="${i}" data_block="${b}" time="${time}"/>\n`
    })
    return `${x}  </device>\n`
  }
  return (
    `<superblock uuid="" time="1" transaction="2" data_block_size="${SECTORS}" nr_data_blocks="${Math.max(...used) + 16}">\n` +
    device(1, pool.left, 0) +
    device(2, pool.right, 1) +
    '</superblock>\n'
  )
}

/** Restores the pool into `dir/meta.bin` with thin_restore and returns its path. */
export function thinRestore(dir: string, pool: Pool): string {
  const xml = join(dir, 'thin-dump.xml')
  const meta = join(dir, 'meta.bin')
  writeFileSync(xml, thinDumpXml(pool))
  writeFileSync(meta, Buffer.alloc(0))
  execFileSync('truncate', ['-s', '8M', meta])
  execFileSync('thin_restore', ['-i', xml, '-o', meta])
  return meta
}

/** The real thin_delta's output, device 1 (older) against device 2 (newer) unless told otherwise. */
export function thinDelta(meta: string, options: { verbose?: boolean; snap1?: number; snap2?: number } = {}): Buffer {
  const args = ['--snap1', String(options.snap1 ?? 1), '--snap2', String(options.snap2 ?? 2), meta]
  return execFileSync('thin_delta', options.verbose === true ? ['--verbose', ...args] : args)
}

/** What a device with mapping `m` reads as: `size` bytes (the last block may be partial). */
export function deviceImage(pool: Pool, m: Mapping, size: number): Buffer {
  const out = Buffer.alloc(size)
  m.forEach((b, i) => {
    if (b === null || pool.zeroBlocks?.includes(b) === true) return
    randomBytes(BLOCK, 1000 + b).copy(out, i * BLOCK, 0, Math.max(0, Math.min(BLOCK, size - i * BLOCK)))
  })
  return out
}

/**
 * A pool of 48 thin blocks, the last one partial on a device of 47.5 blocks:
 * blocks the two devices share, blocks remapped (written after the snapshot),
 * blocks only the older one maps (discarded since), blocks only the newer one
 * maps (written since), a mapped block of zeros, and unmapped ones in both.
 */
export function samplePool(): Pool {
  const left: Mapping = new Array<number | null>(48).fill(null)
  const right: Mapping = new Array<number | null>(48).fill(null)
  for (let i = 0; i < 20; i++) left[i] = right[i] = i // same
  for (const i of [3, 4, 5, 17]) right[i] = 100 + i // different
  for (const i of [8, 9, 30, 31]) {
    left[i] = 200 + i // left_only: discarded in the newer one
    right[i] = null
  }
  for (const i of [24, 25, 26, 40, 47]) right[i] = 300 + i // right_only
  right[41] = 400 // right_only, but the block reads as zeros
  left[47] = 47 // the partial last block: different
  return { left, right, zeroBlocks: [400] }
}

export const SAMPLE_SIZE = 47 * BLOCK + BLOCK / 2
