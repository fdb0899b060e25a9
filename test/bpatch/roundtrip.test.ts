import { readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { randomBytes } from '../lib/data.js'
import { sh } from '../lib/run.js'
import { K64, chunkDigests, changed, parseStream, put, same, summary, type Parsed } from '../integration/bsync-lib.js'

// bsum OLD | bdiff NEW | bpatch OLD, through a real shell pipeline, must
// leave OLD equal to NEW byte for byte, and send only what changed.

interface SyncResult extends Parsed {
  bytes: number
}

async function sync(
  t: Test,
  oldData: Buffer,
  newData: Buffer,
  options: { sum?: string; diff?: string } = {},
): Promise<SyncResult> {
  const dir = t.testdir()
  put(join(dir, 'target.img'), oldData)
  put(join(dir, 'source.img'), newData)
  const r = await sh(
    // 64K chunks unless the case gives its own -b (the last one counts).
    `bsum -b 64K ${options.sum ?? ''} target.img | bdiff ${options.diff ?? ''} source.img | tee delta | bpatch target.img`,
    { cwd: dir },
  )
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '', 'nothing on stderr')
  t.ok(same(join(dir, 'target.img'), newData), 'the target equals the source byte for byte')
  const delta = readFileSync(join(dir, 'delta'))
  return { ...(await parseStream(delta)), bytes: delta.length }
}

void t.test('changes in the first and the last (partial) chunk', async (t) => {
  const size = 16 * K64 + 1000
  const old = randomBytes(size, 1)
  const neu = changed(changed(old, 10, 5, 2), size - 1, 1, 3)
  const d = await sync(t, old, neu, { sum: '--seed 7' })
  t.same(summary(d.records), [`DATA 0+${K64} base ${K64}`, `DATA ${16 * K64}+1000 base 1000`])
  t.equal(d.header.size, size)
  t.equal(d.header.baseSize, size)
  t.equal(d.header.blockSize, K64)
  t.equal(d.header.seed, 7n)
  const before = await chunkDigests(old, K64, 7n)
  const after = await chunkDigests(neu, K64, 7n)
  t.equal(d.records[0]?.baseDigest, before.digests[0], 'base digest of the first chunk')
  t.equal(d.records[1]?.baseDigest, before.digests[16], 'base digest of the last chunk')
  t.equal(d.end.imageDigest, after.image, 'the end record carries the image digest of the new image')
  t.ok(d.records[1]?.payload.equals(neu.subarray(16 * K64)))
})

void t.test('a grown source: the old partial chunk and every chunk past the old end are sent', async (t) => {
  const old = randomBytes(5 * K64 + 100, 4)
  const neu = Buffer.concat([old, randomBytes(7 * K64 - 100 + 7, 5)])
  neu.fill(0, 9 * K64, 11 * K64)
  const d = await sync(t, old, neu)
  t.same(summary(d.records), [
    `DATA ${5 * K64}+${K64} base 100`,
    `DATA ${6 * K64}+${K64}`,
    `DATA ${7 * K64}+${K64}`,
    `DATA ${8 * K64}+${K64}`,
    `ZERO ${9 * K64}+${K64}`,
    `ZERO ${10 * K64}+${K64}`,
    `DATA ${11 * K64}+${K64}`,
    `DATA ${12 * K64}+7`,
  ])
  t.equal(d.header.baseSize, old.length)
  t.equal(d.header.size, neu.length)
})

void t.test('a grown source with nothing else changed, at a chunk boundary', async (t) => {
  const old = randomBytes(4 * K64, 6)
  const neu = Buffer.concat([old, randomBytes(K64, 7)])
  const d = await sync(t, old, neu)
  t.same(summary(d.records), [`DATA ${4 * K64}+${K64}`])
})

void t.test('a shrunk source: the regular file target is truncated', async (t) => {
  const old = randomBytes(12 * K64 + 7, 8)
  const neu = old.subarray(0, 5 * K64 + 100)
  const d = await sync(t, old, neu)
  t.same(summary(d.records), [`DATA ${5 * K64}+100 base ${K64}`], 'only the chunk cut short')
  t.equal(d.header.baseSize, old.length)
  t.equal(d.header.size, neu.length)
})

void t.test('a shrink at a chunk boundary sends no records and still truncates', async (t) => {
  const old = randomBytes(6 * K64, 9)
  const d = await sync(t, old, old.subarray(0, 3 * K64))
  t.equal(d.records.length, 0)
  t.equal(d.header.size, 3 * K64)
})

void t.test('from and to an empty image', async (t) => {
  const data = randomBytes(K64 + 3, 10)
  const grown = await sync(t, Buffer.alloc(0), data)
  t.same(summary(grown.records), [`DATA 0+${K64}`, `DATA ${K64}+3`])
  const emptied = await sync(t, data, Buffer.alloc(0))
  t.equal(emptied.records.length, 0)
  t.equal(emptied.header.size, 0)
})

void t.test('all-zero chunks become ZERO records, exactly', async (t) => {
  const size = 8 * K64 + 500
  const old = randomBytes(size, 11)
  const neu = Buffer.from(old)
  neu.fill(0, 2 * K64, 4 * K64)
  // The bug bdsync shipped: a chunk whose only non-zero byte is the last.
  neu.fill(0, 4 * K64, 5 * K64 - 1)
  neu[5 * K64 - 1] = 1
  neu.fill(0, 5 * K64 + 1, 6 * K64)
  neu[5 * K64] = 0xff
  neu.fill(0, 8 * K64)
  const d = await sync(t, old, neu)
  t.same(summary(d.records), [
    `ZERO ${2 * K64}+${K64} base ${K64}`,
    `ZERO ${3 * K64}+${K64} base ${K64}`,
    `DATA ${4 * K64}+${K64} base ${K64}`,
    `DATA ${5 * K64}+${K64} base ${K64}`,
    `ZERO ${8 * K64}+500 base 500`,
  ])
  t.equal(d.end.zeroBytes, 2 * K64 + 500)
  t.ok(d.bytes < 2 * K64 + 4096, 'zero chunks carry no payload')
})

void t.test('identical images: a delta with no records, nothing written', async (t) => {
  const data = randomBytes(5 * K64 + 11, 12)
  const d = await sync(t, data, data)
  t.equal(d.records.length, 0)
  t.equal(d.header.size, data.length)
  t.equal(d.header.baseSize, data.length)
  t.ok(d.bytes < 1024, `the delta is ${d.bytes} bytes`)
})

void t.test('-b 4K', async (t) => {
  const K4 = 4096
  const old = randomBytes(100 * K4 + 5, 13)
  let neu = changed(old, 0, 1, 14)
  neu = changed(neu, 37 * K4 + 4095, 2, 15)
  neu = changed(neu, 100 * K4 + 4, 1, 16)
  const d = await sync(t, old, neu, { sum: '-b 4K' })
  t.equal(d.header.blockSize, K4)
  t.same(summary(d.records), [
    `DATA 0+${K4} base ${K4}`,
    `DATA ${37 * K4}+${K4} base ${K4}`,
    `DATA ${38 * K4}+${K4} base ${K4}`,
    `DATA ${100 * K4}+5 base 5`,
  ])
})

void t.test('-b 1M (and its spelling in sectors)', async (t) => {
  const M = 1024 * 1024
  const old = randomBytes(3 * M + M / 2, 17)
  const neu = changed(old, 2 * M + 12345, 100, 18)
  for (const b of ['1M', '2048']) {
    const d = await sync(t, old, neu, { sum: `-b ${b}` })
    t.equal(d.header.blockSize, M)
    t.same(summary(d.records), [`DATA ${2 * M}+${M} base ${M}`])
  }
})

void t.test('bdiff --base OLD NEW, without bsum', async (t) => {
  const dir = t.testdir()
  const old = randomBytes(10 * K64 + 77, 19)
  const neu = changed(Buffer.concat([old, randomBytes(K64, 20)]), 3 * K64, 9, 21)
  put(join(dir, 'old.img'), old)
  put(join(dir, 'new.img'), neu)
  put(join(dir, 'target.img'), old)
  let r = await sh('bdiff --base old.img -b 64K new.img | tee delta | bpatch target.img', { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.ok(same(join(dir, 'target.img'), neu))
  const d = await parseStream(readFileSync(join(dir, 'delta')))
  t.same(summary(d.records), [
    `DATA ${3 * K64}+${K64} base ${K64}`,
    `DATA ${10 * K64}+${K64} base 77`,
    `DATA ${11 * K64}+77`,
  ])
  t.equal(d.header.blockSize, K64)
  const byDefault = await parseStream((await sh('bdiff --base old.img new.img', { cwd: dir })).stdout)
  t.equal(byDefault.header.blockSize, 4096, '4K chunks by default')

  put(join(dir, 'target.img'), old)
  r = await sh('bdiff --base old.img -b 8K --seed 0x2a new.img | tee delta | bpatch target.img', { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.ok(same(join(dir, 'target.img'), neu))
  const d8 = await parseStream(readFileSync(join(dir, 'delta')))
  t.equal(d8.header.blockSize, 8192)
  t.equal(d8.header.seed, 42n)
  t.equal(d8.records.length, 1 + Math.ceil((K64 + 77) / 8192))
})

void t.test('chunks of zeros past the old end are left as holes', async (t) => {
  const dir = t.testdir()
  const probe = put(join(dir, 'probe'), Buffer.alloc(0))
  await sh(`truncate -s 1M ${probe}`)
  if (statSync(probe).blocks !== 0) {
    t.pass('this file system does not keep holes: not checked')
    return
  }
  const old = randomBytes(K64, 22)
  const neu = Buffer.concat([old, Buffer.alloc(64 * K64)])
  const target = put(join(dir, 'target.img'), old)
  put(join(dir, 'source.img'), neu)
  const p = await sh('bsum target.img | bdiff source.img | bpatch target.img', { cwd: dir })
  t.equal(p.status, 0, p.stderr)
  t.ok(same(target, neu))
  t.ok(statSync(target).blocks * 512 <= 2 * K64, `4 MiB of zeros take ${statSync(target).blocks * 512} bytes`)
})
