import t from 'tap'
import { rechunk, sum, textSink, hex, type DigestSink } from '../../packages/bsum/src/sum.js'
import { loadHash } from '../../packages/core/src/hash.js'
import { BlockpipeError } from '../../packages/core/src/errors.js'
import { randomBytes } from '../lib/data.js'

// bsum's pieces in process: re-cutting standard input, the summing loop and
// the --text sink.

async function collect(pieces: Iterable<Uint8Array>, size: number): Promise<Buffer[]> {
  const out: Buffer[] = []
  for await (const c of rechunk(pieces, size)) out.push(Buffer.from(c))
  return out
}

void t.test('rechunk: pieces of any size become whole chunks, the last short', async (t) => {
  const data = randomBytes(10_000, 1)
  const pieces = [data.subarray(0, 1), data.subarray(1, 4097), data.subarray(4097, 4097), data.subarray(4097)]
  const chunks = await collect(pieces, 4096)
  t.same(
    chunks.map((c) => c.length),
    [4096, 4096, 1808],
  )
  t.ok(Buffer.concat(chunks).equals(data))
  t.same(
    await collect([data.subarray(0, 8192)], 4096).then((c) => c.map((x) => x.length)),
    [4096, 4096],
    'no empty tail',
  )
  t.same(await collect([], 4096), [])
  // Each chunk is a buffer of its own: the consumer may keep it.
  const kept = await collect([Buffer.alloc(4096, 1), Buffer.alloc(4096, 2)], 4096)
  t.equal(kept[0]?.[0], 1)
})

void t.test('sum: digests in order, size checks, progress', async (t) => {
  const hash = await loadHash()
  const seen: string[] = []
  const sink: DigestSink = {
    chunk: (offset, length, digest) => void seen.push(`${offset}+${length}:${hex(digest)}`),
    many: () => void seen.push('many'),
    end: () => void seen.push('end'),
  }
  const a = randomBytes(100, 2)
  const b = randomBytes(30, 3)
  const updates: number[] = []
  const progress = { update: (n: number) => void updates.push(n) } as never
  const total = await sum(hash, [a, b], sink, { blockSize: 100, seed: 9n, size: 130, source: 'x', progress })
  t.equal(total, 130)
  t.same(seen, [`0+100:${hex(hash.digest(a, 9n))}`, `100+30:${hex(hash.digest(b, 9n))}`, 'end'])
  t.same(updates, [100, 130])

  const opts = { blockSize: 100, seed: 0n, source: 'in' }
  await t.rejects(sum(hash, [a, b], sink, { ...opts, size: 120 }), {
    code: 'EINPUT',
    message: 'in is longer than --size 120',
  })
  await t.rejects(
    sum(hash, [a], sink, { ...opts, size: 120 }),
    new BlockpipeError('EINPUT', 'in ended after 100 bytes, not the 120 expected'),
  )
  t.equal(await sum(hash, [a], sink, { ...opts, size: undefined }), 100, 'no size: whatever comes')
})

void t.test('textSink: header with the first line, or with the last if there is none', async (t) => {
  const hash = await loadHash()
  const lines: string[] = []
  const opts = { blockSize: 4096, seed: 3n, size: undefined, source: 'disk' }
  const s = textSink(hash, (l) => void lines.push(l), opts)
  await s.chunk(0, 4096, 0xabcn)
  await s.chunk(4096, 10, 1n)
  await s.end()
  t.match(lines[0], /^# bsum \S+ disk block-size 4096 seed 3\n0 4096 0000000000000abc\n$/)
  t.equal(lines[1], '4096 10 0000000000000001\n')
  const raw = Buffer.alloc(16)
  raw.writeBigUInt64LE(0xabcn, 0)
  raw.writeBigUInt64LE(1n, 8)
  t.equal(lines[2], `# size 4106 image ${hex(hash.digest(raw, 3n))}\n`)

  const empty: string[] = []
  await textSink(hash, (l) => void empty.push(l), opts).end()
  t.match(empty, [/^# bsum \S+ disk block-size 4096 seed 3\n# size 0 image [0-9a-f]{16}\n$/])
})
