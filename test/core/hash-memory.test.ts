import t from 'tap'
import { HashMemory, SMALL_PART } from '../../packages/core/src/hash-memory.js'
import { hash } from './streams.js'

void t.test('hashes where the bytes lie, as xxh64 of the parts one after the other', (t) => {
  const memory = new HashMemory(200_000)
  const bytes = memory.view(0, 200_000)
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) >>> 3
  for (const seed of [0n, 5n, 2n ** 63n + 5n, 2n ** 64n - 1n]) {
    const whole = Buffer.from(bytes)
    t.equal(memory.hash(seed, bytes), hash.digest(whole, seed), `one part, seed ${seed}`)
    const a = memory.view(8, 40)
    const b = memory.view(48, 150_000)
    const expected = hash.create(seed).update(Buffer.from(a)).update(Buffer.from(b)).digest()
    t.equal(memory.hash(seed, a, b), expected, `two parts, seed ${seed}`)
    t.equal(memory.hash(seed, a, b), expected, 'the same again: the state starts afresh')
  }
  t.end()
})

void t.test('views share the memory and stay valid', (t) => {
  const memory = new HashMemory(10)
  const v = memory.view(2, 4)
  memory.view(0, 10).fill(9)
  t.same([...v], [9, 9, 9, 9])
  t.equal(memory.hash(1n), hash.digest(Buffer.alloc(0), 1n), 'no part: the hash of nothing')
  t.end()
})

void t.test('a small part outside the memory is copied in; a larger one is refused', (t) => {
  const memory = new HashMemory(1000)
  const inside = memory.view(0, 1000).fill(5)
  const head = Buffer.alloc(SMALL_PART, 3)
  const expected = hash.create(7n).update(head).update(Buffer.from(inside)).digest()
  t.equal(memory.hash(7n, head, inside), expected)
  const a = Buffer.alloc(40, 1)
  const b = Buffer.alloc(20, 2)
  t.equal(
    memory.hash(7n, a, inside.subarray(0, 40), b),
    hash.digest(Buffer.concat([a, Buffer.alloc(40, 5), b]), 7n),
    'small parts one after the other share the room they are copied to',
  )
  t.throws(() => memory.hash(0n, Buffer.alloc(SMALL_PART + 1)), RangeError)
  t.equal(HashMemory.holding(inside), memory)
  t.equal(HashMemory.holding(head), undefined)
  t.end()
})
