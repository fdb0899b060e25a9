import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import type { Target } from '../../packages/core/src/device.js'
import { HEADER_SIZE, StreamKind, type StreamHeader } from '../../packages/core/src/format.js'
import { StreamParser } from '../../packages/core/src/parse.js'
import { randomBytes } from '../lib/data.js'
import { blockStream, deltaStream, fullStream, hash, recordEnds, sameBytes, tempDir, textSink } from '../safety/lib.js'

// One journal sync per record, so that a stream cut after any record leaves
// a target that was written to: undo.js reads this when it is loaded.
process.env.BLOCKPIPE_UNDO_BATCH_RECORDS = '1'
const { UndoJournal, streamId, syncDirectory } = await import('../../packages/core/src/undo.js')
const { applyStream } = await import('../../packages/core/src/apply.js')
const { openTarget, close } = await import('../../packages/core/src/device.js')

type Options = Parameters<typeof applyStream>[1]
const apply = (stream: Buffer, target: string, options: Partial<Options> = {}) =>
  applyStream([stream], { program: 'bpatch', target, ...options })

function headerOf(stream: Buffer): StreamHeader {
  const parser = new StreamParser(hash)
  parser.push(stream)
  parser.next()
  return parser.header as StreamHeader
}

void t.test(
  'an interrupted bpatch with a torn chunk converges on a re-run with its journal, then rolls back',
  async (t) => {
    const dir = tempDir(t, 'undo')
    const B = 4096
    // The old image ends inside chunk 6: that chunk crosses the old end, chunk 7 is past it.
    const oldImage = randomBytes(6 * B + 1000, 1)
    const newImage = Buffer.concat([oldImage, Buffer.alloc(2 * B - 1000)])
    for (const c of [1, 3, 6, 7]) randomBytes(B, 10 + c).copy(newImage, c * B)
    newImage.fill(0, 4 * B, 5 * B)
    const delta = await deltaStream(oldImage, newImage, B)
    const ends = recordEnds(delta)
    t.equal(ends.length, 1 + 5 + 1, 'header, five records (chunks 1, 3, 4, 6, 7), end')

    const target = join(dir, 'target')
    const undo = join(dir, 'undo')
    writeFileSync(target, oldImage)
    // Cut in the end record: every record was written, the journal has no end.
    const cut = delta.subarray(0, (ends[5] as number) + 10)
    await t.rejects(apply(cut, target, { undo }), {
      code: 'ETRUNCATED',
      message: new RegExp(
        `5 records were applied before it, ${target} is incomplete \\(part new, part old\\); to finish, run it again` +
          ` with the whole stream and the same --undo ${undo}; to roll back: bpatch ${target} < ${undo}$`,
      ),
    })
    // A power loss tore the writes of chunk 6, which crosses the old end (half
    // new, half old), and of chunk 7, past it (half new, half a hole).
    const torn = readFileSync(target)
    oldImage.copy(torn, 6 * B + 500, 6 * B + 500, 6 * B + 1000)
    torn.fill(0, 7 * B + 2000)
    writeFileSync(target, torn)
    t.equal(statSync(target).size, newImage.length, 'grown before the first write')

    // Without the journal the torn chunks are neither old nor new: conflicts.
    const copy = join(dir, 'copy')
    writeFileSync(copy, torn)
    await t.rejects(apply(delta, copy), { code: 'ECONFLICT', message: /conflict at byte 24576 \(chunk 6\)/ })
    torn.set(newImage.subarray(6 * B, 7 * B), 6 * B)
    writeFileSync(copy, torn)
    await t.rejects(apply(delta, copy), { code: 'ECONFLICT', message: /conflict at byte 28672 \(chunk 7\)/ })

    // With it, the re-run rewrites what the journal holds without asking.
    const again = await apply(delta, target, { undo })
    sameBytes(t, readFileSync(target), newImage, 'converged on the new image')
    t.equal(again.records, 5)
    const back = await apply(readFileSync(undo), target)
    t.equal(back.header.kind, StreamKind.UNDO)
    sameBytes(t, readFileSync(target), oldImage, 'the continued journal rolls back to the old image, size included')
  },
)

void t.test('a journal with a torn last record is continued from its last whole record', async (t) => {
  const dir = tempDir(t, 'undo')
  const oldImage = randomBytes(40_000, 2)
  const newImage = randomBytes(40_000, 3)
  const stream = await fullStream(newImage, 8192)
  const ends = recordEnds(stream)
  const target = join(dir, 'target')
  const undo = join(dir, 'undo')
  writeFileSync(target, oldImage)
  await t.rejects(apply(stream.subarray(0, (ends[2] as number) + 5), target, { undo, program: 'era-apply' }))
  // A crash while the journal was being written: half a record at its end.
  const journal = readFileSync(undo)
  writeFileSync(undo, Buffer.concat([journal, journal.subarray(HEADER_SIZE, HEADER_SIZE + 300)]))
  const err = textSink()
  const partial = await apply(readFileSync(undo), join(dir, 'target'), { stderr: err.stream, program: 'era-apply' })
  t.equal(partial.end, undefined, 'an unfinished journal has no end')
  t.match(err.text(), /warning: the undo journal has no end record .*the 2 regions it recorded were restored/)
  sameBytes(t, readFileSync(target), oldImage, 'rolled back from the unfinished journal')
  // Forward again, interrupted again, continued to the end.
  writeFileSync(undo, Buffer.concat([journal, journal.subarray(HEADER_SIZE, HEADER_SIZE + 300)]))
  await apply(stream, target, { undo, program: 'era-apply' })
  sameBytes(t, readFileSync(target), newImage)
  await apply(readFileSync(undo), target, { program: 'era-apply' })
  sameBytes(t, readFileSync(target), oldImage)
})

void t.test('a journal of many MiB is read whole when an apply is continued', async (t) => {
  const dir = tempDir(t, 'undo')
  // Journal records straddle the pieces the journal is read in when continued.
  const oldImage = randomBytes(3 << 20, 4)
  const newImage = randomBytes(3 << 20, 5)
  const stream = await fullStream(newImage, 65536)
  const ends = recordEnds(stream)
  const target = join(dir, 'target')
  const undo = join(dir, 'undo')
  writeFileSync(target, oldImage)
  await t.rejects(apply(stream.subarray(0, (ends[40] as number) + 5), target, { undo, program: 'era-apply' }))
  t.ok(statSync(undo).size > 2 << 20, 'the journal spans several pieces')
  await apply(stream, target, { undo, program: 'era-apply' })
  sameBytes(t, readFileSync(target), newImage)
  await apply(readFileSync(undo), target, { program: 'era-apply' })
  sameBytes(t, readFileSync(target), oldImage, 'every region of the first run rolled back too')
})

void t.test('an undo journal with a torn header started afresh; one that never was: nothing to undo', async (t) => {
  const dir = tempDir(t, 'undo')
  const oldImage = randomBytes(10_000, 4)
  const newImage = randomBytes(12_000, 5)
  const stream = await fullStream(newImage)
  for (const [name, content] of [
    ['empty', Buffer.alloc(0)],
    ['magic', Buffer.from([0x89, 0x42, 0x50])],
    ['header', Buffer.alloc(HEADER_SIZE + 20)],
  ] as const) {
    const target = join(dir, `target-${name}`)
    const undo = join(dir, `undo-${name}`)
    writeFileSync(target, oldImage)
    writeFileSync(undo, content)
    if (name === 'header') {
      // A header of the journal of the stream whose metadata never reached the disk.
      const real = join(dir, 'real')
      writeFileSync(join(dir, 'scratch'), oldImage)
      const sink = openTarget(join(dir, 'scratch'), { create: false })
      const j = await UndoJournal.open(hash, { path: real, stream: headerOf(stream), target: sink, program: 'x' })
      j.close()
      close(sink)
      writeFileSync(undo, readFileSync(real).subarray(0, HEADER_SIZE + 20))
    }
    await apply(stream, target, { undo, program: 'era-apply' })
    sameBytes(t, readFileSync(target), newImage, name)
    await apply(readFileSync(undo), target, { program: 'era-apply' })
    sameBytes(t, readFileSync(target), oldImage, `${name}: rolled back`)
  }
})

void t.test('undo files that are refused, before anything is written', async (t) => {
  const dir = tempDir(t, 'undo')
  const oldImage = randomBytes(10_000, 6)
  const newImage = randomBytes(10_000, 7)
  const stream = await fullStream(newImage)
  // Another stream: the journal knows a stream by its header, so this one's differs.
  const other = await blockStream(
    randomBytes(10_000, 8),
    [
      [0, 5000],
      [5000, 5000],
    ],
    { full: true, metadata: { night: '2' } },
  )
  const target = join(dir, 'target')
  writeFileSync(target, oldImage)
  const finished = join(dir, 'finished')
  await apply(stream, target, { undo: finished })
  writeFileSync(target, oldImage)
  const unfinished = join(dir, 'unfinished')
  await t.rejects(apply(other.subarray(0, recordEnds(other)[2]), target, { undo: unfinished }))
  t.not(readFileSync(target).compare(oldImage), 0, 'the other stream was partly applied')
  writeFileSync(target, oldImage)
  const notJournal = join(dir, 'text')
  writeFileSync(notJournal, 'these are my notes, not a journal at all')
  const blockFile = join(dir, 'block.bps')
  writeFileSync(blockFile, stream)
  mkdirSync(join(dir, 'directory'))

  const directory = join(dir, 'directory')
  const cases: [string, string, RegExp][] = [
    [finished, 'finished', /exists and holds the complete journal of a finished apply/],
    [unfinished, 'another stream', /is the unfinished journal of another stream/],
    [notJournal, 'not a journal', /exists and is not an undo journal; give each apply a new undo file/],
    [blockFile, 'a block stream', /holds a block stream, not an undo journal/],
    [target, 'the target itself', /is the target itself/],
    [directory, 'a directory', /cannot open the undo file: .*is a directory|exists and is not a regular file/],
  ]
  for (const [undo, what, message] of cases) {
    const before = undo === directory ? undefined : readFileSync(undo)
    for (const spool of [undefined, dir]) {
      await t.rejects(
        apply(stream, target, { undo, spool, program: 'era-apply' }),
        { message },
        `${what}, spool ${spool}`,
      )
      sameBytes(t, readFileSync(target), oldImage, `${what}: the target is untouched`)
    }
    if (before !== undefined) sameBytes(t, readFileSync(undo), before, `${what}: the file is untouched`)
  }
  // Checked before spooling even for a target that does not exist yet.
  await t.rejects(apply(stream, join(dir, 'not-yet'), { undo: finished, spool: dir, program: 'era-apply' }), {
    message: /holds the complete journal of a finished apply/,
  })
  t.notOk(existsSync(join(dir, 'not-yet')))
  // The unfinished journal of this stream, for a target that has changed size since.
  const mine = join(dir, 'mine')
  await t.rejects(apply(stream.subarray(0, recordEnds(stream)[2]), target, { undo: mine }))
  writeFileSync(target, randomBytes(5000, 9))
  for (const spool of [undefined, dir]) {
    await t.rejects(apply(stream, target, { undo: mine, spool }), {
      code: 'ECONFLICT',
      message: /made when .*target was 10000 bytes; it is now 5000 bytes, neither that nor the stream's 10000/,
    })
  }
  // A journal that cannot be created at all.
  await t.rejects(apply(stream, target, { undo: join(dir, 'missing', 'undo') }), {
    code: 'EDEVICE',
    message: /cannot open the undo file: .*missing\/undo: no such file/,
  })
  // A device is no journal.
  t.throws(
    () =>
      UndoJournal.check(hash, '/dev/null', headerOf(stream), {
        path: target,
        exists: true,
        size: 0,
        blockDevice: false,
      }),
    /the undo file \/dev\/null exists and is not a regular file/,
  )
  t.throws(
    () =>
      UndoJournal.check(hash, join(target, 'x'), headerOf(stream), {
        path: target,
        exists: false,
        size: 0,
        blockDevice: false,
      }),
    { code: 'EDEVICE' },
    'a path through a regular file is not a missing file',
  )
})

void t.test('a rollback with a journal that lost its end record restores every region overwritten', async (t) => {
  const dir = tempDir(t, 'undo')
  const oldImage = randomBytes(50_000, 20)
  const newImage = randomBytes(30_000, 21)
  const stream = await fullStream(newImage, 4096)
  const target = join(dir, 'target')
  const undo = join(dir, 'undo')
  writeFileSync(target, oldImage)
  // The whole apply, then the journal loses its end record: as after a crash
  // just before the end record reached the disk. It shrank the target too.
  await apply(stream, target, { undo, program: 'era-apply' })
  t.equal(statSync(target).size, 30_000)
  const journal = readFileSync(undo)
  const ends = recordEnds(journal)
  writeFileSync(undo, journal.subarray(0, ends[ends.length - 2]))
  const before = readFileSync(target)
  // --spool will not apply a journal that is not whole...
  await t.rejects(apply(readFileSync(undo), target, { spool: dir }), {
    code: 'ETRUNCATED',
    message: /nothing was written to .*This undo journal has no valid end record.*run without --spool/,
  })
  sameBytes(t, readFileSync(target), before, '--spool left the target as it was')
  // ...without it, it is applied, with a warning.
  const res = await apply(readFileSync(undo), target)
  t.equal(res.end, undefined)
  sameBytes(t, readFileSync(target), oldImage, 'every region restored, the size too')
})

void t.test('the journal: what it saves and where', async (t) => {
  const dir = tempDir(t, 'undo')
  const image = Buffer.concat([randomBytes(5000, 30), Buffer.alloc(5000)])
  writeFileSync(join(dir, 'target'), image)
  const target: Target = openTarget(join(dir, 'target'), { create: false })
  t.teardown(() => close(target))
  const stream = await blockStream(Buffer.alloc(20_000), [[0, 20_000]])
  const header = headerOf(stream)
  const journal = await UndoJournal.open(hash, { path: join(dir, 'undo'), stream: header, target, program: 'test' })
  t.equal(journal.created, true)
  t.equal(journal.oldSize, 10_000)
  t.equal(journal.resumedUpTo, 0)
  await journal.save(target, 0, 4000)
  await journal.save(target, 2000, 4000) // overlaps: only 4000..6000 is new
  await journal.save(target, 9000, 5000) // past the old end: only 9000..10000
  await journal.save(target, 12_000, 100) // wholly past it: nothing
  t.equal(journal.regions, 3)
  const bytes = journal.bytes
  await journal.finish()
  const saved = readFileSync(join(dir, 'undo'))
  t.equal(saved.length, bytes + 96, 'the end record follows')
  const parser = new StreamParser(hash)
  parser.push(saved)
  const records = []
  for (let item = parser.next(); item !== null; item = parser.next())
    if (item.type === 'record') records.push(item.record)
  t.same(
    records.map((r) => [r.type, r.offset, r.length]),
    [
      ['DATA', 0, 4000],
      ['DATA', 4000, 2000],
      ['ZERO', 9000, 1000],
    ],
  )
  t.equal(parser.header?.metadata['stream-id'], streamId(header))
  t.equal(parser.header?.metadata.target, join(dir, 'target'))
  t.equal(parser.header?.size, 10_000)
  t.equal(parser.header?.baseSize, 20_000)
})

void t.test('syncDirectory is best effort', (t) => {
  const dir = tempDir(t, 'undo')
  t.doesNotThrow(() => syncDirectory(join(dir, 'file')))
  t.doesNotThrow(() => syncDirectory('/proc/self/status'), 'procfs does not sync directories')
  t.doesNotThrow(() => syncDirectory(join(dir, 'missing', 'file')))
  t.end()
})
