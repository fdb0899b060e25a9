import t from 'tap'
import { eraInvalidateRanges, type BlockRange } from '../../packages/era-copy/src/era-invalidate.js'
import { XmlInputError } from '../../packages/era-copy/src/xml-events.js'

async function* pieces(parts: (string | Buffer)[]): AsyncGenerator<string | Buffer> {
  for (const p of parts) {
    await Promise.resolve() // as from a pipe: each piece in a turn of its own
    yield p
  }
}

interface Outcome {
  ranges: BlockRange[]
  batches: number
  error?: string
}

async function ranges(parts: (string | Buffer)[]): Promise<Outcome> {
  const out: Outcome = { ranges: [], batches: 0 }
  try {
    for await (const batch of eraInvalidateRanges(pieces(parts))) {
      if (batch.length === 0) throw new Error('an empty batch')
      out.batches++
      out.ranges.push(...batch)
    }
  } catch (err) {
    if (!(err instanceof XmlInputError)) throw err
    out.error = err.message
  }
  return out
}

const r = (begin: number, end: number): BlockRange => ({ begin, end })

// Byte for byte what thin-provisioning-tools 0.9.0 (Debian 12) prints.
const V09 =
  '<blocks>\n  <range begin="0" end = "2"/>\n  <block block="3"/>\n  <range begin="5" end = "8"/>\n</blocks>\n'
// What 1.x (Rust) prints: no spaces around =, no newline at the end.
const V1X = '<blocks>\n  <range begin="0" end="2"/>\n  <block block="3"/>\n  <range begin="5" end="8"/>\n</blocks>'
const EXPECTED = [r(0, 2), r(3, 4), r(5, 8)]

void t.test('both dialects', async (t) => {
  t.strictSame(await ranges([V09]), { ranges: EXPECTED, batches: 1 }, '0.9: end = "N", trailing newline')
  t.strictSame(await ranges([V1X]), { ranges: EXPECTED, batches: 1 }, '1.x: end="N", no trailing newline')
  t.strictSame(
    await ranges(['<?xml version="1.0"?>\n<blocks>\r\n\t<range\n begin = "7"\n end=\'9\' />\r\n</blocks>\r\n']),
    { ranges: [r(7, 9)], batches: 1 },
    'any XML whitespace and quotes',
  )
})

void t.test('cut anywhere, the same ranges', async (t) => {
  for (const doc of [V09, V1X]) {
    for (let i = 0; i <= doc.length; i++) {
      const got = await ranges([doc.slice(0, i), doc.slice(i)])
      if (!t.strictSame(got.ranges, EXPECTED, `cut at ${i}`) || got.error !== undefined) return
    }
  }
})

void t.test('an empty list is no ranges, not an error', async (t) => {
  for (const doc of ['<blocks>\n</blocks>\n', '<blocks>\n</blocks>', '<blocks/>', '<blocks></blocks>\n']) {
    t.strictSame(await ranges([doc]), { ranges: [], batches: 0 }, JSON.stringify(doc))
  }
})

void t.test('<block block="N"/> is the one-block range [N, N+1)', async (t) => {
  t.strictSame((await ranges(['<blocks><block block="0"/><block block="1"/><block block="9"/></blocks>'])).ranges, [
    r(0, 1),
    r(1, 2),
    r(9, 10),
  ])
  t.strictSame((await ranges(['<blocks><block block="9007199254740990"/></blocks>'])).ranges, [
    r(9007199254740990, 9007199254740991),
  ])
})

void t.test('big lists come in several batches, in order', async (t) => {
  const parts = ['<blocks>\n']
  for (let i = 0; i < 3000; i++) parts.push(`  <range begin="${i * 3}" end = "${i * 3 + 2}"/>\n`)
  parts.push('</blocks>\n')
  const got = await ranges(parts)
  t.equal(got.ranges.length, 3000)
  t.equal(got.batches, 3000)
  t.strictSame(got.ranges[2999], r(8997, 8999))
  t.ok(
    got.ranges.every((x, i) => x.begin === i * 3 && x.end === i * 3 + 2),
    'every range, in order',
  )
})

void t.test('the wrong document says what it looks like', async (t) => {
  const eraDump = '<superblock uuid="" block_size="128" nr_blocks="16" current_era="5">\n</superblock>\n'
  const thinDelta =
    '<superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">\n' +
    '  <diff left="1" right="2">\n    <different begin="2" length="2"/>\n  </diff>\n</superblock>\n'
  for (const doc of [eraDump, thinDelta]) {
    t.equal(
      (await ranges([doc])).error,
      'line 1: expected <blocks>, found <superblock>: this looks like era_dump or thin_delta output; era-copy reads' +
        ' era_invalidate output (use --thin-delta for thin_delta)',
    )
  }
  t.equal(
    (await ranges(['<?xml version="1.0"?>\n<ranges/>'])).error,
    'line 2: expected <blocks>, found <ranges>: era-copy reads the output of era_invalidate',
  )
})

void t.test('bad block numbers', async (t) => {
  const bad: [string, string][] = [
    ['<range begin="-1" end="3"/>', 'line 2: <range begin="-1">: not a block number'],
    ['<range begin="1.5" end="3"/>', 'line 2: <range begin="1.5">: not a block number'],
    ['<range begin="0x10" end="30"/>', 'line 2: <range begin="0x10">: not a block number'],
    ['<range begin="" end="3"/>', 'line 2: <range begin="">: not a block number'],
    ['<range begin="1e3" end="3000"/>', 'line 2: <range begin="1e3">: not a block number'],
    ['<range begin="0" end="three"/>', 'line 2: <range end="three">: not a block number'],
    ['<range begin="0" end="9007199254740993"/>', 'line 2: <range end="9007199254740993">: not a block number'],
    ['<block block="NaN"/>', 'line 2: <block block="NaN">: not a block number'],
    ['<range end="3"/>', 'line 2: <range> lacks its begin attribute'],
    ['<range begin="3"/>', 'line 2: <range> lacks its end attribute'],
    ['<block/>', 'line 2: <block> lacks its block attribute'],
    ['<block blocks="3"/>', 'line 2: <block> lacks its block attribute'],
    ['<block block/>', "line 2: malformed XML: boolean attribute 'block' is not allowed."],
  ]
  for (const [element, message] of bad) {
    t.equal((await ranges([`<blocks>\n${element}\n</blocks>\n`])).error, message, element)
  }
})

void t.test('empty, reversed and unordered ranges are refused', async (t) => {
  const bad: [string, string][] = [
    ['<range begin="3" end="3"/>', 'line 2: <range begin="3" end="3">: end must be after begin'],
    ['<range begin="5" end="2"/>', 'line 2: <range begin="5" end="2">: end must be after begin'],
    [
      '<range begin="4" end="6"/>\n<range begin="0" end="2"/>',
      'line 3: block 0 comes after block 5: era_invalidate lists blocks in ascending order, without overlaps',
    ],
    [
      '<range begin="0" end="6"/>\n<range begin="5" end="9"/>',
      'line 3: block 5 comes after block 5: era_invalidate lists blocks in ascending order, without overlaps',
    ],
    [
      '<block block="7"/>\n<block block="7"/>',
      'line 3: block 7 comes after block 7: era_invalidate lists blocks in ascending order, without overlaps',
    ],
  ]
  for (const [elements, message] of bad) {
    t.equal((await ranges([`<blocks>\n${elements}\n</blocks>\n`])).error, message, elements)
  }
  // Touching is not overlapping.
  t.strictSame((await ranges(['<blocks><range begin="0" end="3"/><block block="3"/></blocks>'])).ranges, [
    r(0, 3),
    r(3, 4),
  ])
})

void t.test('anything but ranges and blocks inside <blocks> is refused', async (t) => {
  const bad: [string, string][] = [
    ['<blocks>\n<era block="1"/>\n</blocks>', 'line 2: unexpected <era> in era_invalidate output'],
    ['<blocks>\n<blocks/>\n</blocks>', 'line 2: unexpected <blocks> in era_invalidate output'],
    [
      '<blocks>\n<range begin="0" end="1">\n<block block="4"/>\n</range>\n</blocks>',
      'line 3: unexpected <block> in era_invalidate output',
    ],
  ]
  for (const [doc, message] of bad) t.equal((await ranges([doc])).error, message)
})

void t.test('a cut list is an error, not a shorter list', async (t) => {
  const cut = V09.slice(0, V09.indexOf('<range begin="5"'))
  const got = await ranges([cut])
  t.strictSame(got.ranges, [r(0, 2), r(3, 4)], 'what came before the cut was read')
  t.match(got.error, /<blocks> is never closed \(was the XML cut off\?\)/)
  t.match((await ranges([''])).error, /empty input/)
})
