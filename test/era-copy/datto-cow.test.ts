import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parseStream } from '../integration/bsync-lib.js'
import { randomBytes } from '../lib/data.js'
import { run, sh } from '../lib/run.js'
import { checkDattoSequence, type DattoCow } from '../../packages/era-copy/src/datto-cow.js'
import { dattoCow, type DattoOptions } from './cow-lib.js'

// era-copy --datto-cow on hand-made dattobd COW files: the image of the
// previous snapshot is brought up to the next snapshot device, byte for byte;
// a COW file whose index cannot be trusted is refused before anything is written.

const B = 4096

interface Case {
  dir: string
  snapshot: Buffer
}

/** image.img (the previous snapshot), snap.img (it with the changed blocks rewritten) and cow. */
function setup(t: Test, o: DattoOptions, changedTail = false): Case {
  const dir = t.testdir()
  const image = randomBytes(o.deviceSize, 1)
  const snapshot = Buffer.from(image)
  for (const b of o.changed) randomBytes(B, 100 + b).copy(snapshot, b * B)
  // dattobd does not track the partial last block: it changed, unmarked.
  if (changedTail) snapshot.fill(0x5a, Math.floor(o.deviceSize / B) * B)
  writeFileSync(join(dir, 'image.img'), image)
  writeFileSync(join(dir, 'snap.img'), snapshot)
  writeFileSync(join(dir, 'cow'), dattoCow(o))
  return { dir, snapshot }
}

async function roundTrip(t: Test, c: Case): Promise<Awaited<ReturnType<typeof parseStream>>> {
  const r = await sh('era-copy --datto-cow cow snap.img > incr.bps && era-apply image.img < incr.bps', { cwd: c.dir })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  t.ok(readFileSync(join(c.dir, 'image.img')).equals(c.snapshot), 'the image equals the snapshot')
  return parseStream(readFileSync(join(c.dir, 'incr.bps')))
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from }, (_, i) => from + i)

void t.test('the marked blocks, runs of them merged into bounded records, in order', async (t) => {
  // 2.5 MiB run, then single blocks; an index of one section.
  const changed = [3, ...range(10, 650), 1000, 1001, 2047]
  const c = setup(t, { deviceSize: 2048 * B, changed })
  const { header, records } = await roundTrip(t, c)
  t.match(header, {
    blockSize: B,
    flags: 0,
    size: 2048 * B,
    metadata: { input: 'datto_cow', cow: 'cow', source: 'snap.img', 'datto-seqid': '7' },
  })
  t.equal(header.metadata['datto-uuid'], '101112131415161718191a1b1c1d1e1f')
  t.same(
    records.map((r) => `${r.offset / B}+${r.length / B}`),
    ['3+1', '10+256', '266+256', '522+128', '1000+2', '2047+1'],
    'a run of 640 blocks goes as records of at most 1 MiB',
  )
})

void t.test('a device size not a multiple of 4 KiB: the partial last block is always sent', async (t) => {
  const c = setup(t, { deviceSize: 100 * B + 1536, changed: [0, 99] }, true)
  const { records } = await roundTrip(t, c)
  t.same(
    records.map((r) => [r.offset, r.length]),
    [
      [0, B],
      [99 * B, B + 1536],
    ],
  )
  // Several index sections, the device 4096 blocks and a bit: the partial block has no entry.
  const big = setup(t, { deviceSize: 4096 * B + 512, changed: [4095] }, true)
  const parsed = await roundTrip(t, big)
  t.same(
    parsed.records.map((r) => [r.offset, r.length]),
    [[4095 * B, B + 512]],
  )
})

void t.test('both header versions; a snapshot-mode COW file (with data); every block: a full stream', async (t) => {
  const v0 = setup(t, { deviceSize: 64 * B, changed: [1, 2, 40], version: 0 })
  t.same((await roundTrip(t, v0)).records.length, 2)
  const data = setup(t, { deviceSize: 64 * B, changed: [5, 6], indexOnly: false })
  t.same((await roundTrip(t, data)).records.length, 1)
  const all = setup(t, { deviceSize: 8 * B, changed: range(0, 8) })
  t.equal((await roundTrip(t, all)).header.flags, 1)
  const none = setup(t, { deviceSize: 8 * B, changed: [] })
  t.equal((await roundTrip(t, none)).records.length, 0)
})

void t.test('a COW file that cannot be trusted: exit 1, nothing on stdout', async (t) => {
  const size = 5000 * B
  const cases: [string, Buffer, RegExp][] = [
    [
      'wrong magic',
      dattoCow({ deviceSize: size, changed: [1], magic: 4777 }),
      /not a dattobd COW file: magic 4777, expected 4776/,
    ],
    ['too short for a header', Buffer.alloc(1000), /not a dattobd COW file: 1000 bytes, shorter than its header/],
    ['not clean', dattoCow({ deviceSize: size, changed: [1], clean: false }), /the COW file was not closed cleanly/],
    [
      'version 2',
      dattoCow({ deviceSize: size, changed: [1], version: 2 }),
      /dattobd COW format version 2; era-copy reads versions 0 and 1/,
    ],
    [
      'short index',
      dattoCow({ deviceSize: size, changed: [1], indexOnly: false }).subarray(0, 4096 + 4999 * 8),
      /its index has 4999 entries, snap\.img \(19\.5 MiB\) has 5000 blocks of 4 KiB: the COW file is cut short/,
    ],
    [
      'index only, for a larger device',
      dattoCow({ deviceSize: 9000 * B, changed: [1] }),
      /its index has 12288 entries, a device of 19\.5 MiB needs 8192 \(5000 blocks\): it belongs to another device/,
    ],
    [
      'index only, cut in its last section',
      dattoCow({ deviceSize: size, changed: [1] }).subarray(0, 4096 + 6000 * 8),
      /its index has 6000 entries, a device of 19\.5 MiB needs 8192/,
    ],
    [
      'fewer blocks marked than counted',
      dattoCow({ deviceSize: size, changed: [1, 2, 3], count: 4 }),
      /the index marks 3 blocks as changed, its header counts 4: the index is incomplete/,
    ],
  ]
  for (const [name, cow, message] of cases) {
    const dir = t.testdir()
    writeFileSync(join(dir, 'snap.img'), Buffer.alloc(size))
    writeFileSync(join(dir, 'cow'), cow)
    const r = await run('era-copy', ['--datto-cow', 'cow', 'snap.img'], { cwd: dir })
    t.equal(r.status, 1, name)
    t.match(r.stderr, message, name)
    t.match(r.stderr, /^era-copy: cow: /, name)
    t.equal(r.stdout.length, 0, `${name}: nothing on stdout`)
  }
})

void t.test('usage: SNAPSHOT_DEVICE named, no block size', async (t) => {
  const cases: [string[], RegExp][] = [
    [['--datto-cow', 'cow'], /missing SNAPSHOT_DEVICE/],
    [
      ['--datto-cow', 'c', '-b', '8', 'd'],
      /--datto-cow takes neither --block-size nor --written-since: the block size comes from the COW file \(4 KiB\)/,
    ],
    [['--datto-cow', 'c', '--thin-delta', 'd'], /--thin-delta and --datto-cow exclude each other/],
  ]
  for (const [args, message] of cases) {
    const r = await run('era-copy', args)
    t.equal(r.status, 2, args.join(' '))
    t.match(r.stderr, message, args.join(' '))
  }
})

void t.test('--help lists every source', async (t) => {
  const help = (await run('era-copy', ['--help'])).stdout.toString()
  t.match(help, /era-copy --snapshot-cow COW_DEVICE ORIGIN > stream/)
  t.match(help, /era-copy --datto-cow COW_FILE SNAPSHOT_DEVICE > stream/)
  t.match(help, /--snapshot-cow +the -cow device of an LVM snapshot/)
  t.match(help, /--datto-cow +the COW file of the previous dattobd snapshot/)
})

void t.test('a missing COW file: exit 1', async (t) => {
  const dir = t.testdir()
  writeFileSync(join(dir, 'snap.img'), Buffer.alloc(B))
  const r = await run('era-copy', ['--datto-cow', 'nope', 'snap.img'], { cwd: dir })
  t.equal(r.status, 1)
  t.match(r.stderr, /nope: no such file or device/)
})

void t.test('a dattobd snapshot device: the COW file must be of the snapshot just before it', (t) => {
  const dir = t.testdir()
  const info = join(dir, 'datto-info')
  const cow: DattoCow = { version: 1, seqid: '7', uuid: 'ab'.repeat(16), indexOnly: true, changed: 0 }
  const system = (text?: string) => {
    if (text !== undefined) writeFileSync(info, text)
    return { info, realpath: (p: string) => (p === 'snap' ? '/dev/datto4' : p) }
  }
  const proc = (seq: number, uuid = 'ab'.repeat(16)) =>
    `{\n\t"version": "0.12.1",\n\t"devices": [\n\t\t{\n\t\t\t"minor": 4,\n\t\t\t"cow_file": "/datto.2",\n` +
    `\t\t\t"seq_id": ${seq},\n\t\t\t"uuid": "${uuid}",\n\t\t\t"state": 3\n\t\t}\n\t]\n}\n`
  t.doesNotThrow(() => checkDattoSequence('cow', cow, 'snap', system(proc(8))), 'snapshot 8 after COW file 7')
  t.doesNotThrow(() => checkDattoSequence('cow', cow, 'image.img', system(proc(3))), 'an image file: nothing to check')
  t.throws(() => checkDattoSequence('cow', cow, 'snap', system(proc(9))), {
    code: 'EINPUT',
    message: /cow is of snapshot 7, snap is snapshot 9: the COW file must be the one just before it \(snapshot 8\)/,
  })
  t.throws(() => checkDattoSequence('cow', cow, 'snap', system(proc(8, 'cd'.repeat(16)))), {
    message: /cow is of the snapshot series abab.*, snap of cdcd.*: not the same device's snapshots/,
  })
  t.throws(() => checkDattoSequence('cow', cow, 'snap', system('{"devices": [{"minor": 5}]}')), {
    message: /has no active snapshot of minor 4: is snap a snapshot\?/,
  })
  t.throws(() => checkDattoSequence('cow', cow, 'snap', system('{"devices": [{"minor": 4, "state": 0}]}')), {
    message: /has no active snapshot of minor 4/,
  })
  t.throws(() => checkDattoSequence('cow', cow, 'snap', system('{"devices": [')), {
    message: /datto-info is not the JSON dattobd writes: cannot check cow/,
  })
  t.throws(() => checkDattoSequence('cow', cow, 'snap', { ...system(), info: join(dir, 'none') }), {
    message: /cannot read .*none to check that cow goes with snap: ENOENT/,
  })
  t.end()
})
