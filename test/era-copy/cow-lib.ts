// Hand-made change lists in the on-disk formats era-copy reads: a dm-snapshot
// persistent exception store laid out as Linux dm-snap-persistent.c lays it
// out (the same chunk allocation), and a dattobd COW file as dattobd's
// cow_manager.c writes it.

export interface StoreOptions {
  /** Chunk size in 512-byte sectors. */
  chunkSectors: number
  /** Origin chunks in the order they were first written. */
  changed: number[]
  magic?: number
  valid?: number
  version?: number
  /** Extra zeroed chunks after the last one used. */
  spare?: number
}

/** A COW device: header, metadata areas and data chunks, as the kernel allocates them. */
export function snapshotStore(o: StoreOptions): Buffer {
  const chunk = o.chunkSectors * 512
  const perArea = chunk / 16
  const stride = perArea + 1
  // The kernel's allocation: data from chunk 2, skipping each metadata area.
  let nextFree = 2
  const placed = o.changed.map((old) => {
    const at = nextFree
    if (++nextFree % stride === 1) nextFree++
    return { old, at }
  })
  const areas = Math.floor(placed.length / perArea) + 1
  const lastArea = 1 + (areas - 1) * stride
  const chunks = Math.max(nextFree, lastArea + 1) + (o.spare ?? 0)
  const cow = Buffer.alloc(chunks * chunk)
  cow.writeUInt32LE(o.magic ?? 0x70416e53, 0)
  cow.writeUInt32LE(o.valid ?? 1, 4)
  cow.writeUInt32LE(o.version ?? 1, 8)
  cow.writeUInt32LE(o.chunkSectors, 12)
  placed.forEach(({ old, at }, k) => {
    const pos = (1 + Math.floor(k / perArea) * stride) * chunk + (k % perArea) * 16
    cow.writeBigUInt64LE(BigInt(old), pos)
    cow.writeBigUInt64LE(BigInt(at), pos + 8)
    cow.fill(0xa5, at * chunk, (at + 1) * chunk)
  })
  return cow
}

export interface DattoOptions {
  /** Size of the device in bytes. */
  deviceSize: number
  /** Block numbers marked as changed. */
  changed: Iterable<number>
  version?: number
  magic?: number
  clean?: boolean
  indexOnly?: boolean
  /** The header's nr_changed_blocks (version 1); the number of blocks marked by default. */
  count?: number
  seqid?: number
}

/** A dattobd COW file: its header, its index in whole sections and, unless index only, some data. */
export function dattoCow(o: DattoOptions): Buffer {
  const blocks = Math.floor(o.deviceSize / 4096)
  const entries = Math.ceil(blocks / 4096) * 4096
  const indexOnly = o.indexOnly ?? true
  const cow = Buffer.alloc(4096 + entries * 8 + (indexOnly ? 0 : 3 * 4096))
  cow.writeUInt32LE(o.magic ?? 4776, 0)
  cow.writeUInt32LE(((o.clean ?? true) ? 1 : 0) | (indexOnly ? 2 : 0), 4)
  cow.writeBigUInt64LE(BigInt(cow.length / 4096), 8)
  cow.writeBigUInt64LE(BigInt(cow.length), 16)
  cow.writeBigUInt64LE(BigInt(o.seqid ?? 7), 24)
  for (let i = 0; i < 16; i++) cow[32 + i] = 0x10 + i
  const version = o.version ?? 1
  let n = 0
  let pos = 4096 + entries * 8
  for (const b of o.changed) {
    // Index only: 1; with data: where the block's old contents went.
    cow.writeBigUInt64LE(BigInt(indexOnly ? 1 : pos / 4096), 4096 + b * 8)
    pos += 4096
    n++
  }
  if (version !== 0) {
    cow.writeBigUInt64LE(BigInt(version), 48)
    cow.writeBigUInt64LE(BigInt(o.count ?? n), 56)
  }
  return cow
}
