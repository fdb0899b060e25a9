import { UsageError } from './errors.js'

const UNITS: Record<string, number> = { K: 1024, M: 1024 ** 2, G: 1024 ** 3 }

/**
 * A block size from the command line. A plain number counts 512-byte
 * sectors, as the dm-era table line and era_dump's block_size do; with a K,
 * M or G suffix (KiB, MiB, GiB) it counts bytes. Returns bytes.
 */
export function parseBlockSize(text: string, option = '--block-size'): number {
  const m = /^\s*(\d+)\s*(?:([kKmMgG])(?:i?B)?)?\s*$/.exec(text)
  if (m === null) {
    throw new UsageError(
      `${option} ${JSON.stringify(text)} is not a size: give sectors (128) or bytes with a suffix (64K, 1M)`,
    )
  }
  const digits = m[1] as string
  const unit = m[2]?.toUpperCase()
  const bytes = Number(digits) * (unit === undefined ? 512 : (UNITS[unit] as number))
  if (bytes === 0) throw new UsageError(`${option} must not be zero`)
  if (!Number.isSafeInteger(bytes) || bytes > 1024 ** 3) {
    throw new UsageError(`${option} ${text} is too large (at most 1G)`)
  }
  if (bytes % 4096 !== 0) {
    const hint = unit === undefined ? ` (${digits} sectors = ${bytes} bytes; sectors must be a multiple of 8)` : ''
    throw new UsageError(`${option} ${text} is not a multiple of 4 KiB${hint}`)
  }
  return bytes
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  const units = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB']
  let v = n
  let u = -1
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024
    u++
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u] as string}`
}

export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds))
  const h = Math.floor(s / 3600)
  const m = Math.floor((s % 3600) / 60)
  const pad = (x: number): string => String(x).padStart(2, '0')
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`
}
