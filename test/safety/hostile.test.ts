import { existsSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { HEADER_SIZE, RECORD_HEADER_SIZE } from '../../packages/core/src/format.js'
import { randomBytes } from '../lib/data.js'
import { layout, reseal, setField } from '../fuzz/mutate.js'
import { blockStream, deltaStream, digestStream, pool, runTool, snapshot, tempDir } from './lib.js'

// Streams crafted to break one rule each, with every checksum right (a
// hostile sender computes them too), through the real binaries: each is
// refused with exit 1 and a message that says what is wrong, before anything
// is written.

const B = 4096
const oldImage = randomBytes(8 * B, 1)
const newImage = Buffer.from(oldImage)
randomBytes(B, 2).copy(newImage, B)
randomBytes(B, 3).copy(newImage, 5 * B)

const block = await blockStream(newImage, [
  [B, B],
  [5 * B, B],
])
const delta = await deltaStream(oldImage, newImage, B)
const digests = await digestStream(oldImage, B)

/** A copy of `stream` with a header field set, checksums made right. */
function header(stream: Buffer, at: number, width: 2 | 4 | 8, value: bigint): Buffer {
  const out = Buffer.from(stream)
  setField(out, at, width, value)
  return reseal(out)
}

/** A copy of `stream` with a field of record `n` set, checksums made right. */
function record(stream: Buffer, n: number, at: number, width: 2 | 4 | 8, value: bigint): Buffer {
  const out = Buffer.from(stream)
  setField(out, (layout(out).records[n] as [number, number])[0] + at, width, value)
  return reseal(out)
}

/** The records of `stream` in another order, checksums made right. */
function swapped(stream: Buffer): Buffer {
  const { header: h, records } = layout(stream)
  const [a, b, ...rest] = records.map(([s, e]) => stream.subarray(s, e))
  return reseal(Buffer.concat([stream.subarray(0, h), b as Buffer, a as Buffer, ...rest]))
}

interface Hostile {
  what: string
  stream: Buffer
  message: RegExp
  programs: ('era-apply' | 'bpatch' | 'bdiff')[]
  /** Refused only after a record was applied: without --spool the target is incomplete. */
  late?: boolean
}

const SIZE = 16
const OFFSET = 8
const LENGTH = 16
const PAYLOAD = 24

const CASES: Hostile[] = [
  {
    what: 'bad magic: gzip data',
    stream: Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3]),
    message: /bad magic.*gzip-compressed data: add gunzip/,
    programs: ['era-apply', 'bpatch', 'bdiff'],
  },
  {
    what: 'bad magic: text',
    stream: Buffer.from('hello, this is not a stream at all, but it is long enough for a header...'),
    message: /bad magic at the start of the stream: not a blockpipe stream/,
    programs: ['era-apply', 'bpatch', 'bdiff'],
  },
  {
    what: 'a newer format version',
    stream: header(block, 8, 2, 2n),
    message: /stream format version 2 is newer than this program reads \(1\): upgrade blockpipe/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'format version 0',
    stream: header(delta, 8, 2, 0n),
    message: /unknown stream format version 0/,
    programs: ['bpatch'],
  },
  {
    what: 'a block size of zero',
    stream: header(block, 32, 4, 0n),
    message: /block size 0 is not a multiple of 512/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'a digest stream with a block size of zero',
    stream: header(digests, 32, 4, 0n),
    message: /block size 0 is not a multiple of 512/,
    programs: ['bdiff'],
  },
  {
    what: 'an image size beyond 2^53',
    stream: header(block, SIZE, 8, 2n ** 64n - 1n),
    message: /image size 18446744073709551615 is beyond 2\^53 bytes/,
    programs: ['era-apply'],
  },
  {
    what: 'metadata longer than the bound',
    stream: header(block, 38, 2, 65535n),
    message: /header metadata of 65535 bytes exceeds the limit of 4096/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'a record length above the bound',
    stream: record(block, 0, LENGTH, 8, 16n * 1024n * 1024n + 1n),
    message: /record 0 at byte \d+: record length 16777217 exceeds the format's limit of 16777216/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'a payload length that disagrees with the record length',
    stream: record(block, 0, PAYLOAD, 4, 2n ** 32n - 1n),
    message: /DATA record of 4096 bytes declares a payload of 4294967295/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'an offset beyond the image size',
    stream: record(block, 0, OFFSET, 8, BigInt(newImage.length)),
    message: /bytes 32768\.\.36864 lie beyond the image size 32768/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'an offset plus length beyond the image size',
    stream: record(block, 0, OFFSET, 8, BigInt(newImage.length - 100)),
    message: /bytes 32668\.\.36764 lie beyond the image size 32768/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'an offset that overflows 64 bits with its length',
    stream: record(block, 0, OFFSET, 8, 2n ** 64n - 100n),
    message: /offset 18446744073709551516 or length 4096 is beyond 2\^53 bytes/,
    programs: ['era-apply', 'bpatch'],
  },
  {
    what: 'a length beyond 2^53',
    stream: record(delta, 0, LENGTH, 8, 2n ** 63n),
    message: /offset 4096 or length 9223372036854775808 is beyond 2\^53 bytes/,
    programs: ['bpatch'],
  },
  {
    what: 'records out of order',
    stream: swapped(block),
    message: /record 1 at byte \d+: offset 4096 comes before the end of the previous record \(24576\): out of order/,
    programs: ['era-apply', 'bpatch'],
    late: true,
  },
  {
    what: 'a delta record that is not one chunk',
    stream: record(delta, 0, OFFSET, 8, 4096n + 512n),
    message: /a delta record must cover exactly one 4096-byte chunk, not 4608\+4096/,
    programs: ['bpatch'],
  },
  {
    what: 'a digest record whose digests disagree with the block size',
    stream: record(digests, 0, LENGTH, 8, BigInt(oldImage.length * 2)),
    message: /digest record of 65536 bytes carries 64 bytes of digests/,
    programs: ['bdiff'],
  },
  {
    what: 'a digest stream whose size disagrees with its digests',
    stream: header(digests, SIZE, 8, BigInt(oldImage.length * 2)),
    message:
      /the digest stream covers 32768 of 65536 bytes, it should cover them all|it counts 32768 image size, the stream held 65536/,
    programs: ['bdiff'],
  },
  {
    what: 'a digest stream whose end record disagrees',
    stream: record(digests, 1, RECORD_HEADER_SIZE, 8, 5n),
    message: /end record at byte \d+: it counts 5 records, the stream held 1/,
    programs: ['bdiff'],
  },
]

void t.test('hostile streams are refused with exit 1, a clear message, and nothing written', async (t) => {
  const dir = tempDir(t, 'hostile')
  t.ok(HEADER_SIZE === 56)
  const runs = CASES.flatMap((c) => c.programs.map((program, i) => ({ c, program, spool: i % 2 === 0 })))
  const failures: string[] = []
  await pool(runs, availableParallelism(), async ({ c, program, spool }, n) => {
    const target = join(dir, `target-${n}`)
    writeFileSync(target, oldImage)
    const before = snapshot(target)
    const args = program === 'bdiff' ? [target] : [...(spool ? ['--spool', dir] : []), target]
    const r = await runTool(program, args, { input: c.stream, cover: n % 3 === 0 })
    const label = `${c.what}, ${program}${spool && program !== 'bdiff' ? ' --spool' : ''}`
    if (r.status !== 1) failures.push(`${label}: exit ${r.status}: ${r.stderr}`)
    if (!c.message.test(r.stderr)) failures.push(`${label}: message ${r.stderr}`)
    if (!r.stderr.startsWith(`${program}: `)) failures.push(`${label}: unprefixed message ${r.stderr}`)
    if (program === 'bdiff') return
    const after = snapshot(target)
    if (c.late === true && !spool) {
      if (!r.stderr.includes(`${target} is incomplete`)) failures.push(`${label}: ${r.stderr}`)
    } else if (!after?.bytes.equals(before!.bytes) || after.mtimeNs !== before!.mtimeNs) {
      failures.push(`${label}: the target changed`)
    } else if (!r.stderr.includes(`nothing was written to ${target}`)) {
      failures.push(`${label}: does not say that nothing was written: ${r.stderr}`)
    }
  })
  t.same(failures, [], `${runs.length} runs`)
})

void t.test('a hostile stream for a target that does not exist creates nothing', async (t) => {
  const dir = tempDir(t, 'hostile')
  const full = await blockStream(newImage, [[0, newImage.length]], { full: true })
  for (const [what, stream] of [
    ['an offset beyond the size', record(full, 0, OFFSET, 8, BigInt(newImage.length))],
    ['a record length above the bound', record(full, 0, LENGTH, 8, 2n ** 32n)],
  ] as const) {
    for (const spool of [[], ['--spool', dir]]) {
      const target = join(dir, 'new')
      const r = await runTool('era-apply', [...spool, target], { input: stream, cover: false })
      t.equal(r.status, 1, `${what}: ${r.stderr}`)
      t.notOk(existsSync(target), `${what}: no target created`)
    }
  }
})
