import t from 'tap'
import { ByteQueue } from '../../packages/core/src/byte-queue.js'

void t.test('whole fields from pieces of any size', (t) => {
  const q = new ByteQueue()
  const data = Buffer.from('0123456789abcdef')
  for (const b of data) q.push(Buffer.from([b]))
  t.equal(q.length, 16)
  t.equal(q.peek(4).toString(), '0123')
  t.equal(q.shift(3).toString(), '012')
  t.equal(q.shift(10).toString(), '3456789abc')
  t.equal(q.length, 3)
  t.equal(q.peek(10).toString(), 'def')
  q.push(new Uint8Array([0x67]))
  q.push(Buffer.alloc(0))
  t.equal(q.shift(4).toString(), 'defg')
  t.equal(q.length, 0)
  t.throws(() => q.shift(1), RangeError)
  t.end()
})

void t.test('a field in one piece is not copied', (t) => {
  const q = new ByteQueue()
  // Not from Buffer's shared pool, where a copy could land in the same ArrayBuffer.
  const piece = Buffer.alloc(11, 'hello world')
  q.push(piece)
  const out = q.shift(5)
  t.equal(out.buffer, piece.buffer)
  t.end()
})

void t.test('many tiny pieces stay linear', (t) => {
  const q = new ByteQueue()
  const n = 200_000
  for (let i = 0; i < n; i++) q.push(Buffer.from([i & 0xff]))
  const out = q.shift(n)
  t.equal(out.length, n)
  t.equal(out[n - 1], (n - 1) & 0xff)
  for (let i = 0; i < 3000; i++) q.push(Buffer.from([1]))
  for (let i = 0; i < 3000; i++) q.shift(1)
  t.equal(q.length, 0)
  t.end()
})

void t.test('an empty queue hands out empty fields', (t) => {
  const q = new ByteQueue()
  t.equal(q.peek(4).length, 0)
  t.equal(q.shift(0).length, 0)
  q.push(Buffer.from('ab'))
  t.equal(q.shift(0).length, 0)
  t.equal(q.shift(2).toString(), 'ab')
  t.equal(q.shift(0).length, 0)
  t.equal(q.length, 0)
  t.end()
})

void t.test('a field that ends its piece is not copied either', (t) => {
  const q = new ByteQueue()
  const piece = Buffer.alloc(3, 'abc')
  q.push(piece)
  q.push(Buffer.from('def'))
  const out = q.shift(3)
  t.equal(out.buffer, piece.buffer)
  t.equal(out.toString(), 'abc')
  t.equal(q.shift(3).toString(), 'def')
  t.end()
})
