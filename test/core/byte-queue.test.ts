import t from 'tap'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
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

void t.test('a field in pieces is gathered into the memory given, a field in one piece is not', (t) => {
  const q = new ByteQueue()
  const into = Buffer.alloc(8, 0xee)
  q.push(Buffer.from('abc'))
  q.push(Buffer.from('defgh'))
  q.push(Buffer.alloc(4, 'x'))
  const out = q.shift(6, into)
  t.equal(out.toString(), 'abcdef')
  t.equal(out.buffer, into.buffer)
  t.equal(out.byteOffset, into.byteOffset)
  t.equal(into.subarray(6).toString('hex'), 'eeee', 'the rest of the memory untouched')
  const whole = q.shift(2, into)
  t.equal(whole.toString(), 'gh')
  t.not(whole.buffer, into.buffer, 'left in its piece')
  t.equal(q.shift(4).toString(), 'xxxx')
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

void t.test('a consumed piece is released while later pieces stay queued', async (t) => {
  setFlagsFromString('--expose-gc')
  const gc = runInNewContext('gc') as () => void
  const q = new ByteQueue()
  // Pushed from a function so that no variable here keeps the piece alive.
  const gone = ((piece: Buffer) => (q.push(piece), new WeakRef(piece)))(Buffer.alloc(1 << 20, 1))
  q.push(Buffer.alloc(1 << 20, 2))
  // A field across both pieces, as a record across two reads of a file.
  t.equal(q.shift((1 << 20) + 10).length, (1 << 20) + 10)
  t.equal(q.length, (1 << 20) - 10)
  await new Promise((resolve) => setImmediate(resolve))
  gc()
  t.equal(gone.deref(), undefined)
})

void t.test('a short view into large memory is copied, not kept', (t) => {
  const q = new ByteQueue()
  const big = Buffer.alloc(1 << 20, 7)
  q.push(big.subarray(0, 8192))
  const out = q.shift(8192)
  t.not(out.buffer, big.buffer)
  t.equal(out[8191], 7)
  const small = Buffer.alloc(1 << 20, 8).subarray(0, 100)
  q.push(small)
  t.equal(q.shift(100).buffer, small.buffer)
  q.push(new Uint8Array(big.buffer, 0, 1 << 19))
  t.equal(q.shift(1 << 19).buffer, big.buffer)
  t.end()
})
