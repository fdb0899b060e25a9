import { readFileSync, realpathSync } from 'node:fs'
import { BlockpipeError, formatBytes, readExactly, type Device } from '@blockpipe/core'
import type { RangeSpool } from './range-spool.js'

// A dattobd COW file, as datto/dattobd src/dattobd.h and cow_manager.c write
// it, little-endian:
//
//   bytes 0-4095: magic u32 = 4776, flags u32 (bit 0 clean, bit 1 index
//                 only), fpos u64, fsize u64, seqid u64, uuid[16], and from
//                 format version 1 on: version u64, nr_changed_blocks u64
//   from 4096:    the index, one u64 per 4 KiB block of the device, in
//                 sections of 4096 blocks; non-zero: the block changed
//
// The index tracks the device's whole 4 KiB blocks (dattobd counts
// size / 4096 of them): a partial last block is always copied.
// dattobd keeps index sections in memory and writes them out when it closes
// the file cleanly; only then is the index whole, and the clean flag set.

export const DATTO_MAGIC = 4776
export const DATTO_BLOCK = 4096
const HEADER = 4096
const SECTION = 4096
const FLAG_CLEAN = 1
const FLAG_INDEX_ONLY = 2
/** Index entries read at a time. */
const PIECE = 8192

export class DattoCowError extends BlockpipeError {
  constructor(message: string) {
    super('EINPUT', message)
    this.name = 'DattoCowError'
  }
}

export interface DattoCow {
  version: number
  seqid: string
  uuid: string
  indexOnly: boolean
  /** Version 1 on: the blocks the header counts as changed. */
  changed: number | undefined
}

/** Reads and checks a COW file's header against the snapshot device it is for. */
export function readDattoHeader(cow: Device, snapshot: Device): DattoCow {
  const buf = Buffer.alloc(64)
  if (cow.size < HEADER) {
    throw new DattoCowError(`${cow.path}: not a dattobd COW file: ${cow.size} bytes, shorter than its header`)
  }
  readExactly(cow, buf, 64, 0)
  const magic = buf.readUInt32LE(0)
  if (magic !== DATTO_MAGIC) {
    throw new DattoCowError(
      `${cow.path}: not a dattobd COW file: magic ${magic}, expected ${DATTO_MAGIC}. Give the COW file of the ` +
        'previous snapshot (the one dbdctl transition-to-snapshot replaced)',
    )
  }
  const flags = buf.readUInt32LE(4)
  if ((flags & FLAG_CLEAN) === 0) {
    throw new DattoCowError(
      `${cow.path}: the COW file was not closed cleanly (dattobd still uses it, or the machine crashed): its ` +
        'index may lack blocks. Use the COW file that dbdctl transition-to-snapshot closed, or take a full copy',
    )
  }
  const version = Number(buf.readBigUInt64LE(48))
  if (version > 1) {
    throw new DattoCowError(`${cow.path}: dattobd COW format version ${version}; era-copy reads versions 0 and 1`)
  }
  const full = Math.floor(snapshot.size / DATTO_BLOCK)
  const entries = Math.floor((cow.size - HEADER) / 8)
  if (entries < full) {
    throw new DattoCowError(
      `${cow.path}: its index has ${entries} entries, ${snapshot.path} (${formatBytes(snapshot.size)}) has ${full} ` +
        'blocks of 4 KiB: the COW file is cut short, or it belongs to another device',
    )
  }
  const indexOnly = (flags & FLAG_INDEX_ONLY) !== 0
  // An incremental (index only) COW file is its header and index, nothing more.
  const sections = Math.ceil(full / SECTION)
  if (indexOnly && cow.size !== HEADER + sections * SECTION * 8) {
    throw new DattoCowError(
      `${cow.path}: its index has ${entries} entries, a device of ${formatBytes(snapshot.size)} needs ` +
        `${sections * SECTION} (${full} blocks): it belongs to another device than ${snapshot.path}`,
    )
  }
  return {
    version,
    seqid: buf.readBigUInt64LE(24).toString(),
    uuid: buf.subarray(32, 48).toString('hex'),
    indexOnly,
    changed: version >= 1 ? Number(buf.readBigUInt64LE(56)) : undefined,
  }
}

/**
 * Reads the index a piece at a time and adds the changed blocks to `spool`,
 * runs of them as one range; the partial last block, if any, too.
 */
export function readDattoBlocks(cow: Device, info: DattoCow, snapshot: Device, spool: RangeSpool): void {
  const full = Math.floor(snapshot.size / DATTO_BLOCK)
  // Counted over whole sections, as dattobd counts: its entries past the last block included.
  const counted = Math.min(Math.ceil(full / SECTION) * SECTION, Math.floor((cow.size - HEADER) / 8))
  const buf = Buffer.allocUnsafe(PIECE * 8)
  let changed = 0
  let runStart = -1
  for (let block = 0; block < counted; block += PIECE) {
    const n = Math.min(PIECE, counted - block)
    readExactly(cow, buf, n * 8, HEADER + block * 8)
    for (let i = 0; i < n; i++) {
      const set = buf.readUInt32LE(i * 8) !== 0 || buf.readUInt32LE(i * 8 + 4) !== 0
      if (set) changed++
      const b = block + i
      if (set && b < full) {
        if (runStart < 0) runStart = b
      } else if (runStart >= 0) {
        spool.add({ begin: runStart, end: b })
        runStart = -1
      }
    }
  }
  if (runStart >= 0) spool.add({ begin: runStart, end: full })
  if (info.changed !== undefined && changed < info.changed) {
    throw new DattoCowError(
      `${cow.path}: the index marks ${changed} blocks as changed, its header counts ${info.changed}: the index is ` +
        'incomplete. Take a full copy (era-copy --all of the snapshot device)',
    )
  }
  if (snapshot.size % DATTO_BLOCK !== 0) spool.add({ begin: full, end: full + 1 })
}

/** Where dattobd describes its devices, and how a path is resolved: replaceable for tests. */
export interface DattoSystem {
  info: string
  realpath: (path: string) => string
}

const SYSTEM: DattoSystem = { info: '/proc/datto-info', realpath: realpathSync }

/**
 * When SNAPSHOT_DEVICE is a dattobd snapshot (/dev/dattoN), checks what
 * update-img checks: the COW file is of the same series (uuid) and of the
 * snapshot just before it (seqid one less). An older COW file lacks the
 * blocks changed after it, a newer one lists blocks of another interval.
 */
export function checkDattoSequence(cowPath: string, cow: DattoCow, snapshotPath: string, system = SYSTEM): void {
  const device = /^\/dev\/datto(\d+)$/.exec(system.realpath(snapshotPath))
  // A copy of a snapshot (an image file): dattobd cannot say which it was.
  if (device === null) return
  const minor = Number(device[1])
  let text: string
  try {
    text = readFileSync(system.info, 'utf8')
  } catch (err) {
    throw new DattoCowError(
      `cannot read ${system.info} to check that ${cowPath} goes with ${snapshotPath}: ${(err as Error).message}`,
    )
  }
  let devices: { minor?: number; seq_id?: number; uuid?: string }[]
  try {
    devices = (JSON.parse(text) as { devices: typeof devices }).devices
  } catch {
    throw new DattoCowError(`${system.info} is not the JSON dattobd writes: cannot check ${cowPath}`)
  }
  const dev = devices.find((d) => d.minor === minor)
  if (dev?.seq_id === undefined || dev.uuid === undefined) {
    throw new DattoCowError(`${system.info} has no active snapshot of minor ${minor}: is ${snapshotPath} a snapshot?`)
  }
  if (dev.uuid !== cow.uuid) {
    throw new DattoCowError(
      `${cowPath} is of the snapshot series ${cow.uuid}, ${snapshotPath} of ${dev.uuid}: not the same device's ` +
        'snapshots. Give the COW file the last dbdctl transition-to-snapshot of this device left',
    )
  }
  if (String(dev.seq_id) !== (BigInt(cow.seqid) + 1n).toString()) {
    throw new DattoCowError(
      `${cowPath} is of snapshot ${cow.seqid}, ${snapshotPath} is snapshot ${dev.seq_id}: the COW file must be ` +
        `the one just before it (snapshot ${dev.seq_id - 1}), else blocks changed in between are missed or ` +
        'the wrong ones sent. Give that COW file, or take a full copy (era-copy --all)',
    )
  }
}
