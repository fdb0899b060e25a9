import { existsSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { applyStream, type ApplyOptions } from '../../packages/core/src/apply.js'
import { DigestReader } from '../../packages/core/src/digests.js'
import { BlockpipeError } from '../../packages/core/src/errors.js'
import { StreamParser } from '../../packages/core/src/parse.js'
import { StreamReader } from '../../packages/core/src/read.js'
import { prng, randomBytes } from '../lib/data.js'
import {
  blockStream,
  deltaStream,
  digestStream,
  fullStream,
  hash,
  runTool,
  snapshot,
  tempDir,
  testSeed,
} from '../safety/lib.js'
import { int, mutate, pick, type Rand } from './mutate.js'

// Seeded random mutations of valid block, delta, digest and undo streams,
// fed to the parser, the digest reader and the apply engine in process (fast),
// and a few to the binaries. Whatever the input: only BlockpipeErrors, a
// bounded time per case, nothing written outside the target's declared size,
// a target left as it was when --spool refused the stream, bounded memory.
// `npm run fuzz` runs many more cases (BLOCKPIPE_FUZZ_CASES).

const CASES = Number(process.env.BLOCKPIPE_FUZZ_CASES) || 300
const BINARY_CASES = Number(process.env.BLOCKPIPE_FUZZ_BINARY_CASES) || 12
/** No case may take longer: a loop that does not end shows here (or as the test's timeout). */
const CASE_MS = 5000
/** Memory a case may add: one record's payload is bounded by 16 MiB; allow a few of them and the GC's slack. */
const MEMORY_BOUND = 160 * 1024 * 1024
if (CASES > 1000) t.setTimeout(0)

interface Sample {
  name: string
  stream: Buffer
  /** What the stream applies to. */
  base: Buffer
}

async function corpus(dir: string): Promise<Sample[]> {
  const B = 4096
  const oldImage = Buffer.concat([randomBytes(20_000, 1), Buffer.alloc(8192), randomBytes(3000, 2)])
  const newImage = Buffer.from(oldImage.subarray(0, 24_000))
  randomBytes(5000, 3).copy(newImage, 4096)
  newImage.fill(0, 16_384, 20_480)
  const grown = Buffer.concat([newImage, randomBytes(9000, 4)])
  const changed: [number, number][] = []
  for (let at = 0; at < grown.length; at += B) {
    if (!grown.subarray(at, at + B).equals(oldImage.subarray(at, at + B)))
      changed.push([at, Math.min(B, grown.length - at)])
  }
  const target = join(dir, 'journaled')
  writeFileSync(target, oldImage)
  const full = await fullStream(newImage, 2048)
  await applyStream([full], { program: 'era-apply', target, undo: join(dir, 'journal') })
  const journal = readFileSync(join(dir, 'journal'))
  return [
    {
      name: 'incremental block',
      stream: await blockStream(grown, changed, { metadata: { 'written-since': '7' } }),
      base: oldImage,
    },
    { name: 'full block', stream: full, base: oldImage },
    { name: 'delta (grow)', stream: await deltaStream(oldImage, grown, B), base: oldImage },
    { name: 'delta (shrink)', stream: await deltaStream(oldImage, newImage.subarray(0, 10_000), 1024), base: oldImage },
    { name: 'digest', stream: await digestStream(oldImage, 1024), base: oldImage },
    { name: 'undo', stream: journal, base: newImage },
    { name: 'undo, unfinished', stream: journal.subarray(0, journal.length - 96), base: newImage },
  ]
}

/** Feeds the parser in random pieces; returns the header size if the header was read. */
function parseAll(bytes: Buffer, rand: Rand): number | undefined {
  const parser = new StreamParser(hash)
  try {
    for (let at = 0; at < bytes.length;) {
      const n = 1 + int(rand, rand() < 0.3 ? 8 : 5000)
      parser.push(bytes.subarray(at, at + n))
      at += n
      while (parser.next() !== null);
    }
    parser.finish()
  } catch (err) {
    if (!(err instanceof BlockpipeError)) throw err
  }
  return parser.header?.size
}

/** What bdiff does with a digest stream: every chunk's digest, then the rest. */
async function readDigests(bytes: Buffer): Promise<void> {
  try {
    const reader = new DigestReader(await StreamReader.open([bytes], hash))
    const chunks = Math.ceil(Math.min(reader.header.size, 1 << 20) / reader.header.blockSize)
    await reader.fill(Buffer.alloc(chunks * 8))
    await reader.finish()
  } catch (err) {
    if (!(err instanceof BlockpipeError)) throw err
  }
}

void t.test(`${CASES} mutated streams in process`, async (t) => {
  const seed = testSeed('fuzz')
  const rand = prng(seed)
  const dir = tempDir(t, 'fuzz')
  const samples = await corpus(dir)
  const failures: string[] = []
  const counts = { ok: 0, refused: 0 }
  global.gc?.()
  const baseline = process.memoryUsage()
  let peak = 0
  for (let i = 0; i < CASES; i++) {
    const sample = pick(rand, samples)
    const other = pick(rand, samples).stream
    const { bytes, how } = mutate(sample.stream, rand, other)
    const label = `case ${i} (seed ${seed}): ${sample.name}, ${how.join(' + ')}, ${bytes.length} bytes`
    const started = Date.now()
    try {
      const declared = parseAll(bytes, rand)
      if (sample.name === 'digest') await readDigests(bytes)
      // Applied to a target holding what the stream was made for.
      const target = join(dir, 'target')
      writeFileSync(target, sample.base)
      const before = snapshot(target)
      const undo = join(dir, 'undo')
      rmSync(undo, { force: true })
      const options: ApplyOptions = {
        program: rand() < 0.5 ? 'era-apply' : 'bpatch',
        target,
        force: rand() < 0.2,
        spool: rand() < 0.3 ? dir : undefined,
        undo: rand() < 0.3 ? undo : undefined,
      }
      try {
        await applyStream([bytes], options)
        counts.ok++
      } catch (err) {
        if (!(err instanceof BlockpipeError)) throw err
        counts.refused++
        if (options.spool !== undefined && err.code !== 'EUSAGE') {
          const after = snapshot(target)
          if (!after?.bytes.equals(before!.bytes)) failures.push(`${label}: --spool refused it but the target changed`)
        }
      }
      const size = existsSync(target) ? statSync(target).size : 0
      const limit = Math.max(sample.base.length, declared ?? 0)
      if (size > limit) failures.push(`${label}: the target grew to ${size}, beyond ${limit}`)
      if (declared === undefined && !snapshot(target)?.bytes.equals(before!.bytes)) {
        failures.push(`${label}: no header, yet the target changed`)
      }
    } catch (err) {
      failures.push(`${label}: crashed: ${(err as Error).stack}`)
    }
    const ms = Date.now() - started
    if (ms > CASE_MS) failures.push(`${label}: took ${ms} ms`)
    const mem = process.memoryUsage()
    // Resident memory only: Node's arrayBuffers counter was seen to wrap
    // (2^32 minus a few hundred KiB above its baseline, with RSS up 12 MB).
    peak = Math.max(peak, mem.rss - baseline.rss)
    if (failures.length > 20) break
  }
  t.same(failures, [], `${CASES} cases: ${counts.ok} applied, ${counts.refused} refused`)
  t.ok(peak < MEMORY_BOUND, `memory grew by at most ${Math.round(peak / 1048576)} MiB`)
  t.ok(counts.refused > 0 && counts.ok > 0, 'both accepted and refused streams were met')
})

void t.test(`${BINARY_CASES} mutated streams through the binaries`, async (t) => {
  const seed = testSeed('fuzz, binaries')
  const rand = prng(seed)
  const dir = tempDir(t, 'fuzz')
  const samples = await corpus(dir)
  const failures: string[] = []
  for (let i = 0; i < BINARY_CASES; i++) {
    const sample = samples[i % samples.length] as Sample
    const { bytes, how } = mutate(sample.stream, rand, pick(rand, samples).stream)
    const label = `case ${i} (seed ${seed}): ${sample.name}, ${how.join(' + ')}`
    const target = join(dir, `target-${i}`)
    writeFileSync(target, sample.base)
    const before = snapshot(target)
    const started = Date.now()
    let r
    if (sample.name === 'digest') {
      r = await runTool('bdiff', [target], { input: bytes, cover: i < 7 })
    } else {
      const spool = i % 2 === 0 ? ['--spool', dir] : []
      r = await runTool(i % 4 < 2 ? 'bpatch' : 'era-apply', [...spool, target], { input: bytes, cover: i < 7 })
      if (spool.length > 0 && r.status !== 0 && !snapshot(target)?.bytes.equals(before!.bytes)) {
        failures.push(`${label}: --spool refused it but the target changed`)
      }
    }
    if (r.status === null || r.status > 3) failures.push(`${label}: status ${r.status} ${r.signal}`)
    if (/internal error|^\s+at /m.test(r.stderr)) failures.push(`${label}: ${r.stderr}`)
    if (r.status !== 0 && !/^(era-apply|bpatch|bdiff): /.test(r.stderr))
      failures.push(`${label}: no message: ${r.stderr}`)
    if (Date.now() - started > 60_000) failures.push(`${label}: took ${Date.now() - started} ms`)
  }
  t.same(failures, [])
})

void t.test('a stream that never ends is not waited for forever once it is refused', async (t) => {
  // A header and then garbage where a record header should be: refused at once.
  const dir = tempDir(t, 'fuzz')
  const samples = await corpus(dir)
  const stream = (samples[1] as Sample).stream
  const target = join(dir, 'target')
  writeFileSync(target, (samples[1] as Sample).base)
  let fed = 0
  async function* endless(): AsyncGenerator<Buffer> {
    yield stream.subarray(0, 56)
    for (;;) {
      fed++
      if (fed > 10_000) return
      yield Buffer.from('garbage and more garbage')
      await Promise.resolve()
    }
  }
  await t.rejects(applyStream(endless(), { program: 'era-apply', target }), { code: 'EBADSTREAM' })
  t.ok(fed < 10, `stopped reading after ${fed} more pieces`)
})
