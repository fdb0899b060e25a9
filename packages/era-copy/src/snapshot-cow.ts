import { BlockpipeError, formatBytes, readExactly, type Device } from '@blockpipe/core'
import { BlockSorter } from './block-sort.js'
import type { RangeSpool } from './range-spool.js'

// The persistent exception store of a dm-snapshot (an LVM snapshot's
// VG-SNAP-cow device), as Linux drivers/md/dm-snap-persistent.c writes it,
// little-endian:
//
//   chunk 0: magic u32 = "SnAp" (0x70416e53), valid u32, version u32 = 1,
//            chunk_size u32 (512-byte sectors)
//   area i:  the chunk at 1 + i * (E + 1), E = chunk bytes / 16, holding E
//            exceptions {old_chunk u64, new_chunk u64}; its E data chunks follow
//
// old_chunk is the origin chunk whose old contents were saved to new_chunk of
// the store: a chunk changed since the snapshot was taken. The list ends at
// the first exception whose new_chunk is 0; a full area goes on in the next
// one (the kernel zeroes an area before it is used, so a fresh area ends the
// list at its first exception). Exceptions come in the order the chunks were
// first written, so they are sorted here before anything is copied.

export const SNAP_MAGIC = 0x70416e53
export const SNAP_VERSION = 1
const EXCEPTION = 16
/** Exceptions are read this many bytes at a time, however large the chunks. */
const PIECE = 64 * 1024

export class SnapshotStoreError extends BlockpipeError {
  constructor(message: string) {
    super('EINPUT', message)
    this.name = 'SnapshotStoreError'
  }
}

export interface SnapshotStore {
  /** Bytes per chunk. */
  chunkBytes: number
}

/** Reads and checks the header of an exception store. */
export function readSnapshotHeader(cow: Device): SnapshotStore {
  const where = `${cow.path}: not a dm-snapshot exception store`
  if (cow.size < 512) throw new SnapshotStoreError(`${where}: it is ${cow.size} bytes, too small for its header`)
  const buf = Buffer.alloc(16)
  readExactly(cow, buf, 16, 0)
  const magic = buf.readUInt32LE(0)
  const valid = buf.readUInt32LE(4)
  const version = buf.readUInt32LE(8)
  const sectors = buf.readUInt32LE(12)
  if (magic === 0) {
    throw new SnapshotStoreError(
      `${where}: its header is blank (a snapshot never activated, or not the -cow device of an LVM snapshot, ` +
        'e.g. /dev/mapper/VG-SNAP-cow)',
    )
  }
  if (magic !== SNAP_MAGIC) {
    throw new SnapshotStoreError(
      `${where}: magic 0x${magic.toString(16).padStart(8, '0')}, expected 0x70416e53 ("SnAp"). ` +
        'Give the -cow device of an old-style LVM snapshot, e.g. /dev/mapper/VG-SNAP-cow (thin snapshots: --thin-delta)',
    )
  }
  if (version !== SNAP_VERSION) {
    throw new SnapshotStoreError(`${cow.path}: dm-snapshot store version ${version}; era-copy reads version 1 only`)
  }
  if (valid === 0) {
    throw new SnapshotStoreError(
      `${cow.path}: the snapshot is invalid (it overflowed its COW device, or an I/O error dropped it): its list ` +
        'of changed chunks is incomplete. Take a full copy (era-copy --all) and a new snapshot',
    )
  }
  // The kernel takes chunk sizes that are powers of two; the stream's blocks are at most 1 GiB.
  if (sectors === 0 || (sectors & (sectors - 1)) !== 0 || sectors > 2 * 1024 * 1024) {
    throw new SnapshotStoreError(`${cow.path}: chunk size of ${sectors} sectors: not a power of two up to 1 GiB`)
  }
  return { chunkBytes: sectors * 512 }
}

/**
 * Reads the store's exceptions, checks each against the origin and the store,
 * and adds the changed origin chunks to `spool` in ascending order. Returns
 * the number of exceptions.
 */
export function readSnapshotChunks(cow: Device, store: SnapshotStore, origin: Device, spool: RangeSpool): number {
  const { chunkBytes } = store
  const perArea = chunkBytes / EXCEPTION
  const originChunks = Math.ceil(origin.size / chunkBytes)
  const storeChunks = Math.floor(cow.size / chunkBytes)
  const piece = Math.min(PIECE, chunkBytes)
  const buf = Buffer.allocUnsafe(piece)
  const sorter = new BlockSorter()
  let exceptions = 0
  try {
    for (let area = 0; ; area++) {
      const chunk = 1 + area * (perArea + 1)
      if (chunk >= storeChunks) {
        throw new SnapshotStoreError(
          `${cow.path}: metadata area ${area} (chunk ${chunk}) is beyond the end of the store ` +
            `(${formatBytes(cow.size)}): the COW device is cut short`,
        )
      }
      let i = 0
      for (; i < perArea; i++) {
        const at = (i * EXCEPTION) % piece
        if (at === 0) readExactly(cow, buf, piece, chunk * chunkBytes + i * EXCEPTION)
        const newChunk = u64(buf, at + 8)
        if (newChunk === 0) break
        const oldChunk = u64(buf, at)
        if (oldChunk >= originChunks) {
          throw new SnapshotStoreError(
            `${cow.path}: chunk ${buf.readBigUInt64LE(at)} changed, beyond the end of ${origin.path}, which has ${originChunks} ` +
              `chunks of ${formatBytes(chunkBytes)} (${formatBytes(origin.size)}): is it the snapshot's origin?`,
          )
        }
        if (newChunk >= storeChunks || (newChunk - 1) % (perArea + 1) === 0) {
          throw new SnapshotStoreError(
            `${cow.path}: exception ${i} of metadata area ${area} saves chunk ${oldChunk} to chunk ` +
              `${buf.readBigUInt64LE(at + 8)} of the store, ` +
              (newChunk >= storeChunks ? `beyond its end (${storeChunks} chunks)` : 'a metadata chunk') +
              ': the store is corrupt or cut short',
          )
        }
        sorter.add(oldChunk)
        exceptions++
      }
      if (i < perArea) break
    }
    for (const batch of sorter.sorted()) for (const c of batch) spool.add({ begin: c, end: c + 1 })
  } finally {
    sorter.close()
  }
  return exceptions
}

/** A little-endian u64; Infinity when it does not fit a safe integer (beyond any device). */
function u64(buf: Buffer, at: number): number {
  const high = buf.readUInt32LE(at + 4)
  return high >= 0x200000 ? Infinity : high * 0x100000000 + buf.readUInt32LE(at)
}
