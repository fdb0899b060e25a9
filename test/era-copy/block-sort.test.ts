import t from 'tap'
import { BlockSorter } from '../../packages/era-copy/src/block-sort.js'
import { prng } from '../lib/data.js'

function sorted(sorter: BlockSorter): { values: number[]; batches: number } {
  const values: number[] = []
  let batches = 0
  for (const batch of sorter.sorted()) {
    values.push(...batch)
    batches++
  }
  return { values, batches }
}

void t.test('in memory: ascending, each once', (t) => {
  const sorter = new BlockSorter()
  for (const n of [5, 3, 9, 3, 0, 5, 2 ** 40]) sorter.add(n)
  t.same(sorted(sorter).values, [0, 3, 5, 9, 2 ** 40])
  sorter.close()
  const empty = new BlockSorter()
  t.same(sorted(empty), { values: [], batches: 0 })
  empty.close()
  t.end()
})

void t.test('spilled runs merge into one ascending list, duplicates across runs dropped', (t) => {
  const dir = t.testdir()
  // Runs of 1000 numbers, read back 64 at a time.
  const sorter = new BlockSorter(dir, 1000, 64)
  const rnd = prng(9)
  const expected = new Set<number>()
  for (let i = 0; i < 150000; i++) {
    const n = Math.floor(rnd() * 100000)
    expected.add(n)
    sorter.add(n)
  }
  const { values, batches } = sorted(sorter)
  t.same(
    values,
    [...expected].sort((a, b) => a - b),
  )
  t.ok(batches > 1, 'more than one batch')
  sorter.close()
  sorter.close()
  t.end()
})

void t.test('a whole last run spills too; a temporary directory that cannot be used is a clear error', (t) => {
  const sorter = new BlockSorter(t.testdir(), 4, 2)
  for (const n of [8, 7, 6, 5, 4, 3, 2, 1]) sorter.add(n)
  t.same(sorted(sorter).values, [1, 2, 3, 4, 5, 6, 7, 8])
  sorter.close()
  const broken = new BlockSorter(`${t.testdir()}/missing`, 4)
  t.throws(
    () => {
      for (let n = 0; n < 5; n++) broken.add(n)
    },
    {
      code: 'EDEVICE',
      message: /cannot create a temporary file for the chunk list in .*missing: .*ENOENT.*set TMPDIR/,
    },
  )
  broken.close()
  t.end()
})
