import {
  closeSync,
  constants,
  existsSync,
  openSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { applyStream, type ApplyOptions } from '../../packages/core/src/apply.js'
import { ConflictError } from '../../packages/core/src/errors.js'
import { StreamKind } from '../../packages/core/src/format.js'
import { isZero } from '../../packages/core/src/zero.js'
import { randomBytes } from '../lib/data.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'
import {
  blockStream,
  buildStream,
  deltaStream,
  digestStream,
  fullStream,
  sameBytes,
  sameFile,
  snapshot,
  tempDir,
  recordEnds,
  textSink,
} from '../safety/lib.js'

const apply = (
  stream: Buffer | Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  target: string,
  options: Partial<ApplyOptions> = {},
) => applyStream(Buffer.isBuffer(stream) ? [stream] : stream, { program: 'era-apply', target, ...options })

function flip(buf: Buffer, at: number): void {
  buf.writeUInt8(buf.readUInt8(at) ^ 0x10, at)
}

void t.test('a full stream creates a sparse target; a cut one leaves no target behind', async (t) => {
  const dir = tempDir(t, 'apply')
  const image = Buffer.alloc(8 << 20)
  randomBytes(4096, 1).copy(image, 0)
  randomBytes(100, 2).copy(image, image.length - 100)
  const stream = await fullStream(image, 1 << 20)
  const target = join(dir, 'new')
  const res = await apply(stream, target)
  t.equal(res.created, true)
  t.equal(res.records, 8)
  t.equal(res.written, 2 << 20, 'the two records with data')
  t.equal(res.skipped, 6 << 20, 'the zero records are holes')
  sameBytes(t, readFileSync(target), image)
  t.ok(statSync(target).blocks * 512 < 3 << 20, 'sparse')
  t.equal(statSync(target).mode & 0o777, 0o600)

  const cut = stream.subarray(0, stream.length - 10)
  const gone = join(dir, 'gone')
  await t.rejects(apply(cut, gone), {
    code: 'ETRUNCATED',
    message: new RegExp(`${gone} was new and has been removed; --spool keeps a cut or corrupt stream`),
  })
  t.notOk(existsSync(gone))
  // A cut in the header writes nothing and creates nothing.
  await t.rejects(apply(stream.subarray(0, 30), gone), {
    code: 'ETRUNCATED',
    message: new RegExp(`stream header: nothing was written to ${gone}; --spool keeps`),
  })
  t.notOk(existsSync(gone))
  // A full stream of an image larger than 1 MiB of zeros written over data.
  const over = join(dir, 'over')
  writeFileSync(over, randomBytes(image.length, 3))
  const res2 = await apply(stream, over, { progress: true })
  t.equal(res2.written, 8 << 20, 'zeros are written over old data')
  sameBytes(t, readFileSync(over), image)
})

void t.test('grow and shrink with --undo, rolled back exactly', async (t) => {
  const dir = tempDir(t, 'apply')
  for (const [oldSize, newSize] of [
    [10_000, 30_000],
    [30_000, 10_000],
    [20_000, 20_000],
  ] as const) {
    const oldImage = randomBytes(oldSize, oldSize)
    const newImage = Buffer.concat([randomBytes(5000, 4), Buffer.alloc(newSize - 5000)])
    const target = join(dir, `t-${oldSize}-${newSize}`)
    const undo = join(dir, `u-${oldSize}-${newSize}`)
    writeFileSync(target, oldImage)
    for (const spool of [undefined, dir]) {
      await apply(await fullStream(newImage, 4096), target, { undo, spool, progress: spool !== undefined })
      sameBytes(t, readFileSync(target), newImage, `${oldSize} -> ${newSize}`)
      await apply(readFileSync(undo), target, { spool })
      sameBytes(t, readFileSync(target), oldImage, `${oldSize} -> ${newSize} rolled back`)
      rmSync(undo)
    }
  }
  // An undo journal rolls back to the old size: applied with --undo itself, it can be rolled forward again.
  t.same(
    readdirSync(dir).filter((f) => f.startsWith('.')),
    [],
    'no spool file left',
  )
})

void t.test('an incremental stream that would resize the target is a conflict', async (t) => {
  const dir = tempDir(t, 'apply')
  const B = 4096
  const small = randomBytes(8 * B, 31)
  const big = Buffer.concat([small, randomBytes(4 * B, 32)])
  const target = join(dir, 'target')
  const grow = await blockStream(big, [[B, B]], { metadata: { 'written-since': '7', input: 'era_invalidate' } })
  const shrink = await blockStream(small, [[B, B]], { metadata: { input: 'era_invalidate' } })
  for (const spool of [undefined, dir]) {
    writeFileSync(target, small)
    const before = snapshot(target)
    await t.rejects(apply(grow, target, { spool }), {
      code: 'ECONFLICT',
      message: /is 32768 bytes .*device of 49152 bytes .*grew since the last backup.*era-copy --all.*--force/,
    })
    sameFile(t, snapshot(target), before, 'a grown device: nothing written')
    writeFileSync(target, big)
    await t.rejects(apply(shrink, target, { spool }), {
      code: 'ECONFLICT',
      message: /cut the image short.*another device.*--force/,
    })
    t.equal(statSync(target).size, big.length, 'a shrunk one: nothing written')
  }
  // thin_delta reports every block a grown thin volume gained.
  const thin = await blockStream(big, [[8 * B, 4 * B]], { metadata: { input: 'thin_delta' } })
  writeFileSync(target, small)
  await apply(thin, target)
  sameBytes(t, readFileSync(target), big, 'a thin_delta stream grows the image')
  writeFileSync(target, small)
  await apply(grow, target, { force: true })
  t.equal(statSync(target).size, big.length, '--force grows it')
  await apply(shrink, target, { force: true })
  t.equal(statSync(target).size, small.length, '--force shrinks it')

  // A forced shrink cut short, then continued without --force: its journal shows it is the same apply.
  const wide = randomBytes(1200 * B, 33)
  const narrow = wide.subarray(0, 1100 * B)
  const regions: [number, number][] = Array.from({ length: 1100 }, (_, i) => [i * B, B])
  const cut = await blockStream(narrow, regions)
  const undo = join(dir, 'undo')
  writeFileSync(target, wide)
  const ends = recordEnds(cut)
  await t.rejects(apply(cut.subarray(0, (ends[1050] as number) + 3), target, { force: true, undo }), {
    message: /cut at byte .*1024 records were applied.*is incomplete/,
  })
  await t.rejects(apply(cut, target), { code: 'ECONFLICT' }, 'without the journal: refused')
  const other = join(dir, 'not-a-journal')
  writeFileSync(other, 'hello')
  await t.rejects(apply(cut, target, { undo: other }), { code: 'ECONFLICT' }, 'with a file that is no journal: refused')
  await apply(cut, target, { undo })
  sameBytes(t, readFileSync(target), narrow, 'continued to the end')
  await apply(readFileSync(undo), target)
  sameBytes(t, readFileSync(target), wide, 'rolled back whole')
})

void t.test('a journal batch is flushed at 1024 records and at 32 MiB', async (t) => {
  const dir = tempDir(t, 'apply')
  // 1100 small records.
  const oldImage = randomBytes(1100 * 512, 5)
  const newImage = randomBytes(1100 * 512, 6)
  const target = join(dir, 'small')
  writeFileSync(target, oldImage)
  await apply(await fullStream(newImage, 512), target, { undo: join(dir, 'u1') })
  await apply(readFileSync(join(dir, 'u1')), target)
  sameBytes(t, readFileSync(target), oldImage)
  // Three 16 MiB zero records over a sparse 48 MiB file: the first two fill a batch.
  const big = join(dir, 'big')
  const size = 48 << 20
  writeFileSync(big, randomBytes(1000, 7))
  truncateSync(big, size)
  const zeros = await blockStream(Buffer.alloc(size), [
    [0, 16 << 20],
    [16 << 20, 16 << 20],
    [32 << 20, 16 << 20],
  ])
  await apply(zeros, big, { undo: join(dir, 'u2') })
  t.equal(statSync(big).size, size)
  await apply(readFileSync(join(dir, 'u2')), big)
  const back = readFileSync(big)
  t.same(back.subarray(0, 1000), randomBytes(1000, 7))
  t.ok(isZero(back.subarray(1000)), 'rolled back')
})

void t.test('refused before anything is written', async (t) => {
  const dir = tempDir(t, 'apply')
  const oldImage = randomBytes(8192, 8)
  const newImage = randomBytes(8192, 9)
  const target = join(dir, 'target')
  writeFileSync(target, oldImage)
  const empty = join(dir, 'empty')
  writeFileSync(empty, '')
  const missing = join(dir, 'missing')
  const partial = await blockStream(newImage, [[0, 4096]], { metadata: { 'written-since': '7' } })
  const partialNoEra = await blockStream(newImage, [[0, 4096]])
  const delta = await deltaStream(oldImage, newImage, 4096)
  const undo = join(dir, 'undo')
  await apply(await fullStream(newImage), target, { undo })
  writeFileSync(target, oldImage)
  const journal = readFileSync(undo)
  const digests = await digestStream(oldImage, 4096)
  const bigger = randomBytes(9000, 10)
  writeFileSync(join(dir, 'other-size'), bigger)

  const cases: [string, Buffer, string, Partial<ApplyOptions>, { code: string; message: RegExp }][] = [
    [
      'a digest stream',
      digests,
      target,
      {},
      { code: 'EINPUT', message: /digest stream \(from bsum\).*give it to bdiff/ },
    ],
    // era-apply refuses deltas; the engine's default is bpatch's, to check them.
    ['a delta to era-apply', delta, target, { deltas: 'refuse' }, { code: 'EUSAGE', message: /apply it with bpatch/ }],
    [
      'a partial stream onto a missing target',
      partial,
      missing,
      {},
      {
        code: 'ECONFLICT',
        message: /does not exist, and this stream holds only some blocks \(those written since era 7\)/,
      },
    ],
    [
      'a partial stream onto an empty target',
      partialNoEra,
      empty,
      {},
      { code: 'ECONFLICT', message: /is empty, and this stream holds only some blocks, not/ },
    ],
    [
      'a delta onto a missing target',
      delta,
      missing,
      { program: 'bpatch' },
      { code: 'ECONFLICT', message: /does not exist: a delta applies only/ },
    ],
    [
      'a delta onto an image of another size',
      delta,
      join(dir, 'other-size'),
      { program: 'bpatch' },
      { code: 'ECONFLICT', message: /is 9000 bytes, the delta was made against an image of 8192 bytes/ },
    ],
    [
      'a journal onto a missing target',
      journal,
      missing,
      {},
      { code: 'ECONFLICT', message: /an undo journal rolls back an existing target/ },
    ],
    [
      'a journal onto a target of another size',
      journal,
      join(dir, 'other-size'),
      {},
      { code: 'ECONFLICT', message: /is 9000 bytes; the apply this journal undoes left it at 8192 bytes/ },
    ],
    [
      'a target that is a device but no block device',
      partial,
      '/dev/null',
      {},
      { code: 'EDEVICE', message: /^\/dev\/null: not a regular file or block device; nothing was written$/ },
    ],
    [
      'a target that is a directory',
      partial,
      dir,
      {},
      { code: 'EDEVICE', message: /not a regular file or block device/ },
    ],
    [
      'a target path through a file',
      partial,
      join(target, 'x'),
      {},
      { code: 'EDEVICE', message: /target\/x: .*not a directory.*; nothing was written/ },
    ],
  ]
  for (const [what, stream, path, options, expected] of cases) {
    for (const spool of [undefined, dir]) {
      const before = snapshot(path)
      await t.rejects(apply(stream, path, { ...options, spool }), expected, `${what}${spool ? ' (--spool)' : ''}`)
      sameFile(t, snapshot(path), before, `${what}: untouched`)
    }
  }
  // --force lets some through.
  await apply(partial, missing, { force: true })
  sameBytes(t, readFileSync(missing).subarray(0, 4096), newImage.subarray(0, 4096))
  sameBytes(t, readFileSync(missing).subarray(4096), Buffer.alloc(4096))
  await apply(delta, join(dir, 'other-size'), { program: 'bpatch', force: true })
  sameBytes(t, readFileSync(join(dir, 'other-size')), newImage, 'bpatch --force writes a delta anywhere')
  writeFileSync(join(dir, 'other-size'), bigger)
  await apply(delta, join(dir, 'other-size'), { deltas: 'refuse', force: true })
  sameBytes(t, readFileSync(join(dir, 'other-size')), newImage, 'era-apply --force writes a delta without checks')
  writeFileSync(join(dir, 'other-size'), bigger)
  await apply(journal, join(dir, 'other-size'), { force: true })
  sameBytes(t, readFileSync(join(dir, 'other-size')), oldImage, 'a journal with --force')
  t.same(
    readdirSync(dir).filter((f) => f.startsWith('.')),
    [],
    'no spool file left',
  )
})

void t.test('bpatch: base checks, re-runs and conflicts', async (t) => {
  const dir = tempDir(t, 'apply')
  const B = 4096
  const oldImage = randomBytes(10 * B, 11)
  const newImage = Buffer.from(oldImage)
  randomBytes(B, 12).copy(newImage, 2 * B)
  newImage.fill(0, 5 * B, 6 * B)
  const shrunk = newImage.subarray(0, 7 * B + 100)
  const delta = await deltaStream(oldImage, shrunk, B)
  const target = join(dir, 'target')
  writeFileSync(target, oldImage)
  const first = await apply(delta, target, { program: 'bpatch' })
  sameBytes(t, readFileSync(target), shrunk)
  t.equal(first.records, 3)
  const again = await apply(delta, target, { program: 'bpatch', spool: dir })
  t.equal(again.written, 0, 'a re-run writes nothing')
  t.equal(again.skipped, 2 * B + 100)

  // The target changed where the delta writes: a conflict, and nothing written.
  const other = join(dir, 'other')
  const changed = Buffer.from(oldImage)
  flip(changed, 5 * B + 7)
  const grown = Buffer.concat([newImage, randomBytes(B, 13)])
  const growing = await deltaStream(oldImage, grown, B)
  for (const [stream, what] of [
    [delta, 'a shrinking delta'],
    [growing, 'a growing delta'],
  ] as const) {
    for (const spool of [undefined, dir]) {
      writeFileSync(other, changed)
      const before = snapshot(other)
      await t.rejects(apply(stream, other, { program: 'bpatch', spool }), {
        code: 'ECONFLICT',
        message: new RegExp(
          `conflict at byte ${5 * B} \\(chunk 5\\): .* Stopped: ${spool ? 'nothing was written' : '1 records were applied before it'}`,
        ),
      })
      if (spool) sameFile(t, snapshot(other), before, `${what} with --spool: nothing written`)
    }
  }
  // A conflict at the first record: the target is neither written nor resized.
  const first2 = Buffer.from(oldImage)
  flip(first2, 2 * B)
  writeFileSync(other, first2)
  const untouched = snapshot(other)
  await t.rejects(apply(growing, other, { program: 'bpatch' }), {
    code: 'ECONFLICT',
    message: /conflict at byte 8192 \(chunk 2\).*Stopped: 0 records were applied before it/,
  })
  sameFile(t, snapshot(other), untouched, 'not grown either')
  // Past the end of the old image a target of the new size must hold holes or the new data.
  const grownElsewhere = Buffer.concat([oldImage, randomBytes(B, 25)])
  writeFileSync(other, grownElsewhere)
  await t.rejects(apply(growing, other, { program: 'bpatch' }), {
    code: 'ECONFLICT',
    message: /conflict at byte 40960 \(chunk 10\): .* holds data past the end of the 40960-byte image/,
  })
  writeFileSync(other, Buffer.concat([oldImage, Buffer.alloc(B)]))
  await apply(growing, other, { program: 'bpatch' })
  sameBytes(t, readFileSync(other), grown, 'holes past the old end are fine')
  // A target already shrunk whose last chunk changed: its base is longer than what is left.
  const last = join(dir, 'last')
  const tail = Buffer.from(shrunk)
  flip(tail, 7 * B + 50)
  writeFileSync(last, tail)
  const withTail = await deltaStream(oldImage, Buffer.concat([shrunk.subarray(0, 7 * B), randomBytes(100, 14)]), B)
  await t.rejects(apply(withTail, last, { program: 'bpatch' }), ConflictError)
})

void t.test('--spool: the stream is verified whole before the target is opened', async (t) => {
  const dir = tempDir(t, 'apply')
  const oldImage = randomBytes(64 * 1024, 15)
  const newImage = randomBytes(64 * 1024, 16)
  const stream = await fullStream(newImage, 4096)
  const target = join(dir, 'target')
  writeFileSync(target, oldImage)
  const before = snapshot(target)
  // A flipped bit in the last record.
  const corrupt = Buffer.from(stream)
  flip(corrupt, stream.length - 200)
  await t.rejects(apply(corrupt, target, { spool: dir }), {
    code: 'ECORRUPT',
    message: new RegExp(`checksum mismatch.*: nothing was written to ${target}$`),
  })
  sameFile(t, snapshot(target), before)
  await t.rejects(apply(corrupt, target), {
    code: 'ECORRUPT',
    message: /15 records were applied before it, .* is incomplete \(part new, part old\); --spool keeps/,
  })
  writeFileSync(target, oldImage)
  await t.rejects(apply(corrupt, target, { spool: dir, undo: join(dir, 'u') }), { code: 'ECORRUPT' })
  t.equal(snapshot(join(dir, 'u')), null, 'no journal was started for a stream that was refused')

  // The spool file is damaged between its check and its use: found, and said.
  function* damaging(): Generator<Buffer> {
    yield stream
    for (const fd of readdirSync('/proc/self/fd')) {
      const link = (() => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`)
        } catch {
          return '' // the descriptor of the listing itself, closed by now
        }
      })()
      if (link.includes('-spool-')) writeSync(Number(fd), Buffer.from('garbage!'), 0, 8, stream.length - 300)
    }
  }
  writeFileSync(target, oldImage)
  await t.rejects(apply(damaging(), target, { spool: dir }), {
    code: 'ECORRUPT',
    message:
      /: the spool file was damaged: 15 records were applied before it, .*target is incomplete \(part new, part old\)$/,
  })
})

void t.test('a journal of an apply that wrote nothing is removed with the failure', async (t) => {
  const dir = tempDir(t, 'apply')
  const image = randomBytes(20_000, 17)
  const stream = await fullStream(image, 4096)
  const target = join(dir, 'target')
  writeFileSync(target, randomBytes(20_000, 18))
  const ends = recordEnds(stream)
  // Cut after two records: both wait in the journal's batch, unwritten.
  await t.rejects(apply(stream.subarray(0, ends[2]), target, { undo: join(dir, 'u') }), {
    message: new RegExp(`nothing was written to ${target}$`),
  })
  t.equal(snapshot(join(dir, 'u')), null)
  // A target this apply created goes, and its journal with it.
  await t.rejects(apply(stream.subarray(0, ends[2]), join(dir, 'new'), { undo: join(dir, 'u') }), {
    message: /new was new and has been removed$/,
  })
  t.same(readdirSync(dir), ['target'])
})

void t.test('a stream of another kind than era-apply expects, through every kind', async (t) => {
  const dir = tempDir(t, 'apply')
  const image = randomBytes(4096, 19)
  const target = join(dir, 't')
  writeFileSync(target, image)
  const undo = await buildStream({ kind: StreamKind.UNDO, size: 4096, baseSize: 4096, blockSize: 4096 }, async (w) => {
    await w.data(0, Buffer.alloc(4096, 1))
  })
  const res = await apply(undo, target)
  t.equal(res.header.kind, StreamKind.UNDO)
  sameBytes(t, readFileSync(target), Buffer.alloc(4096, 1))
})

void t.test('a stream of the original era_copy goes to its own engine, with a warning', async (t) => {
  const dir = tempDir(t, 'apply')
  const target = join(dir, 't')
  writeFileSync(target, Buffer.alloc(2048, 7))
  const head = Buffer.alloc(24)
  head.write('ERARANGE', 0, 'latin1')
  head.writeBigInt64LE(512n, 8)
  head.writeBigInt64LE(512n, 16)
  const err = textSink()
  await apply(Buffer.concat([head, Buffer.alloc(512, 9)]), target, { stderr: err.stream })
  t.match(err.text(), /ERARANGE/)
  sameBytes(t, readFileSync(target).subarray(512, 1024), Buffer.alloc(512, 9))
})

void t.test('a block device target (root)', { skip: loopUnavailable() }, async (t) => {
  const dir = tempDir(t, 'apply')
  const backing = join(dir, 'backing')
  writeFileSync(backing, randomBytes(1 << 20, 20))
  await withLoop(backing, async (dev) => {
    const small = Buffer.concat([randomBytes(4096, 21), Buffer.alloc(4096), randomBytes(4096, 22)])
    const big = randomBytes(2 << 20, 23)
    await t.rejects(apply(await fullStream(big), dev, { spool: dir }), {
      code: 'EDEVICE',
      message: /is too small: 1048576 bytes \(1\.00 MiB\), the stream is for 2097152 bytes.*nothing was written/,
    })
    const err = textSink()
    await apply(await fullStream(small), dev, { undo: join(dir, 'u'), stderr: err.stream })
    const now = readFileSync(dev)
    sameBytes(t, now.subarray(0, small.length), small, 'zeros are written on a device: it has no holes')
    t.equal(err.text(), '', 'a block stream smaller than the device: no note')
    const delta = await deltaStream(now, Buffer.concat([small, Buffer.alloc(4096)]), 4096)
    const bp = textSink()
    await apply(delta, dev, { program: 'bpatch', stderr: bp.stream })
    t.match(bp.text(), /is a block device of 1048576 bytes; the image is 16384 bytes, the bytes after it are left/)
    await apply(delta, dev, { program: 'bpatch' })
    await apply(readFileSync(join(dir, 'u')), dev)
    sameBytes(t, readFileSync(dev), readFileSync(backing))
    // A device held open exclusively elsewhere is refused before the stream is spooled.
    const fd = openSync(dev, constants.O_RDONLY | constants.O_EXCL)
    try {
      await t.rejects(apply(delta, dev, { program: 'bpatch', spool: dir }), {
        code: 'EDEVICE',
        message: /the device is in use/,
      })
    } finally {
      closeSync(fd)
    }
  })
})

void t.test('a target in a missing directory is an error, with or without --spool', async (t) => {
  const dir = tempDir(t, 'apply')
  for (const spool of [undefined, dir]) {
    await t.rejects(apply(await fullStream(randomBytes(100, 24)), join(dir, 'nope', 'target'), { spool }), {
      code: 'EDEVICE',
      message: /nope\/target: no such file or device/,
    })
  }
  t.same(readdirSync(dir), [])
})
