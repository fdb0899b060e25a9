import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'

// Real dm-era metadata without a kernel: an era_dump-style XML restored into
// a file with era_restore, then queried with the real era_invalidate.

export interface EraHistory {
  /** dm-era block size in 512-byte sectors. */
  blockSectors: number
  /** The era each block was last written in (the era array); its length is nr_blocks. */
  eras: number[]
  currentEra: number
  /** Blocks written in the current, not yet archived era. */
  writeset?: { era: number; blocks: number[] }
}

export function eraDumpXml(h: EraHistory): string {
  const n = h.eras.length
  let x = `<superblock uuid="" block_size="${h.blockSectors}" nr_blocks="${n}" current_era="${h.currentEra}">\n`
  if (h.writeset !== undefined) {
    const set = new Set(h.writeset.blocks)
    x += `  <writeset era="${h.writeset.era}" nr_bits="${n}">\n`
    for (let b = 0; b < n; b++) x += `    <bit block="${b}" value="${set.has(b) ? 'true' : 'false'}"/>\n`
    x += '  </writeset>\n'
  }
  x += '  <era_array>\n'
  h.eras.forEach((era, b) => (x += `    <era block="${b}" era="${era}"/>\n`))
  x += '  </era_array>\n</superblock>\n'
  return x
}

/** Restores the history into `dir/meta.bin` and returns its path. */
export function eraRestore(dir: string, h: EraHistory): string {
  const xml = join(dir, 'era-dump.xml')
  const meta = join(dir, 'meta.bin')
  writeFileSync(xml, eraDumpXml(h))
  writeFileSync(meta, Buffer.alloc(0))
  execFileSync('truncate', ['-s', '4M', meta])
  execFileSync('era_restore', ['-i', xml, '-o', meta])
  return meta
}

/** The real era_invalidate's output. */
export function eraInvalidate(meta: string, since: number): Buffer {
  return execFileSync('era_invalidate', ['--written-since', String(since), meta])
}

/** The blocks an era_invalidate --written-since `since` should list, from the history. */
export function expectedBlocks(h: EraHistory, since: number): number[] {
  const set = new Set<number>()
  h.eras.forEach((era, b) => era >= since && set.add(b))
  if (h.writeset !== undefined && h.writeset.era >= since) for (const b of h.writeset.blocks) set.add(b)
  return [...set].sort((a, b) => a - b)
}
