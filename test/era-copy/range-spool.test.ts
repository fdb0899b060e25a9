import { readdirSync, readlinkSync } from 'node:fs'
import t from 'tap'
import type { BlockRange } from '../../packages/era-copy/src/era-invalidate.js'
import { RangeSpool } from '../../packages/era-copy/src/range-spool.js'

const PAIRS = 65536

function all(spool: RangeSpool): { ranges: BlockRange[]; batches: number[] } {
  const out: BlockRange[] = []
  const batches: number[] = []
  for (const batch of spool.ranges()) {
    batches.push(batch.length)
    out.push(...batch)
  }
  return { ranges: out, batches }
}

/** Unlinked files this process holds open under `dir`: the spill file. */
function spilled(dir: string): number {
  return readdirSync('/proc/self/fd').filter((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`)
      return target.startsWith(`${dir}/era-copy-ranges-`) && target.endsWith(' (deleted)')
    } catch {
      return false // the fd of the directory listing itself is gone already
    }
  }).length
}

void t.test('adjacent ranges merge; counts and end', (t) => {
  const spool = new RangeSpool(t.testdir())
  t.equal(spool.end, 0)
  t.equal(spool.blocks, 0)
  spool.add({ begin: 0, end: 2 })
  spool.add({ begin: 2, end: 5 })
  spool.add({ begin: 5, end: 6 })
  spool.add({ begin: 9, end: 10 })
  spool.add({ begin: 12, end: 20 })
  spool.add({ begin: 20, end: 21 })
  t.equal(spool.blocks, 16)
  t.equal(spool.end, 21)
  t.strictSame(all(spool), {
    ranges: [
      { begin: 0, end: 6 },
      { begin: 9, end: 10 },
      { begin: 12, end: 21 },
    ],
    batches: [3],
  })
  // Reading again gives the same.
  t.strictSame(all(spool).ranges.length, 3)
  spool.close()
  t.end()
})

void t.test('the caller may reuse the range object it added', (t) => {
  const spool = new RangeSpool(t.testdir())
  const range = { begin: 1, end: 2 }
  spool.add(range)
  range.begin = 5
  range.end = 7
  spool.add(range)
  t.strictSame(all(spool).ranges, [
    { begin: 1, end: 2 },
    { begin: 5, end: 7 },
  ])
  spool.close()
  t.end()
})

void t.test('an empty list', (t) => {
  const spool = new RangeSpool(t.testdir())
  t.strictSame(all(spool), { ranges: [], batches: [] })
  spool.close()
  t.end()
})

void t.test('up to 65536 ranges stay in memory', (t) => {
  const dir = t.testdir()
  const spool = new RangeSpool(dir)
  for (let i = 0; i < PAIRS; i++) spool.add({ begin: i * 2, end: i * 2 + 1 })
  const got = all(spool)
  t.strictSame(got.batches, [PAIRS])
  t.equal(spilled(dir), 0, 'no spill file')
  spool.close()
  t.end()
})

void t.test('past 65536 ranges they spill to an unlinked file and read back in order', (t) => {
  const dir = t.testdir()
  const spool = new RangeSpool(dir)
  const n = 2 * PAIRS + 12345
  // Large block numbers too: they must come back exact.
  const base = 2 ** 40
  for (let i = 0; i < n; i++) {
    spool.add({ begin: base + i * 3, end: base + i * 3 + 1 })
    spool.add({ begin: base + i * 3 + 1, end: base + i * 3 + 2 }) // merged with the one before
  }
  t.equal(spilled(dir), 1, 'one unlinked spill file is open')
  t.strictSame(readdirSync(dir), [], 'and nothing is left in the directory')
  t.equal(spool.blocks, 2 * n)
  t.equal(spool.end, base + (n - 1) * 3 + 2)
  const got = all(spool)
  t.strictSame(got.batches, [PAIRS, PAIRS, 12345])
  t.equal(got.ranges.length, n)
  const wrong = got.ranges.findIndex((x, i) => x.begin !== base + i * 3 || x.end !== base + i * 3 + 2)
  t.equal(wrong, -1, 'every range, exact, in order')
  spool.close()
  t.equal(spilled(dir), 0, 'close() closes the spill file')
  spool.close()
  t.end()
})

void t.test('a temporary directory that cannot be used is a clear error', (t) => {
  const spool = new RangeSpool(`${t.testdir()}/missing`)
  t.throws(
    () => {
      for (let i = 0; i <= PAIRS; i++) spool.add({ begin: i * 2, end: i * 2 + 1 })
      for (const _ of spool.ranges()) void _
    },
    {
      code: 'EDEVICE',
      message: /cannot create a temporary file for the block list in .*missing: .*ENOENT.*set TMPDIR/,
    },
  )
  spool.close()
  t.end()
})
