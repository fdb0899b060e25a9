import t from 'tap'
import { loadHash } from '../../packages/core/src/hash.js'

void t.test('xxh64 matches xxhsum -H64, one-shot and incremental', async (t) => {
  const hash = await loadHash()
  t.equal(await loadHash(), hash, 'loaded once')
  // printf '' | xxhsum -H64; printf abc | xxhsum -H64
  t.equal(hash.digest(Buffer.alloc(0), 0n), 0xef46db3751d8e999n)
  t.equal(hash.digest(Buffer.from('abc'), 0n), 0x44bc2cf5ad770999n)
  t.equal(hash.create(0n).update(Buffer.from('abc')).digest(), 0x44bc2cf5ad770999n)
  t.equal(hash.create(0n).update(Buffer.from('a')).update(Buffer.from('bc')).digest(), 0x44bc2cf5ad770999n)
  t.not(hash.digest(Buffer.from('abc'), 1n), 0x44bc2cf5ad770999n, 'the seed matters')
  const seed = 0xffffffffffffffffn
  const data = Buffer.alloc(100_000)
  for (let i = 0; i < data.length; i++) data[i] = (i * 13) & 0xff
  const whole = hash.digest(data, seed)
  const inc = hash.create(seed)
  for (let at = 0; at < data.length; at += 777) inc.update(data.subarray(at, at + 777))
  t.equal(inc.digest(), whole)
  t.type(whole, 'bigint')
  t.ok(whole >= 0n && whole < 1n << 64n)
})
