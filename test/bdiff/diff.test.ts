import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import {
  DigestWriter,
  StreamKind,
  StreamWriter,
  applyStream,
  close,
  loadHash,
  openSource,
  type Hash64,
  type Progress,
} from '@blockpipe/core'
import { diff, localBase, streamBase } from '../../packages/bdiff/src/diff.js'
import { prng, randomBytes } from '../lib/data.js'
import { parseStream, put } from '../integration/bsync-lib.js'

// The diff loop in process, on many random pairs of images: whatever the
// sizes and edits, the delta applied to the old image gives the new one, and
// a digest stream gives the same delta as reading the old image here.

async function delta(hash: Hash64, oldPath: string, newPath: string, blockSize: number, viaStream: boolean) {
  const pieces: Buffer[] = []
  const source = openSource(newPath)
  const old = openSource(oldPath)
  try {
    let base = localBase(old, blockSize, 11n)
    if (viaStream) {
      const sums: Buffer[] = []
      const w = new StreamWriter(
        hash,
        { write: (b) => void sums.push(b) },
        {
          kind: StreamKind.DIGEST,
          size: old.size,
          blockSize,
          seed: 11n,
        },
      )
      await w.start()
      const d = new DigestWriter(hash, w, blockSize, 11n)
      const image = readFileSync(oldPath)
      for (let at = 0; at < old.size; at += blockSize) {
        const chunk = image.subarray(at, at + blockSize)
        await d.add(hash.digest(chunk, 11n), chunk.length)
      }
      await d.end()
      base = await streamBase(hash, sums)
    }
    const writer = new StreamWriter(
      hash,
      { write: (b) => void pieces.push(b) },
      {
        kind: StreamKind.DELTA,
        size: source.size,
        baseSize: base.size,
        blockSize,
        seed: base.seed,
      },
    )
    await writer.start()
    let last = 0
    const progress = { update: (n: number) => (last = n) } as unknown as Progress
    const result = await diff(hash, source, base, writer, undefined, progress)
    if (last !== source.size) throw new Error(`progress ended at ${last}`)
    return { bytes: Buffer.concat(pieces), result }
  } finally {
    close(source)
    close(old)
  }
}

void t.test('random images, random edits: the delta always reproduces the new image', async (t) => {
  const dir = t.testdir()
  const hash = await loadHash()
  const rnd = prng(2024)
  const pick = (n: number): number => Math.floor(rnd() * n)
  for (let i = 0; i < 24; i++) {
    const blockSize = [4096, 8192, 65536][pick(3)] as number
    const oldSize = pick(3) === 0 ? pick(3) * blockSize : pick(40 * 4096)
    const old = randomBytes(oldSize, i)
    let neu = Buffer.from(old)
    const newSize = [oldSize, oldSize + pick(100_000), pick(oldSize + 1)][pick(3)] as number
    neu = newSize <= oldSize ? neu.subarray(0, newSize) : Buffer.concat([neu, randomBytes(newSize - oldSize, i + 1000)])
    for (let e = pick(5); e > 0 && neu.length > 0; e--) {
      const at = pick(neu.length)
      const len = 1 + pick(Math.min(neu.length - at, 3 * blockSize))
      if (pick(2) === 0) neu.fill(0, at, at + len)
      else randomBytes(len, i * 100 + e).copy(neu, at)
    }
    const oldPath = put(join(dir, 'old'), old)
    const newPath = put(join(dir, 'new'), neu)
    const local = await delta(hash, oldPath, newPath, blockSize, false)
    const streamed = await delta(hash, oldPath, newPath, blockSize, true)
    const what = `case ${i}: ${oldSize} -> ${newSize} bytes in ${blockSize}-byte chunks`
    const a = await parseStream(local.bytes)
    const b = await parseStream(streamed.bytes)
    t.same(
      b.records.map((r) => [r.type, r.offset, r.length, r.baseLength, r.baseDigest]),
      a.records.map((r) => [r.type, r.offset, r.length, r.baseLength, r.baseDigest]),
      `${what}: the same delta from a digest stream`,
    )
    t.equal(local.result.changed, a.records.length)
    const target = put(join(dir, 'target'), old)
    const applied = await applyStream([local.bytes], { program: 'bpatch', target })
    t.equal(applied.records, a.records.length)
    t.ok(readFileSync(target).equals(neu), what)
  }
})

void t.test('a stream error from the digest stream says so', async (t) => {
  const hash = await loadHash()
  await t.rejects(streamBase(hash, [Buffer.from('hello')]), {
    code: 'EBADSTREAM',
    message: /^the digest stream on standard input: bad magic/,
  })
})
