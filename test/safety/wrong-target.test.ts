import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'
import {
  blockStream,
  deltaStream,
  digestStream,
  fullStream,
  runTool,
  sameBytes,
  sameFile,
  snapshot,
  tempDir,
} from './lib.js'

// A stream applied with --spool to a target it was not made for: refused,
// and not one byte of the target written (its bytes and its mtime are as
// before; a target that did not exist still does not).

const B = 4096
const oldImage = randomBytes(16 * B, 1)
const newImage = Buffer.from(oldImage)
for (const c of [0, 3, 9, 15]) randomBytes(B, 10 + c).copy(newImage, c * B)
/** Another image of the same size that shares all but its last chunk with the old one. */
const almost = Buffer.from(oldImage)
randomBytes(B, 99).copy(almost, 15 * B)

interface Case {
  what: string
  program: 'era-apply' | 'bpatch'
  stream: Buffer
  /** The target's contents; null: it does not exist. */
  target: Buffer | null
  status: number
  message: RegExp
  args?: string[]
}

async function cases(dir: string): Promise<Case[]> {
  const delta = await deltaStream(oldImage, newImage, B)
  const partial = await blockStream(newImage, [[3 * B, B]], { metadata: { 'written-since': '12' } })
  const undo = join(dir, 'journal')
  writeFileSync(join(dir, 'journaled'), oldImage)
  await runTool('era-apply', ['--undo', undo, join(dir, 'journaled')], {
    input: await fullStream(newImage.subarray(0, 9 * B)),
  })
  const grown = await deltaStream(oldImage, Buffer.concat([newImage, randomBytes(B, 5)]), B)
  const foreign = join(dir, 'foreign-journal')
  writeFileSync(join(dir, 'foreign-target'), oldImage)
  await runTool('bpatch', ['--undo', foreign, join(dir, 'foreign-target')], {
    input: (await fullStream(newImage)).subarray(0, 5000),
    env: { BLOCKPIPE_UNDO_BATCH_RECORDS: '1' },
  })
  return [
    {
      what: 'a delta for an image that differs only in its last chunk',
      program: 'bpatch',
      stream: delta,
      target: almost,
      status: 3,
      message:
        /conflict at byte 61440 \(chunk 15\): .* holds neither the data this delta was made against.*Stopped: nothing was written/,
    },
    {
      what: 'a delta for another image altogether',
      program: 'bpatch',
      stream: delta,
      target: randomBytes(16 * B, 2),
      status: 3,
      message: /conflict at byte 0 \(chunk 0\)/,
    },
    {
      what: 'a delta for an image of another size',
      program: 'bpatch',
      stream: delta,
      target: oldImage.subarray(0, 15 * B),
      status: 3,
      message: /is 61440 bytes, the delta was made against an image of 65536 bytes: it is for another image/,
    },
    {
      what: 'a growing delta onto a target of the new size with other data past the old end',
      program: 'bpatch',
      stream: grown,
      target: Buffer.concat([oldImage, randomBytes(B, 6)]),
      status: 3,
      message: /conflict at byte 65536 \(chunk 16\): .* holds data past the end of the 65536-byte image/,
    },
    {
      what: 'a delta onto a target that does not exist',
      program: 'bpatch',
      stream: delta,
      target: null,
      status: 3,
      message: /does not exist: a delta applies only to the image its digests were made from/,
    },
    {
      what: 'an incremental block stream onto a target that does not exist',
      program: 'era-apply',
      stream: partial,
      target: null,
      status: 3,
      message: /does not exist, and this stream holds only some blocks \(those written since era 12\)/,
    },
    {
      what: 'an incremental block stream onto an empty target',
      program: 'era-apply',
      stream: partial,
      target: Buffer.alloc(0),
      status: 3,
      message: /is empty, and this stream holds only some blocks/,
    },
    {
      what: 'an undo journal of another target',
      program: 'era-apply',
      stream: readFileSync(undo),
      target: randomBytes(12 * B, 3),
      status: 3,
      message: /is 49152 bytes; the apply this journal undoes left it at 36864 bytes: it is for another target/,
    },
    {
      what: 'a delta given to era-apply',
      program: 'era-apply',
      stream: delta,
      target: almost,
      status: 2,
      message: /this is a delta stream \(from bdiff\): apply it with bpatch/,
    },
    {
      what: 'a digest stream',
      program: 'bpatch',
      stream: await digestStream(oldImage, B),
      target: oldImage,
      status: 1,
      message: /this is a digest stream \(from bsum\): it holds no data/,
    },
    {
      what: 'a stream whose --undo file is the unfinished journal of another stream',
      program: 'bpatch',
      stream: delta,
      target: oldImage,
      status: 2,
      message: /is the unfinished journal of another stream \(roll that apply back with it first\)/,
      args: ['--undo', foreign],
    },
  ]
}

void t.test('with --spool, a stream for another target writes nothing', async (t) => {
  const dir = tempDir(t, 'wrong')
  let n = 0
  for (const c of await cases(dir)) {
    const target = join(dir, `target-${n++}`)
    if (c.target !== null) writeFileSync(target, c.target)
    const before = snapshot(target)
    const r = await runTool(c.program, ['--spool', dir, ...(c.args ?? []), target], { input: c.stream })
    t.equal(r.status, c.status, `${c.what}: exit ${c.status}`)
    t.match(r.stderr, c.message, c.what)
    sameFile(t, snapshot(target), before, `${c.what}: not a byte written, mtime unchanged`)
  }
})

void t.test('without --spool, the conflict in the last chunk comes after the others were written', async (t) => {
  // What --spool is for: bpatch alone stops at the conflict, but only there.
  const dir = tempDir(t, 'wrong')
  const target = join(dir, 'target')
  writeFileSync(target, almost)
  const r = await runTool('bpatch', [target], { input: await deltaStream(oldImage, newImage, B) })
  t.equal(r.status, 3)
  t.match(r.stderr, /conflict at byte 61440 \(chunk 15\).*Stopped: 3 records were applied before it/)
  t.not(readFileSync(target).compare(almost), 0, 'three chunks were written')
})

void t.test('a block device too small for the stream (root)', { skip: loopUnavailable() }, async (t) => {
  const dir = tempDir(t, 'wrong')
  const backing = join(dir, 'backing')
  writeFileSync(backing, oldImage.subarray(0, 8 * B))
  await withLoop(backing, async (dev) => {
    const before = readFileSync(dev)
    const r = await runTool('era-apply', ['--spool', dir, dev], { input: await fullStream(newImage) })
    t.equal(r.status, 1)
    t.match(r.stderr, /is too small: 32768 bytes \(32\.0 KiB\), the stream is for 65536 bytes .*nothing was written/)
    sameBytes(t, readFileSync(dev), before)
  })
})
