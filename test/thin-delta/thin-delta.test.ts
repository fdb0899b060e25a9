import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  mergeRanges,
  readThinDelta,
  thinBlockSize,
  type ThinDeltaInfo,
  type ThinRange,
} from '../../packages/era-copy/src/thin-delta.js'
import { ROOT } from '../lib/run.js'

// The thin_delta reader on output captured from the real thin_delta 0.9.0
// (test/fixtures/thin-delta-*.xml, made from samplePool() in lib.ts), and on
// hand-made variations of it.

const fixture = (name: string): string => readFileSync(join(ROOT, 'test', 'fixtures', name), 'utf8')

/** The text in pieces of `piece` characters. */
async function* pieces(text: string, piece = text.length): AsyncGenerator<string> {
  for (let at = 0; at < text.length; at += piece) yield await Promise.resolve(text.slice(at, at + piece))
}

async function read(text: string, piece?: number): Promise<{ info: ThinDeltaInfo; ranges: ThinRange[] }> {
  const ranges: ThinRange[] = []
  const info = await readThinDelta(pieces(text, piece), (r) => ranges.push(r))
  return { info, ranges }
}

const SAMPLE: ThinRange[] = [
  { kind: 'same', begin: 0, end: 3 },
  { kind: 'different', begin: 3, end: 6 },
  { kind: 'same', begin: 6, end: 8 },
  { kind: 'left_only', begin: 8, end: 10 },
  { kind: 'same', begin: 10, end: 17 },
  { kind: 'different', begin: 17, end: 18 },
  { kind: 'same', begin: 18, end: 20 },
  { kind: 'right_only', begin: 24, end: 27 },
  { kind: 'left_only', begin: 30, end: 32 },
  { kind: 'right_only', begin: 40, end: 42 },
  { kind: 'different', begin: 47, end: 48 },
]

/** Adjacent ranges of one kind as one (--verbose splits them where the pool blocks are not adjacent). */
function coalesce(ranges: ThinRange[]): ThinRange[] {
  const out: ThinRange[] = []
  for (const r of ranges) {
    const last = out[out.length - 1]
    if (last !== undefined && last.kind === r.kind && last.end === r.begin) last.end = r.end
    else out.push({ ...r })
  }
  return out
}

void t.test('plain and --verbose output give the same ranges, in any pieces', async (t) => {
  for (const name of ['thin-delta-plain.xml', 'thin-delta-verbose.xml']) {
    const text = fixture(name)
    for (const piece of [undefined, 1, 7, 100]) {
      const { info, ranges } = await read(text, piece)
      t.same(info, { blockSectors: 128, left: '1', right: '2' }, `${name} in pieces of ${piece}`)
      t.same(coalesce(ranges), SAMPLE, `${name} in pieces of ${piece}`)
    }
  }
  // --verbose gives a range per run of adjacent pool blocks: 40 and 41 map to 340 and 400.
  const { ranges } = await read(fixture('thin-delta-verbose.xml'))
  t.same(
    ranges.filter((r) => r.begin >= 40 && r.end <= 42),
    [
      { kind: 'right_only', begin: 40, end: 41 },
      { kind: 'right_only', begin: 41, end: 42 },
    ],
  )
})

void t.test('a verbose kind element may hold several ranges, or none', async (t) => {
  const { ranges } = await read(
    '<superblock data_block_size="8"><diff left="3" right="4">\n' +
      '<different>\n<range begin="1" left_data_begin="9" right_data_begin="20" length="1"/>\n' +
      '<range begin="2" left_data_begin="11" right_data_begin="21" length="2"/>\n</different>\n' +
      '<same></same>\n<left_only><range begin="7" data_begin="3" length="1"/></left_only>\n' +
      '</diff></superblock>',
  )
  t.same(ranges, [
    { kind: 'different', begin: 1, end: 2 },
    { kind: 'different', begin: 2, end: 4 },
    { kind: 'left_only', begin: 7, end: 8 },
  ])
})

void t.test('without data_block_size the block size is unknown; spaces around = are XML', async (t) => {
  const { info, ranges } = await read(
    '<superblock uuid=""><diff left = "1" right = "2"><right_only begin = "5" length = "2"/></diff></superblock>',
  )
  t.same(info, { blockSectors: undefined, left: '1', right: '2' })
  t.same(ranges, [{ kind: 'right_only', begin: 5, end: 7 }])
  const bare = await read('<superblock><diff/></superblock>')
  t.same(bare.info, { blockSectors: undefined, left: undefined, right: undefined })
  t.same(bare.ranges, [])
})

void t.test('what is not thin_delta output is refused, saying what it looks like', async (t) => {
  const wrap = (body: string): string =>
    `<superblock data_block_size="128"><diff left="1" right="2">${body}</diff></superblock>`
  const cases: [string, RegExp][] = [
    [
      '<blocks><range begin="0" end="3"/></blocks>',
      /expected <superblock>, found <blocks>: this is era_invalidate output: leave out --thin-delta/,
    ],
    ['<foo/>', /expected <superblock>, found <foo>: era-copy --thin-delta reads the output of thin_delta/],
    [
      '<superblock><device dev_id="1"/></superblock>',
      /unexpected <device> in thin_delta output: this looks like thin_dump output/,
    ],
    [
      '<superblock block_size="8"><era_array/></superblock>',
      /unexpected <era_array> in thin_delta output: this looks like era_dump output/,
    ],
    ['<superblock><writeset/></superblock>', /unexpected <writeset> .*era_dump/],
    ['<superblock><other/></superblock>', /line 1: unexpected <other> in thin_delta output$/],
    ['<superblock><diff/><diff/></superblock>', /a second <diff>: thin_delta prints one/],
    ['<superblock></superblock>', /no <diff> in the thin_delta output/],
    [wrap('<moved begin="1" length="1"/>'), /unexpected <moved>/],
    [wrap('<range begin="1" length="1"/>'), /unexpected <range>/],
    [wrap('<same begin="1" length="1"><range begin="2" length="1"/></same>'), /unexpected <range>/],
    [wrap('<same><range begin="2" length="1"><range begin="3" length="1"/></range></same>'), /unexpected <range>/],
    [wrap('<same begin="1" length="0"/>'), /<same begin="1" length="0">: an empty range/],
    [wrap('<same begin="1"/>'), /<same> lacks its length attribute/],
    [wrap('<different begin="x" length="1"/>'), /<different begin="x">: not a block number/],
    [
      wrap('<same begin="4" length="2"/><different begin="5" length="1"/>'),
      /block 5 comes after block 5: thin_delta lists ranges in ascending order/,
    ],
    [wrap('<same begin="9007199254740990" length="9"/>'), /the range is too long/],
    ['<superblock data_block_size="7"><diff/></superblock>', /data_block_size="7">: not a thin pool block size/],
    ['<superblock data_block_size="0"><diff/></superblock>', /not a thin pool block size/],
    ['<superblock data_block_size="4194304"><diff/></superblock>', /not a thin pool block size/],
    ['<superblock data_block_size="big"><diff/></superblock>', /data_block_size="big">: not a block number/],
  ]
  for (const [xml, message] of cases) {
    await t.rejects(read(xml), { code: 'EINPUT', message }, xml)
  }
})

void t.test('the block size: data_block_size, or -b when the XML has none; both must agree', (t) => {
  const info = (blockSectors?: number): ThinDeltaInfo => ({ blockSectors, left: '1', right: '2' })
  t.equal(thinBlockSize(info(128), undefined), 65536)
  t.equal(thinBlockSize(info(128), 65536), 65536)
  t.equal(thinBlockSize(info(undefined), 131072), 131072)
  t.throws(() => thinBlockSize(info(128), 32768), {
    code: 'EUSAGE',
    message:
      "--block-size of 32768 bytes differs from the pool's data_block_size of 128 sectors (65536 bytes) in the" +
      ' thin_delta output: leave --block-size out',
  })
  t.throws(() => thinBlockSize(info(undefined), undefined), {
    code: 'EUSAGE',
    message: /gives no data_block_size: give the pool's block size with --block-size/,
  })
  t.throws(() => thinBlockSize(info(undefined), undefined, '-b'), { message: /with -b$/ })
  t.end()
})

void t.test('two ordered lists of ranges merge into one, in order, across batches', (t) => {
  const r = (begin: number, end: number): { begin: number; end: number } => ({ begin, end })
  const merged = [...mergeRanges([[r(0, 2), r(5, 6)], [], [r(9, 12)]], [[r(2, 4)], [r(7, 8), r(12, 13)]])]
  t.same(merged, [
    { range: r(0, 2), second: false },
    { range: r(2, 4), second: true },
    { range: r(5, 6), second: false },
    { range: r(7, 8), second: true },
    { range: r(9, 12), second: false },
    { range: r(12, 13), second: true },
  ])
  t.same([...mergeRanges([], [[r(1, 2)]])], [{ range: r(1, 2), second: true }])
  t.same([...mergeRanges([[r(1, 2)]], [])], [{ range: r(1, 2), second: false }])
  t.same([...mergeRanges([], [])], [])
  t.end()
})
