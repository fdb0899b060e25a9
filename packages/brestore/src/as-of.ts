import { readdirSync, statSync } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { BlockpipeError, UsageError, describeOpenError } from '@blockpipe/core'

// --as-of: a moment, and the undo files made after it, by the names the
// example scripts give them: IMAGE.YYYYMMDDTHHMMSS[.N]Z[.anything].undo
// (era-backup.sh adds .eraP-N, bsync-backup.sh nanoseconds).

const NS_PER_MS = 1_000_000n

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/
const DATETIME = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:?\d{2})?$/

/**
 * The moment DATE names, in nanoseconds since the epoch: undo files made
 * after it are undone. A day alone is the end of that day, UTC; a time
 * without a zone is UTC.
 */
export function parseAsOf(text: string): bigint {
  const bad = (): never => {
    throw new UsageError(
      `--as-of ${text}: not a date; give YYYY-MM-DD (the end of that day, UTC)` +
        ' or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM] (UTC without a zone)',
    )
  }
  const day = DAY.exec(text)
  if (day !== null) {
    const start = utc(day.slice(1, 4).map(Number) as [number, number, number], 0, 0, 0) ?? bad()
    return (start + 86_400_000n) * NS_PER_MS - 1n
  }
  const m = DATETIME.exec(text) ?? bad()
  const [, y, mo, d, h, mi, s, frac, zone] = m as unknown as string[]
  const ms = utc([Number(y), Number(mo), Number(d)], Number(h), Number(mi), Number(s ?? 0)) ?? bad()
  return (ms - zoneMinutes(zone) * 60_000n) * NS_PER_MS + BigInt((frac ?? '').padEnd(9, '0'))
}

/** Milliseconds since the epoch, or undefined when the fields name no real moment (2026-02-30, 24:00). */
function utc([y, mo, d]: [number, number, number], h: number, mi: number, s: number): bigint | undefined {
  const ms = Date.UTC(y, mo - 1, d, h, mi, s)
  const t = new Date(ms)
  const same =
    t.getUTCFullYear() === y &&
    t.getUTCMonth() === mo - 1 &&
    t.getUTCDate() === d &&
    t.getUTCHours() === h &&
    t.getUTCMinutes() === mi &&
    t.getUTCSeconds() === s
  return same ? BigInt(ms) : undefined
}

function zoneMinutes(zone: string | undefined): bigint {
  if (zone === undefined || zone === 'Z') return 0n
  const digits = zone.slice(1).replace(':', '')
  const minutes = BigInt(Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2)))
  return zone.startsWith('-') ? -minutes : minutes
}

const NAME_TIME = /^\.(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z(?:\.[^/]*)?\.undo$/

/** When an undo file of `image` was made, from its name; undefined for any other name. */
export function undoFileTime(name: string, image: string): bigint | undefined {
  if (!name.startsWith(image)) return undefined
  const m = NAME_TIME.exec(name.slice(image.length))
  if (m === null) return undefined
  const [, y, mo, d, h, mi, s, frac] = m as unknown as string[]
  const ms = utc([Number(y), Number(mo), Number(d)], Number(h), Number(mi), Number(s))
  if (ms === undefined) return undefined
  return ms * NS_PER_MS + BigInt((frac ?? '').padEnd(9, '0'))
}

/** Where the scripts put an image's undo files: IMAGE.undo/ when it exists, else beside the image. */
export function defaultUndoDir(image: string): string {
  try {
    if (statSync(`${image}.undo`).isDirectory()) return `${image}.undo`
  } catch {
    // No such directory: the undo files are beside the image.
  }
  return dirname(image)
}

/** The undo files of `image` in `dir` made at or after `moment`, newest first: an apply that began at `moment` had not changed the image then. */
export function undoFilesAfter(dir: string, image: string, moment: bigint): string[] {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch (err) {
    throw new BlockpipeError(
      'EDEVICE',
      `cannot list the undo directory: ${describeOpenError(err as NodeJS.ErrnoException, dir)}`,
    )
  }
  const base = basename(image)
  return names
    .map((name) => ({ name, time: undoFileTime(name, base) }))
    .filter((f): f is { name: string; time: bigint } => f.time !== undefined && f.time >= moment)
    .sort(
      (a, b) => Number(b.time > a.time) - Number(a.time > b.time) || Number(b.name > a.name) - Number(a.name > b.name),
    )
    .map((f) => join(dir, f.name))
}
