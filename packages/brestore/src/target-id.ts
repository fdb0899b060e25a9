import type { Stats } from 'node:fs'

// The engine's targetId (core undo.ts) until it is merged: the same string.
export function targetId(st: Pick<Stats, 'dev' | 'ino' | 'rdev' | 'isBlockDevice'>): string {
  if (st.isBlockDevice()) {
    const rdev = BigInt(st.rdev)
    const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn)
    const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn)
    return `block:${major}:${minor}`
  }
  return `file:${st.dev}:${st.ino}`
}
