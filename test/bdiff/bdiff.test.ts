import { spawn } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { StreamKind, encodeHeader } from '../../packages/core/src/format.js'
import { loadHash } from '../../packages/core/src/hash.js'
import { StreamParser } from '../../packages/core/src/parse.js'
import { randomBytes } from '../lib/data.js'
import { binPath, run, sh } from '../lib/run.js'
import { K64, changed, chunkDigests, parseStream, put, same, summary } from '../integration/bsync-lib.js'

// bdiff reads the digest stream as it arrives, refuses one that is not a
// valid digest stream, and --digests-out gives tomorrow's input.

/** Whole records in what a stream has produced so far. */
function recordsIn(bytes: Buffer, parser: StreamParser): number {
  parser.push(bytes)
  let n = 0
  for (let item = parser.next(); item !== null; item = parser.next()) if (item.type === 'record') n++
  return n
}

void t.test('records come out before the digest stream has ended', async (t) => {
  const dir = t.testdir()
  const K4 = 4096
  const old = randomBytes(10_000 * K4, 1)
  const neu = changed(changed(old, 5, 1, 2), 9000 * K4, 1, 3)
  const sums = (await run('bsum', ['-b', '4K', put(join(dir, 'old'), old)])).stdout
  const parsed = await parseStream(sums)
  t.equal(parsed.records.length, 2, 'two SUMS records, of 8192 digests and the rest')
  const firstRecordEnd = parsed.records[1]?.position as number

  const child = spawn(process.execPath, [binPath('bdiff'), put(join(dir, 'new'), neu)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  })
  const closed = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
  const out: Buffer[] = []
  const parser = new StreamParser(await loadHash())
  let records = 0
  let sawFirst: () => void = () => {}
  const first = new Promise<void>((resolve) => (sawFirst = resolve))
  child.stdout.on('data', (b: Buffer) => {
    out.push(b)
    records += recordsIn(b, parser)
    if (records > 0) sawFirst()
  })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  child.stdin.write(sums.subarray(0, firstRecordEnd))
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), 30_000)))
  const got = await Promise.race([first.then(() => 'record' as const), timeout])
  clearTimeout(timer)
  t.equal(got, 'record', 'a delta record came out while the digest stream was still open')
  t.equal(child.exitCode, null, 'bdiff is still waiting for the rest')
  child.stdin.end(sums.subarray(firstRecordEnd))
  t.equal(await closed, 0, stderr)
  const d = await parseStream(Buffer.concat(out))
  t.same(summary(d.records), [`DATA 0+${K4} base ${K4}`, `DATA ${9000 * K4}+${K4} base ${K4}`])
})

void t.test('--digests-out: the digest stream bsum would give, and tomorrow’s input', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(20 * 8192 + 100, 4)
  const day1 = changed(old, 3 * 8192, 50, 5)
  put(join(dir, 'target'), old)
  put(join(dir, 'source'), day1)
  let r = await sh('bsum --seed 99 -b 8K target | bdiff --digests-out day1.sum source | bpatch target', { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.ok(same(join(dir, 'target'), day1))
  const mine = await parseStream(readFileSync(join(dir, 'day1.sum')))
  const ref = await parseStream((await run('bsum', ['--seed', '99', '-b', '8K', join(dir, 'source')])).stdout)
  t.equal(mine.header.kind, StreamKind.DIGEST)
  for (const field of ['size', 'blockSize', 'seed', 'flags', 'baseSize'] as const) {
    t.equal(mine.header[field], ref.header[field], `header ${field}`)
  }
  t.same(summary(mine.records), summary(ref.records))
  t.ok(Buffer.concat(mine.records.map((x) => x.payload)).equals(Buffer.concat(ref.records.map((x) => x.payload))))
  t.same(mine.end, ref.end, 'same end record: counts and image digest')
  t.equal(mine.end.imageDigest, (await chunkDigests(day1, 8192, 99n)).image)
  t.same(readdirSync(dir).sort(), ['day1.sum', 'source', 'target'], 'no temporary file left behind')

  // The next day: yesterday's file instead of a bsum of the target, and the
  // file rotated in place (read from stdin while its successor is written).
  const day2 = changed(Buffer.concat([day1, randomBytes(8192, 6)]), 0, 1, 7)
  put(join(dir, 'source'), day2)
  r = await sh('cp day1.sum state.sum && bdiff --digests-out state.sum source < state.sum | bpatch target', {
    cwd: dir,
  })
  t.equal(r.status, 0, r.stderr)
  t.ok(same(join(dir, 'target'), day2), 'patched from yesterday’s digests')
  const state = await parseStream(readFileSync(join(dir, 'state.sum')))
  t.equal(state.header.size, day2.length)
  t.equal(state.header.seed, 99n, 'the seed carries over')
  t.equal(state.end.imageDigest, (await chunkDigests(day2, 8192, 99n)).image)
})

void t.test('--digests-out is not left behind when bdiff fails', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(8 * K64, 8)
  const sums = (await run('bsum', [put(join(dir, 'old'), old)])).stdout
  put(join(dir, 'new'), old)
  const cut = sums.subarray(0, sums.length - 10)
  const r = await run('bdiff', ['--digests-out', join(dir, 'out.sum'), join(dir, 'new')], { input: cut })
  t.equal(r.status, 1)
  t.match(r.stderr, 'bdiff: the digest stream on standard input: unexpected end of data')
  t.same(readdirSync(dir).sort(), ['new', 'old'])

  const bad = join(dir, 'no-such-dir', 'out.sum')
  const e = await run('bdiff', ['--digests-out', bad, join(dir, 'new')], { input: sums })
  t.equal(e.status, 1)
  t.match(e.stderr, `bdiff: --digests-out: cannot create ${bad}.tmp-`)
  t.equal(e.stdout.length, 0, 'nothing written')
})

void t.test('what is not a valid digest stream: exit 1, saying what is wrong', async (t) => {
  const dir = t.testdir()
  const source = put(join(dir, 'source'), randomBytes(2 * K64, 9))
  const hash = await loadHash()
  const header = (size: number, blockSize: number, kind: StreamKind = StreamKind.DIGEST): Buffer =>
    encodeHeader(hash, { kind, size, blockSize, seed: 1n })
  const sums = (await run('bsum', [source])).stdout
  const delta = (await run('bdiff', [source], { input: sums })).stdout
  const corrupt = Buffer.from(sums)
  corrupt.writeUInt8(corrupt.readUInt8(sums.length - 120) ^ 0x10, sums.length - 120)
  const cases: [string, Buffer, string | RegExp][] = [
    ['a block stream', header(K64, K64, StreamKind.BLOCK), 'got a block stream'],
    ['a delta', delta, 'expected a digest stream (from bsum) on standard input, got a delta stream'],
    ['a block size of 100', header(K64, 100), 'block size 100 is not a multiple of 512'],
    ['32 MiB chunks', header(K64, 32 * 1024 * 1024), 'chunk size 33554432 of a digest stream exceeds 16777216'],
    ['a size of 2^60', header(2 ** 60, K64), 'image size 1152921504606846976 is beyond 2^53 bytes'],
    ['gzip', Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]), 'gzip-compressed data: add gunzip'],
    ['nothing', Buffer.alloc(0), 'empty input: no stream at all'],
    ['a cut stream', sums.subarray(0, 100), /the digest stream on standard input: unexpected end of data/],
    ['a corrupt record', corrupt, 'checksum mismatch'],
    ['text', Buffer.from('0 65536 20d593adb9934b0d\n'.repeat(4)), 'bad magic'],
  ]
  for (const [what, input, message] of cases) {
    const r = await run('bdiff', [source], { input })
    t.equal(r.status, 1, what)
    t.match(r.stderr, message, what)
    t.match(r.stderr, /^bdiff: /, what)
    t.notMatch(r.stderr, 'internal error', what)
    await t.rejects(parseStream(r.stdout), `${what}: no complete delta on stdout`)
  }
})

void t.test('usage errors exit 2, a missing source 1', async (t) => {
  const dir = t.testdir()
  const a = put(join(dir, 'a'), randomBytes(1000, 10))
  const cases: [string[], number, string][] = [
    [['-b', '4K', a], 2, '--block-size and --seed go with --base'],
    [['--seed', '1', a], 2, '--block-size and --seed go with --base'],
    [['--base', a, '-b', '32M', a], 2, '--block-size at most 16M'],
    [[], 2, 'missing SOURCE'],
    [[a, a], 2, 'one SOURCE only'],
    [[join(dir, 'nope')], 1, 'no such file or device'],
    [['--base', join(dir, 'nope'), a], 1, 'no such file or device'],
  ]
  for (const [args, status, message] of cases) {
    const r = await run('bdiff', args, { input: Buffer.alloc(0) })
    t.equal(r.status, status, args.join(' '))
    t.match(r.stderr, message, args.join(' '))
  }
})

void t.test('bdiff --progress reports on stderr, the delta stays whole', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(17 * K64, 11)
  put(join(dir, 'old'), old)
  put(join(dir, 'new'), changed(old, 16 * K64, 1, 12))
  const r = await run('bdiff', ['--progress', '-b', '64K', '--base', join(dir, 'old'), join(dir, 'new')])
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /(^|\n)bdiff: 1\.06 MiB of 1\.06 MiB \(100%\), .*, 1 of 17 chunks differ, 64\.\d KiB sent\n$/)
  t.equal((await parseStream(r.stdout)).records.length, 1)
})
