import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parseStream } from '../integration/bsync-lib.js'
import { prng, randomBytes } from '../lib/data.js'
import { run, sh } from '../lib/run.js'
import { snapshotStore, type StoreOptions } from './cow-lib.js'

// era-copy --snapshot-cow on hand-made dm-snapshot exception stores: the
// backup (the origin as it was when the snapshot was taken) is brought up to
// the origin, byte for byte; a store that cannot be trusted is refused
// before anything is written.

interface Case {
  dir: string
  backup: Buffer
  origin: Buffer
}

/** backup.img (the snapshot's contents), origin.img (changed in `changed` chunks) and cow.img. */
function setup(t: Test, size: number, store: StoreOptions, seed = 1): Case {
  const dir = t.testdir()
  const chunk = store.chunkSectors * 512
  const backup = randomBytes(size, seed)
  const origin = Buffer.from(backup)
  for (const c of store.changed) {
    randomBytes(chunk, seed * 1000 + c).copy(origin, c * chunk, 0, Math.max(0, Math.min(chunk, size - c * chunk)))
  }
  writeFileSync(join(dir, 'backup.img'), backup)
  writeFileSync(join(dir, 'origin.img'), origin)
  writeFileSync(join(dir, 'cow.img'), snapshotStore(store))
  return { dir, backup, origin }
}

async function roundTrip(t: Test, c: Case): Promise<Buffer> {
  const r = await sh('era-copy --snapshot-cow cow.img origin.img > incr.bps && era-apply backup.img < incr.bps', {
    cwd: c.dir,
  })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  t.ok(readFileSync(join(c.dir, 'backup.img')).equals(c.origin), 'the backup equals the origin')
  return readFileSync(join(c.dir, 'incr.bps'))
}

/** Distinct chunks below `n`, shuffled: the order a store lists them in. */
function shuffled(n: number, count: number, seed: number): number[] {
  const rnd = prng(seed)
  const set = new Set<number>()
  while (set.size < count) set.add(Math.floor(rnd() * n))
  return [...set]
}

void t.test('the end marker in the first area: the changed chunks, merged, in order', async (t) => {
  const c = setup(t, 64 * 4096, { chunkSectors: 8, changed: [9, 3, 4, 63, 5, 20] })
  const { header, records } = await parseStream(await roundTrip(t, c))
  t.match(header, {
    blockSize: 4096,
    flags: 0,
    size: 64 * 4096,
    metadata: { input: 'snapshot_cow', cow: 'cow.img', source: 'origin.img', exceptions: '6' },
  })
  t.same(
    records.map((r) => `${r.offset / 4096}+${r.length / 4096}`),
    ['3+3', '9+1', '20+1', '63+1'],
  )
})

void t.test('what follows the end marker is not read, as the kernel does not', async (t) => {
  const c = setup(t, 16 * 4096, { chunkSectors: 8, changed: [2] })
  const cow = snapshotStore({ chunkSectors: 8, changed: [2] })
  // Exception 1 is the end (new_chunk 0); exception 2 would be an error if read.
  cow.writeBigUInt64LE(999n, 4096 + 32)
  cow.writeBigUInt64LE(2n, 4096 + 40)
  writeFileSync(join(c.dir, 'cow.img'), cow)
  const { records } = await parseStream(await roundTrip(t, c))
  t.same(
    records.map((r) => r.offset / 4096),
    [2],
  )
})

void t.test('several metadata areas, the end marker in a later one', async (t) => {
  // 512-byte chunks: 32 exceptions per area; 100 exceptions fill three areas and start a fourth.
  const changed = shuffled(4000, 100, 2)
  const c = setup(t, 4000 * 512, { chunkSectors: 1, changed })
  const { header, records } = await parseStream(await roundTrip(t, c))
  t.equal(header.metadata.exceptions, '100')
  t.equal(
    records.reduce((n, r) => n + r.length, 0),
    100 * 512,
    'exactly the changed chunks are sent',
  )
})

void t.test('a full last area: the next one, all zeros, ends the list', async (t) => {
  const changed = shuffled(500, 64, 3)
  const c = setup(t, 500 * 512, { chunkSectors: 1, changed })
  const { header } = await parseStream(await roundTrip(t, c))
  t.equal(header.metadata.exceptions, '64')
})

void t.test('many exceptions are sorted with bounded memory (spilled runs merged)', async (t) => {
  // 40,000 chunks of 512 bytes, 30,000 of them changed in a random order.
  const changed = shuffled(40000, 30000, 4)
  const c = setup(t, 40000 * 512, { chunkSectors: 1, changed }, 5)
  const { records } = await parseStream(await roundTrip(t, c))
  t.ok(
    records.every((r, i) => i === 0 || r.offset >= (records[i - 1]?.offset ?? 0)),
    'records in ascending order',
  )
  t.ok(
    records.every((r) => r.length <= 1024 * 1024),
    'records of at most 1 MiB',
  )
})

void t.test('no exception: an empty stream; every chunk: a full one', async (t) => {
  const none = setup(t, 16 * 4096, { chunkSectors: 8, changed: [] })
  const { header, records } = await parseStream(await roundTrip(t, none))
  t.equal(records.length, 0)
  t.equal(header.flags, 0)
  const all = setup(t, 16 * 4096 - 1024, { chunkSectors: 8, changed: shuffled(16, 16, 6) })
  const full = await parseStream(await roundTrip(t, all))
  t.equal(full.header.flags, 1, 'every chunk changed: a full stream')
})

void t.test('an origin size not a multiple of the chunk size: the partial last chunk', async (t) => {
  const size = 10 * 4096 + 1536
  const c = setup(t, size, { chunkSectors: 8, changed: [10, 2] })
  const { records } = await parseStream(await roundTrip(t, c))
  t.same(
    records.map((r) => [r.offset, r.length]),
    [
      [2 * 4096, 4096],
      [10 * 4096, 1536],
    ],
  )
})

void t.test('a store that cannot be trusted: exit 1, nothing on stdout', async (t) => {
  const chunk = 4096
  const cases: [string, Buffer, RegExp][] = [
    [
      'invalid',
      snapshotStore({ chunkSectors: 8, changed: [1], valid: 0 }),
      /the snapshot is invalid \(it overflowed its COW device.*Take a full copy/,
    ],
    [
      'wrong magic',
      snapshotStore({ chunkSectors: 8, changed: [1], magic: 0x12345678 }),
      /not a dm-snapshot exception store: magic 0x12345678, expected 0x70416e53 \("SnAp"\)/,
    ],
    [
      'blank',
      snapshotStore({ chunkSectors: 8, changed: [1], magic: 0 }),
      /its header is blank \(a snapshot never activated, or not the -cow device/,
    ],
    [
      'version 2',
      snapshotStore({ chunkSectors: 8, changed: [1], version: 2 }),
      /dm-snapshot store version 2; era-copy reads version 1 only/,
    ],
    [
      'chunk size 3',
      snapshotStore({ chunkSectors: 8, changed: [1] }).fill(3, 12, 13),
      /chunk size of 3 sectors: not a power of two up to 1 GiB/,
    ],
    ['chunk size 0', snapshotStore({ chunkSectors: 8, changed: [1] }).fill(0, 12, 16), /chunk size of 0 sectors/],
    [
      'chunk size 2 GiB',
      Buffer.from(snapshotStore({ chunkSectors: 8, changed: [1] }))
        .fill(0, 12, 16)
        .fill(0x40, 15, 16),
      /chunk size of 1073741824 sectors/,
    ],
    ['too small', Buffer.alloc(100), /it is 100 bytes, too small for its header/],
    [
      'chunk beyond the origin',
      snapshotStore({ chunkSectors: 8, changed: [3, 16] }),
      /chunk 16 changed, beyond the end of origin\.img, which has 16 chunks of 4\.00 KiB \(64\.0 KiB\): is it the snapshot's origin\?/,
    ],
    [
      'a huge chunk number',
      (() => {
        const s = snapshotStore({ chunkSectors: 8, changed: [3] })
        s.writeBigUInt64LE(0xffffffffffffffffn, chunk)
        return s
      })(),
      /chunk 18446744073709551615 changed, beyond the end/,
    ],
    [
      'data beyond the store',
      (() => {
        const s = snapshotStore({ chunkSectors: 8, changed: [3] })
        s.writeBigUInt64LE(1000n, chunk + 8)
        return s
      })(),
      /exception 0 of metadata area 0 saves chunk 3 to chunk 1000 of the store, beyond its end \(3 chunks\): the store is corrupt/,
    ],
    [
      'data on a metadata chunk',
      (() => {
        const s = snapshotStore({ chunkSectors: 8, changed: [3] })
        s.writeBigUInt64LE(1n, chunk + 8)
        return s
      })(),
      /saves chunk 3 to chunk 1 of the store, a metadata chunk/,
    ],
    [
      'cut short',
      // 32 exceptions fill area 0; area 1 is not there.
      snapshotStore({ chunkSectors: 1, changed: shuffled(128, 32, 7) }).subarray(0, 34 * 512),
      /metadata area 1 \(chunk 34\) is beyond the end of the store \(17\.0 KiB\): the COW device is cut short/,
    ],
  ]
  for (const [name, store, message] of cases) {
    const dir = t.testdir()
    writeFileSync(join(dir, 'origin.img'), randomBytes(16 * chunk, 8))
    writeFileSync(join(dir, 'cow.img'), store)
    const r = await run('era-copy', ['--snapshot-cow', 'cow.img', 'origin.img'], { cwd: dir })
    t.equal(r.status, 1, name)
    t.match(r.stderr, message, name)
    t.match(r.stderr, /^era-copy: cow\.img: /, name)
    t.equal(r.stdout.length, 0, `${name}: nothing on stdout`)
  }
})

void t.test('usage: one source, no block size, ORIGIN named', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--snapshot-cow', 'cow.img'], /missing ORIGIN/],
    [['--snapshot-cow', 'cow.img', '--all', 'o'], /--all and --snapshot-cow exclude each other/],
    [['--snapshot-cow', 'c', '--datto-cow', 'd', 'o'], /--snapshot-cow and --datto-cow exclude each other/],
    [
      ['--snapshot-cow', 'c', '-b', '128', 'o'],
      /--snapshot-cow takes neither --block-size nor --written-since: the block size comes from the store's chunk size/,
    ],
    [['--snapshot-cow', 'c', '--written-since', '3', 'o'], /--snapshot-cow takes neither/],
  ]
  for (const [args, message] of cases) {
    const r = await run('era-copy', args)
    t.equal(r.status, 2, args.join(' '))
    t.match(r.stderr, message, args.join(' '))
  }
})

void t.test('era-apply refuses the stream for an image of another size', async (t) => {
  const c = setup(t, 32 * 4096, { chunkSectors: 8, changed: [1, 2] })
  writeFileSync(join(c.dir, 'backup.img'), c.backup.subarray(0, 16 * 4096))
  const r = await sh('era-copy --snapshot-cow cow.img origin.img | era-apply backup.img', { cwd: c.dir })
  t.equal(r.status, 3, r.stderr)
  t.match(r.stderr, /the device grew since the last backup/)
})
