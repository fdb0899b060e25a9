import { spawn } from 'node:child_process'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { StreamKind, FLAG_FULL } from '../../packages/core/src/format.js'
import { loadHash } from '../../packages/core/src/hash.js'
import { StreamWriter } from '../../packages/core/src/write.js'
import { randomBytes } from '../lib/data.js'
import { binPath, run } from '../lib/run.js'
import { K64, changed, put, same } from '../integration/bsync-lib.js'

// bpatch refuses what it must refuse (exit 3, naming the offset), converges
// when re-run, and an interrupted run re-run ends byte-identical.

/** The digest stream of `target` and the delta that turns it into `source`. */
async function makeDelta(target: string, source: string, bsumArgs: string[] = []): Promise<Buffer> {
  const sums = await run('bsum', ['-b', '64K', ...bsumArgs, target])
  if (sums.status !== 0) throw new Error(sums.stderr)
  const delta = await run('bdiff', [source], { input: sums.stdout })
  if (delta.status !== 0) throw new Error(delta.stderr)
  return delta.stdout
}

const chunk = (data: Buffer, n: number): Buffer => data.subarray(n * K64, (n + 1) * K64)

void t.test('re-running bpatch on a patched target changes nothing and exits 0', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(10 * K64 + 5, 1)
  const neu = changed(changed(old, 0, 3, 2), 9 * K64, K64 + 5, 3)
  const target = put(join(dir, 'target'), old)
  const delta = await makeDelta(target, put(join(dir, 'source'), neu))
  let r = await run('bpatch', ['--progress', target], { input: delta })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /(^|\n)bpatch: .*\(100%\).*, 128\.0 KiB written\n$/)
  t.ok(same(target, neu))
  const before = statSync(target)
  r = await run('bpatch', ['--progress', target], { input: delta })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /, 0 B written\n$/, 'the second run writes nothing')
  t.ok(same(target, neu))
  t.equal(statSync(target).mtimeMs, before.mtimeMs, 'not even touched')
})

void t.test('a target that changed since bsum: exit 3 at that chunk, which stays untouched', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(10 * K64, 4)
  const neu = changed(changed(changed(old, 100, 1, 5), 5 * K64 + 7, 1, 6), 8 * K64, 10, 7)
  const target = put(join(dir, 'target'), old)
  const source = put(join(dir, 'source'), neu)
  const delta = await makeDelta(target, source)
  const meddled = changed(old, 5 * K64 + 1000, 1, 8)
  put(target, meddled)
  const r = await run('bpatch', [target], { input: delta })
  t.equal(r.status, 3, 'conflict')
  t.match(r.stderr, `bpatch: conflict at byte ${5 * K64} (chunk 5): ${target} holds neither`)
  t.match(r.stderr, /1 records were applied before it/)
  const now = readFileSync(target)
  t.ok(chunk(now, 0).equals(chunk(neu, 0)), 'the chunk before the conflict was written')
  t.ok(chunk(now, 5).equals(chunk(meddled, 5)), 'the conflicting chunk is untouched')
  t.ok(chunk(now, 8).equals(chunk(old, 8)), 'nothing after it was written')

  const forced = await run('bpatch', ['--force', target], { input: delta })
  t.equal(forced.status, 0, forced.stderr)
  t.ok(same(target, neu), '--force writes regardless')
})

void t.test('a delta applied to a different image of the same size: exit 3, nothing written', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(4 * K64, 9)
  const delta = await makeDelta(put(join(dir, 'a'), old), put(join(dir, 'b'), changed(old, 2 * K64, 1, 10)))
  const other = randomBytes(4 * K64, 11)
  const target = put(join(dir, 'other'), other)
  const r = await run('bpatch', [target], { input: delta })
  t.equal(r.status, 3)
  t.match(r.stderr, `conflict at byte ${2 * K64} (chunk 2)`)
  t.match(r.stderr, 'Use --force')
  t.ok(same(target, other))
})

void t.test('a grown delta on another image of the new size: its data past the old end is kept', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(4 * K64, 12)
  const neu = Buffer.concat([old, randomBytes(4 * K64, 13)])
  const delta = await makeDelta(put(join(dir, 'a'), old), put(join(dir, 'b'), neu))
  const other = randomBytes(8 * K64, 14)
  const target = put(join(dir, 'other'), other)
  const r = await run('bpatch', [target], { input: delta })
  t.equal(r.status, 3, r.stderr)
  t.match(r.stderr, `conflict at byte ${4 * K64} (chunk 4)`)
  t.match(r.stderr, 'past the end of the 262144-byte image this delta was made against')
  t.ok(same(target, other))
})

void t.test('a target of the wrong size, a missing target: exit 3', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(4 * K64, 15)
  const delta = await makeDelta(put(join(dir, 'a'), old), put(join(dir, 'b'), changed(old, 0, 1, 16)))
  const small = put(join(dir, 'small'), old.subarray(0, 3 * K64))
  let r = await run('bpatch', [small], { input: delta })
  t.equal(r.status, 3)
  t.match(r.stderr, `${small} is ${3 * K64} bytes, the delta was made against an image of ${4 * K64} bytes`)
  t.ok(same(small, old.subarray(0, 3 * K64)), 'not resized, not written')

  const missing = join(dir, 'missing')
  r = await run('bpatch', [missing], { input: delta })
  t.equal(r.status, 3)
  t.match(r.stderr, `${missing} does not exist`)
  t.notOk(existsSync(missing), 'not created')
  r = await run('bpatch', ['--force', missing], { input: delta })
  t.equal(r.status, 3, 'not even with --force')
})

void t.test('a cut delta fails; re-run whole, bpatch converges on a grown image', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(6 * K64 + 99, 17)
  const neu = Buffer.concat([changed(old, 0, 1, 18), randomBytes(6 * K64, 19)])
  neu.fill(0, 10 * K64, 11 * K64)
  const target = put(join(dir, 'target'), old)
  const delta = await makeDelta(target, put(join(dir, 'source'), neu))
  const half = delta.subarray(0, Math.floor(delta.length / 2))
  let r = await run('bpatch', [target], { input: half })
  t.equal(r.status, 1)
  t.match(r.stderr, /unexpected end of data: the stream was cut at byte \d+/)
  t.match(r.stderr, /is incomplete \(part new, part old\)/)
  const partly = readFileSync(target)
  t.equal(partly.length, neu.length, 'the first run grew the file')
  t.ok(chunk(partly, 0).equals(chunk(neu, 0)), 'and wrote the records before the cut')
  t.notOk(partly.equals(neu))

  r = await run('bpatch', ['--progress', target], { input: delta })
  t.equal(r.status, 0, r.stderr)
  t.ok(same(target, neu), 'byte-identical to the source')
  const written = Number(/([\d.]+) KiB written/.exec(r.stderr)?.[1])
  t.ok(written > 0 && written < 384, `the re-run wrote ${written} KiB of 384.1: not what the first run wrote`)
})

void t.test('bpatch killed partway (SIGKILL), re-run: byte-identical, a shrink included', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(40 * K64, 20)
  let neu = old.subarray(0, 30 * K64 + 3)
  for (let n = 0; n < 30; n += 3) neu = changed(neu, n * K64 + 17, 2, 100 + n)
  const target = put(join(dir, 'target'), old)
  const delta = await makeDelta(target, put(join(dir, 'source'), neu))

  const child = spawn(process.execPath, [binPath('bpatch'), target], { stdio: ['pipe', 'ignore', 'pipe'] })
  const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)))
  child.stdin.on('error', () => {})
  child.stdin.write(delta.subarray(0, Math.floor(delta.length / 2)))
  const deadline = Date.now() + 20_000
  while (!chunk(readFileSync(target), 3).equals(chunk(neu, 3))) {
    if (Date.now() > deadline) throw new Error('bpatch wrote nothing in 20 s')
    await new Promise((r) => setTimeout(r, 20))
  }
  child.kill('SIGKILL')
  t.equal(await exited, 'SIGKILL')
  const partly = readFileSync(target)
  t.equal(partly.length, old.length, 'killed before the end: not truncated yet')
  t.ok(chunk(partly, 27).equals(chunk(old, 27)), 'a chunk in the half not sent was not reached')

  const r = await run('bpatch', [target], { input: delta })
  t.equal(r.status, 0, r.stderr)
  t.ok(same(target, neu), 'byte-identical to the source, truncated')
})

void t.test('a corrupt delta is refused at the damaged record', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(4 * K64, 21)
  const neu = changed(changed(old, 0, 1, 22), 3 * K64, 1, 23)
  const target = put(join(dir, 'target'), old)
  const delta = await makeDelta(target, put(join(dir, 'source'), neu))
  delta.writeUInt8(delta.readUInt8(delta.length - 200) ^ 1, delta.length - 200)
  const r = await run('bpatch', [target], { input: delta })
  t.equal(r.status, 1)
  t.match(r.stderr, /record 1 \(DATA at image offset 196608, stream byte \d+\): checksum mismatch/)
  t.ok(chunk(readFileSync(target), 3).equals(chunk(old, 3)), 'the damaged record was not written')
})

void t.test('streams of the other tools', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(2 * K64, 24)
  const neu = changed(old, K64, 1, 25)
  const target = put(join(dir, 'target'), old)
  const delta = await makeDelta(target, put(join(dir, 'source'), neu))

  const sums = await run('bsum', [target])
  let r = await run('bpatch', [target], { input: sums.stdout })
  t.equal(r.status, 1)
  t.match(r.stderr, 'this is a digest stream (from bsum): it holds no data; give it to bdiff')

  r = await run('era-apply', [target], { input: delta })
  t.equal(r.status, 2, 'era-apply takes a delta only with --force')
  t.match(r.stderr, 'apply it with bpatch')
  t.ok(same(target, old))

  // An era-copy style block stream: plain writes, no base checks.
  const hash = await loadHash()
  const pieces: Buffer[] = []
  const w = new StreamWriter(
    hash,
    { write: (b) => void pieces.push(b) },
    {
      kind: StreamKind.BLOCK,
      flags: FLAG_FULL,
      size: neu.length,
      blockSize: K64,
    },
  )
  await w.start()
  await w.data(0, neu.subarray(0, K64))
  await w.data(K64, neu.subarray(K64))
  await w.end()
  put(target, randomBytes(2 * K64, 26))
  r = await run('bpatch', [target], { input: Buffer.concat(pieces) })
  t.equal(r.status, 0, r.stderr)
  t.ok(same(target, neu), 'bpatch applies a block stream without base checks')
})
