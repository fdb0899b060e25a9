import t from 'tap'
import { isZero, zeros } from '../../packages/core/src/zero.js'

void t.test('a buffer is zero only if every byte is', (t) => {
  t.equal(isZero(Buffer.alloc(0)), true)
  t.equal(isZero(new Uint8Array(4096)), true)
  for (const size of [1, 7, 8, 9, 63, 4096, 65536, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 5 * (1 << 20) + 3]) {
    const buf = Buffer.alloc(size)
    t.equal(isZero(buf), true, `${size} zero bytes`)
    for (const at of new Set([0, size >> 1, size - 1])) {
      buf[at] = 1
      t.equal(isZero(buf), false, `${size} bytes, byte ${at} set`)
      buf[at] = 0x80
      t.equal(isZero(buf), false, `${size} bytes, top bit of byte ${at} set`)
      buf[at] = 0
    }
  }
  t.end()
})

void t.test('the last byte counts (the bug a peer tool shipped)', (t) => {
  for (const size of [4096, 65536, 1 << 20, 4 << 20]) {
    const last = Buffer.alloc(size)
    last[size - 1] = 1
    t.equal(isZero(last), false, `${size} bytes, the last one 1`)
    const first = Buffer.alloc(size)
    first[0] = 1
    t.equal(isZero(first), false, `${size} bytes, the first one 1`)
  }
  // Every position around the 1 MiB piece boundary, and in a view at an odd offset.
  const big = Buffer.alloc((1 << 20) + 64)
  for (let at = (1 << 20) - 32; at < big.length; at++) {
    big[at] = 1
    t.equal(isZero(big), false, `byte ${at}`)
    big[at] = 0
  }
  const backing = Buffer.alloc(10001)
  backing[10000] = 1
  t.equal(isZero(backing.subarray(3, 10000)), true, 'a view stops where it ends')
  t.equal(isZero(backing.subarray(3)), false)
  t.equal(isZero(new Uint8Array(backing.buffer, backing.byteOffset + 9000, 1001)), false)
  t.end()
})

void t.test('zeros() hands out zero buffers of any length', (t) => {
  for (const n of [0, 1, 4096, 1 << 20, (1 << 20) + 1, 3 << 20]) {
    const z = zeros(n)
    t.equal(z.length, n)
    t.equal(isZero(z), true)
  }
  t.end()
})
