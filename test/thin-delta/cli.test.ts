import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { parseStream } from '../integration/bsync-lib.js'
import { have, run, sh } from '../lib/run.js'
import { BLOCK, SAMPLE_SIZE, deviceImage, samplePool, thinDelta, thinRestore, type Mapping, type Pool } from './lib.js'

// era-copy --thin-delta with the real thin_restore and thin_delta: the
// older snapshot's image is brought up to the newer one's, byte for byte,
// from plain and --verbose output.

const tools = have('thin_restore') && have('thin_delta')
const skip = tools ? false : 'thin-provisioning-tools (thin_restore, thin_delta) is not installed'

interface Setup {
  dir: string
  meta: string
  left: Buffer
  right: Buffer
}

/** The pool's metadata, its two devices as image files (left.img, right.img), and backup.img holding left. */
function setup(t: Test, pool: Pool = samplePool(), size = SAMPLE_SIZE): Setup {
  const dir = t.testdir()
  const meta = thinRestore(dir, pool)
  const left = deviceImage(pool, pool.left, size)
  const right = deviceImage(pool, pool.right, size)
  writeFileSync(join(dir, 'left.img'), left)
  writeFileSync(join(dir, 'right.img'), right)
  writeFileSync(join(dir, 'backup.img'), left)
  return { dir, meta, left, right }
}

void t.test('plain and --verbose thin_delta output bring the backup up to the newer device', { skip }, async (t) => {
  for (const verbose of [false, true]) {
    const s = setup(t)
    writeFileSync(join(s.dir, 'delta.xml'), thinDelta(s.meta, { verbose }))
    const r = await sh('era-copy --thin-delta right.img < delta.xml > incr.bps && era-apply backup.img < incr.bps', {
      cwd: s.dir,
    })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stderr, '', 'no warning')
    t.ok(readFileSync(join(s.dir, 'backup.img')).equals(s.right), `verbose ${verbose}: the backup equals the device`)
    const { header, records } = await parseStream(readFileSync(join(s.dir, 'incr.bps')))
    t.match(header, { blockSize: BLOCK, flags: 0, size: SAMPLE_SIZE, metadata: { input: 'thin_delta' } })
    const blocks = (o: number, l: number): string => `${o / BLOCK}+${l / BLOCK}`
    t.same(
      records.map((r) => `${r.type} ${blocks(r.offset, r.length)}`),
      [
        'DATA 3+3', // different
        'ZERO 8+2', // left_only: unmapped in the newer device
        'DATA 17+1', // different
        'DATA 24+3', // right_only
        'ZERO 30+2', // left_only
        'DATA 40+1', // right_only
        'ZERO 41+1', // right_only, reads as zeros
        'DATA 47+0.5', // different, the partial last block
      ],
      'same blocks are not sent',
    )
  }
})

void t.test('-b must agree with data_block_size; without it in the XML, -b is needed', { skip }, async (t) => {
  const s = setup(t)
  writeFileSync(join(s.dir, 'delta.xml'), thinDelta(s.meta))
  const same = await sh('era-copy --thin-delta -b 64K right.img < delta.xml | era-apply backup.img', { cwd: s.dir })
  t.equal(same.status, 0, same.stderr)
  t.ok(readFileSync(join(s.dir, 'backup.img')).equals(s.right))
  const other = await run('era-copy', ['--thin-delta', '-b', '256', join(s.dir, 'right.img')], {
    inputFile: join(s.dir, 'delta.xml'),
  })
  t.equal(other.status, 2)
  t.match(
    other.stderr,
    "era-copy: --block-size of 131072 bytes differs from the pool's data_block_size of 128 sectors (65536 bytes)" +
      ' in the thin_delta output: leave --block-size out',
  )
  t.equal(other.stdout.length, 0, 'nothing was sent')
  const bare = readFileSync(join(s.dir, 'delta.xml'), 'utf8').replace(/ data_block_size="128"/, '')
  const missing = await run('era-copy', ['--thin-delta', join(s.dir, 'right.img')], { input: Buffer.from(bare) })
  t.equal(missing.status, 2)
  t.match(missing.stderr, /gives no data_block_size: give the pool's block size with --block-size/)
  writeFileSync(join(s.dir, 'backup.img'), s.left)
  writeFileSync(join(s.dir, 'bare.xml'), bare)
  const given = await sh('era-copy --thin-delta -b 128 right.img < bare.xml | era-apply backup.img', { cwd: s.dir })
  t.equal(given.status, 0, given.stderr)
  t.ok(readFileSync(join(s.dir, 'backup.img')).equals(s.right))
})

void t.test('options that make no sense with --thin-delta are usage errors', { skip }, async (t) => {
  const s = setup(t)
  const all = await run('era-copy', ['--thin-delta', '--all', join(s.dir, 'right.img')])
  t.equal(all.status, 2)
  t.match(all.stderr, 'era-copy: --thin-delta and --all exclude each other: --all reads no XML')
  const since = await run('era-copy', ['--thin-delta', '--written-since', '4', join(s.dir, 'right.img')])
  t.equal(since.status, 2)
  t.match(since.stderr, 'era-copy: --written-since is an era: thin_delta has none')
  const era = await run('era-copy', ['--thin-delta', join(s.dir, 'right.img')], {
    input: Buffer.from('<blocks>\n  <range begin="0" end="3"/>\n</blocks>\n'),
  })
  t.equal(era.status, 1)
  t.match(era.stderr, 'expected <superblock>, found <blocks>: this is era_invalidate output: leave out --thin-delta')
})

void t.test('blocks beyond the device are refused before anything is sent', { skip }, async (t) => {
  const s = setup(t)
  writeFileSync(join(s.dir, 'short.img'), s.right.subarray(0, 40 * BLOCK))
  const r = await run('era-copy', ['--thin-delta', join(s.dir, 'short.img')], { input: thinDelta(s.meta) })
  t.equal(r.status, 1)
  t.match(
    r.stderr,
    /era-copy: block 47 is beyond the end of .*short.img, which has 40 blocks of 64.0 KiB \(2.50 MiB\): wrong device \(thin_delta's --snap2\)\?/,
  )
  t.equal(r.stdout.length, 0)
  // The same refusal for era_invalidate output, which names -b.
  const era = await run('era-copy', ['-b', '64K', join(s.dir, 'short.img')], {
    input: Buffer.from('<blocks>\n  <block block="40"/>\n</blocks>\n'),
  })
  t.equal(era.status, 1)
  t.match(era.stderr, /block 40 is beyond the end of .*: wrong device or wrong block size \(-b\)\?/)
})

void t.test(
  'data where the newer device is unmapped: swapped --snap1/--snap2 still copy right, with a warning',
  { skip },
  async (t) => {
    const s = setup(t)
    // Older and newer swapped: what the newer one maps alone is listed as left_only.
    writeFileSync(join(s.dir, 'swapped.xml'), thinDelta(s.meta, { snap1: 2, snap2: 1 }))
    const r = await sh('era-copy --thin-delta right.img < swapped.xml | era-apply backup.img', { cwd: s.dir })
    t.equal(r.status, 0, r.stderr)
    t.match(
      r.stderr,
      /^era-copy: warning: thin_delta lists blocks as left_only \(unmapped in device 1\), but right.img holds 256.0 KiB of data in them, from block 24 on; that data was copied. Is right.img the --snap2 device, and was --snap1 the older one\?\n$/,
    )
    t.ok(readFileSync(join(s.dir, 'backup.img')).equals(s.right), 'the data was sent, not zeros')
  },
)

void t.test('a delta that covers the whole device is a full stream', { skip }, async (t) => {
  // Ten blocks: five rewritten, five discarded since the older snapshot.
  const left: Mapping = Array.from({ length: 10 }, (_, i) => i)
  const right: Mapping = Array.from({ length: 10 }, (_, i) => (i < 5 ? 50 + i : null))
  const s = setup(t, { left, right }, 10 * BLOCK)
  const r = await run('era-copy', ['--thin-delta', join(s.dir, 'right.img')], { input: thinDelta(s.meta) })
  t.equal(r.status, 0, r.stderr)
  const { header, records } = await parseStream(r.stdout)
  t.equal(header.flags, 1, 'FULL')
  t.same(
    records.map((rec) => [rec.type, rec.offset / BLOCK, rec.length / BLOCK]),
    [
      ['DATA', 0, 5],
      ['ZERO', 5, 5],
    ],
  )
  const a = await run('era-apply', [join(s.dir, 'fresh.img')], { input: r.stdout })
  t.equal(a.status, 0, a.stderr)
  t.ok(readFileSync(join(s.dir, 'fresh.img')).equals(s.right), 'a new target takes it without --force')
})

void t.test('--thin-delta --format erarange, for an old era_apply', { skip }, async (t) => {
  const s = setup(t)
  writeFileSync(join(s.dir, 'delta.xml'), thinDelta(s.meta))
  const r = await sh(
    'era-copy --thin-delta --format erarange right.img < delta.xml > incr.er && era-apply backup.img < incr.er',
    {
      cwd: s.dir,
    },
  )
  t.equal(r.status, 0, r.stderr)
  t.ok(readFileSync(join(s.dir, 'backup.img')).equals(s.right))
  t.equal(readFileSync(join(s.dir, 'incr.er')).toString('latin1', 0, 8), 'ERARANGE')
})
