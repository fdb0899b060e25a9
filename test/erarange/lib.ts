import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../lib/run.js'

// The hand-made streams of test/fixtures/erarange-make.sh, and what they hold.

export function fixturePath(name: string): string {
  return join(ROOT, 'test', 'fixtures', `erarange-${name}.bin`)
}

export function fixture(name: string): Buffer {
  return readFileSync(fixturePath(name))
}

const D1 = '0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789ABCDEF'
const D2 = D1 + D1.replace(/[0-9a-zA-Z]/g, swap)
const D3 = 'era_copy record three: 32 bytes.'

/** tr '0-9a-zA-Z' 'A-Za-z0-9', as the script does. */
function swap(c: string): string {
  const from = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ'
  const to = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789'
  return to[from.indexOf(c)] as string
}

/** The records of erarange-basic.bin: offset, data. */
export const BASIC: [number, Buffer][] = [
  [0, Buffer.from(D1)],
  [512, Buffer.from(D2)],
  [8192, Buffer.from(D3)],
]

/** Positions in erarange-basic.bin where each record starts. */
export const BASIC_POSITIONS = [0, 88, 240]

/** `base` (or zeros) with the records written over it, in order, grown to reach the last one. */
export function applied(records: [number, Buffer][], base: Buffer = Buffer.alloc(0)): Buffer {
  const end = Math.max(base.length, ...records.map(([o, d]) => o + d.length))
  const out = Buffer.alloc(end)
  base.copy(out)
  for (const [offset, data] of records) data.copy(out, offset)
  return out
}

/** What erarange-basic.bin leaves in a new file. */
export const BASIC_IMAGE = applied(BASIC)

/** What erarange-unordered.bin leaves in a new file. */
export const UNORDERED_IMAGE = applied([
  [4096, Buffer.from('later data......')],
  [0, Buffer.from('first...')],
  [4100, Buffer.from('XXXX')],
])

/** An ERARANGE record made here (for generated streams). */
export function record(offset: number, data: Buffer): Buffer {
  const head = Buffer.alloc(24)
  head.write('ERARANGE', 'latin1')
  head.writeBigInt64LE(BigInt(offset), 8)
  head.writeBigInt64LE(BigInt(data.length), 16)
  return Buffer.concat([head, data])
}
