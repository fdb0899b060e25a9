import { closeSync, openSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Device } from '../../packages/core/src/device.js'
import { loadHash } from '../../packages/core/src/hash.js'
import { stripeDigests, type StripeOptions } from '../../packages/core/src/stripe-digests.js'
import { randomBytes } from '../lib/data.js'

// The hashing threads' digests against the plain one-chunk-at-a-time ones:
// many stripes, images of different sizes side by side, partial chunks, and
// the ways a read goes wrong.

function image(dir: string, name: string, data: Buffer): Device {
  const path = join(dir, name)
  writeFileSync(path, data)
  return { path, fd: openSync(path, 'r'), size: data.length, blockDevice: false }
}

async function collect(images: Device[], chunk: number, seed: bigint, options: StripeOptions) {
  const out: Buffer[][] = images.map(() => [])
  let next = 0
  for await (const batch of stripeDigests(images, chunk, seed, options)) {
    if (batch.first !== next) throw new Error(`batch at chunk ${batch.first}, expected ${next}`)
    next += Math.max(...batch.digests.map((d) => d.length / 8))
    // A batch is valid until the next one is asked for: kept, it is copied.
    batch.digests.forEach((d, i) => out[i]?.push(Buffer.from(d)))
  }
  return out.map((pieces) => Buffer.concat(pieces))
}

void t.test('the digests of every chunk, in order, whatever the stripes and reads', async (t) => {
  const hash = await loadHash()
  const dir = t.testdir()
  const a = randomBytes(300_000, 1)
  const b = randomBytes(123_457, 2)
  const devs = [image(dir, 'a', a), image(dir, 'b', b), image(dir, 'empty', Buffer.alloc(0))]
  const cases: [number, StripeOptions][] = [
    [4096, { stripeBytes: 16384, readBytes: 8192 }],
    [4096, { stripeBytes: 4096, readBytes: 1, threads: 3 }],
    [65536, {}],
    [512, { stripeBytes: 1 << 20, threads: 1 }],
  ]
  for (const [chunk, options] of cases) {
    const seed = 2n ** 64n - BigInt(chunk)
    const got = await collect(devs, chunk, seed, options)
    ;[a, b, Buffer.alloc(0)].forEach((data, i) => {
      const want = Buffer.alloc(Math.ceil(data.length / chunk) * 8)
      for (let at = 0; at < data.length; at += chunk) {
        want.writeBigUInt64LE(hash.digest(data.subarray(at, at + chunk), seed), (at / chunk) * 8)
      }
      t.ok(got[i]?.equals(want), `image ${i}, ${chunk}-byte chunks, ${JSON.stringify(options)}`)
    })
  }
  t.same(await collect([devs[2] as Device], 4096, 0n, {}), [Buffer.alloc(0)], 'nothing to hash, no batch')
  devs.forEach((d) => closeSync(d.fd))
})

void t.test('the batches reuse a few slots of memory: nothing is allocated per stripe', async (t) => {
  const hash = await loadHash()
  const dir = t.testdir()
  const data = randomBytes(64 * 4096, 6)
  const dev = image(dir, 'a', data)
  const memories = new Set<ArrayBufferLike>()
  let batches = 0
  // Slow to take its batches, the main thread lets the worker run ahead as far as it may.
  for await (const batch of stripeDigests([dev], 4096, 7n, { stripeBytes: 8192 })) {
    await new Promise((resolve) => setTimeout(resolve, 2))
    const d = batch.digests[0] as Buffer
    memories.add(d.buffer)
    for (let k = 0; k < d.length / 8; k++) {
      const at = (batch.first + k) * 4096
      if (d.readBigUInt64LE(k * 8) !== hash.digest(data.subarray(at, at + 4096), 7n)) t.fail(`chunk ${batch.first + k}`)
    }
    batches++
  }
  t.equal(batches, 32, 'one batch per stripe of two chunks')
  t.equal(memories.size, 2, "the worker's slots and the main thread's")
  closeSync(dev.fd)
})

void t.test('stopping early stops the workers', async (t) => {
  const dir = t.testdir()
  const dev = image(dir, 'a', randomBytes(1 << 20, 3))
  let batches = 0
  for await (const batch of stripeDigests([dev], 4096, 0n, { stripeBytes: 8192 })) {
    t.equal(batch.first, 0)
    batches++
    break
  }
  t.equal(batches, 1)
  closeSync(dev.fd)
})

void t.test('an image shorter than its size, a read error, a worker that fails', async (t) => {
  const dir = t.testdir()
  const dev = image(dir, 'short', randomBytes(10_000, 4))
  // Stripes of 8192 bytes: the even ones hashed by the worker, the odd ones by the main thread.
  await t.rejects(collect([{ ...dev, size: 50_000 }], 4096, 0n, { stripeBytes: 8192 }), {
    code: 'EDEVICE',
    message: `${dev.path}: ended at byte 10000 while reading (did it shrink?)`,
  })
  const longer = image(dir, 'longer', randomBytes(20_000, 5))
  await t.rejects(collect([{ ...longer, size: 50_000 }], 4096, 0n, { stripeBytes: 8192 }), {
    code: 'EDEVICE',
    message: `${longer.path}: ended at byte 20000 while reading (did it shrink?)`,
  })
  closeSync(longer.fd)
  const fd = openSync(dir, 'r')
  await t.rejects(collect([{ path: dir, fd, size: 8192, blockDevice: false }], 4096, 0n, {}), {
    code: 'EDEVICE',
    message: new RegExp(`^${dir}: read error: EISDIR`),
  })
  closeSync(fd)
  // A chunk larger than a WebAssembly memory can hold: the main thread's
  // hasher throws; with two stripes, the worker that has the first dies.
  await t.rejects(collect([dev], 2 ** 33, 0n, {}), RangeError)
  const sparse = join(dir, 'sparse')
  writeFileSync(sparse, '')
  truncateSync(sparse, 2 ** 33 + 1)
  const big = { path: sparse, fd: openSync(sparse, 'r'), size: 2 ** 33 + 1, blockDevice: false }
  await t.rejects(collect([big], 2 ** 33, 0n, {}), RangeError)
  closeSync(big.fd)
  closeSync(dev.fd)
})
