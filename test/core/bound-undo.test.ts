import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { RECORD_FLAG_BASE, StreamKind, type StreamHeader } from '../../packages/core/src/format.js'
import { StreamParser, type StreamRecord } from '../../packages/core/src/parse.js'
import { StreamWriter } from '../../packages/core/src/write.js'
import { randomBytes } from '../lib/data.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'
import { fullStream, hash, sameBytes, snapshot, sameFile, tempDir, textSink } from '../safety/lib.js'

// Undo journals bound to what they undo: the target's identity in the
// header, the digest of what the apply wrote in every record.

// One journal sync per record, so that a cut stream leaves a target written to: read when undo.js loads.
process.env.BLOCKPIPE_UNDO_BATCH_RECORDS = '1'
const { TARGET_ID_KEY, isBoundJournal, streamId, targetId } = await import('../../packages/core/src/undo.js')
const { applyStream } = await import('../../packages/core/src/apply.js')

type Options = Parameters<typeof applyStream>[1]
const apply = (stream: Buffer, target: string, options: Partial<Options> = {}) =>
  applyStream([stream], { program: 'era-apply', target, ...options })

function parse(stream: Buffer): { header: StreamHeader; records: StreamRecord[]; done: boolean } {
  const parser = new StreamParser(hash)
  const records: StreamRecord[] = []
  try {
    parser.push(stream)
    for (let item = parser.next(); item !== null; item = parser.next()) {
      if (item.type === 'record') records.push(item.record)
    }
  } catch {
    // A journal cut short: what came before.
  }
  return { header: parser.header as StreamHeader, records, done: parser.done }
}

/** An image and a night's change of it, in 4 KiB pieces. */
function night(image: Buffer, seed: number, size = image.length): Buffer {
  const out = Buffer.alloc(size)
  image.copy(out, 0, 0, Math.min(size, image.length))
  for (let at = 0; at < size; at += 3 * 4096) randomBytes(Math.min(4096, size - at), seed + at).copy(out, at)
  return out
}

void t.test('a journal names its target and the digest of what the apply wrote', async (t) => {
  const dir = tempDir(t, 'bound')
  const target = join(dir, 'img')
  const undo = join(dir, 'u')
  const before = randomBytes(40_000, 1)
  writeFileSync(target, before)
  // Shrunk: the tail past the new end is journaled with nothing to compare.
  const after = night(before, 2, 30_000)
  after.fill(0, 8192, 12288)
  await apply(await fullStream(after), target, { undo })
  sameBytes(t, readFileSync(target), after)
  const journal = parse(readFileSync(undo))
  t.ok(journal.done)
  t.ok(isBoundJournal(journal.header))
  t.equal(journal.header.metadata[TARGET_ID_KEY], targetId(statSync(target)))
  t.match(journal.header.metadata[TARGET_ID_KEY], /^file:\d+:\d+$/)
  t.equal(journal.header.size, 40_000)
  t.equal(journal.header.baseSize, 30_000)
  let covered = 0
  for (const rec of journal.records) {
    t.equal(rec.flags & RECORD_FLAG_BASE, RECORD_FLAG_BASE, `record at ${rec.offset} has a base digest`)
    const baseLength = Math.max(0, Math.min(rec.length, 30_000 - rec.offset))
    t.equal(rec.baseLength, baseLength)
    t.equal(rec.baseDigest, hash.digest(after.subarray(rec.offset, rec.offset + baseLength), 0n))
    covered = rec.offset + rec.length
  }
  t.equal(covered, 40_000, 'the shrunk tail is journaled too')
  await apply(readFileSync(undo), target)
  sameBytes(t, readFileSync(target), before, 'rolled back')
  t.equal(targetId({ isBlockDevice: () => true, rdev: (259 << 8) | 3, dev: 0, ino: 0 }), 'block:259:3')
  // Linux's encoding of major 0x1234, minor 0x10067: the high bits of both above the low ones.
  const big = Number(0x67n | (0x234n << 8n) | (0x10000n << 12n) | (0x1000n << 32n))
  t.equal(targetId({ isBlockDevice: () => true, rdev: big, dev: 0, ino: 0 }), `block:${0x1234}:${0x10067}`)
})

void t.test('undo journals out of order, or on another image: exit 3 before anything is written', async (t) => {
  const dir = tempDir(t, 'bound')
  const target = join(dir, 'img')
  const night0 = randomBytes(64 * 1024, 10)
  const night1 = night(night0, 11)
  const night2 = night(night1, 12)
  writeFileSync(target, night0)
  await apply(await fullStream(night1), target, { undo: join(dir, 'u1') })
  await apply(await fullStream(night2), target, { undo: join(dir, 'u2') })
  sameBytes(t, readFileSync(target), night2)

  // Oldest first: the target is not what the apply of u1 left.
  const was = snapshot(target)
  await t.rejects(apply(readFileSync(join(dir, 'u1')), target), {
    code: 'ECONFLICT',
    exitCode: 3,
    message:
      /^conflict at byte \d+: .* holds neither what the apply this undo journal undoes wrote there .* out of order/,
  })
  sameFile(t, snapshot(target), was, 'the target is untouched')

  // An unrelated image of the same size.
  const other = join(dir, 'other')
  const unrelated = randomBytes(64 * 1024, 13)
  writeFileSync(other, unrelated)
  await t.rejects(apply(readFileSync(join(dir, 'u2')), other), { code: 'ECONFLICT' })
  sameBytes(t, readFileSync(other), unrelated, 'the unrelated image is untouched')
  t.same(
    readdirSync(dir).filter((f) => f.startsWith('.')),
    [],
    'no spool file left',
  )

  // Newest first: exact. A copy of the image (another inode) rolls back too, with a note.
  const copy = join(dir, 'copy')
  writeFileSync(copy, night2)
  const err = textSink()
  await apply(readFileSync(join(dir, 'u2')), copy, { stderr: err.stream })
  t.match(
    err.text(),
    /warning: this undo journal was made for .*img \(file:\d+:\d+\); .*copy is file:\d+:\d+ \(a copy\?\)/,
  )
  sameBytes(t, readFileSync(copy), night1)
  await apply(readFileSync(join(dir, 'u2')), target)
  await apply(readFileSync(join(dir, 'u1')), target)
  sameBytes(t, readFileSync(target), night0, 'rolled back two nights')

  // --force writes regardless.
  await apply(readFileSync(join(dir, 'u2')), other, { force: true })
  t.equal(statSync(other).size, night1.length)
})

void t.test('a journal is not continued onto another target', async (t) => {
  const dir = tempDir(t, 'bound')
  const a = join(dir, 'a')
  const b = join(dir, 'b')
  const undo = join(dir, 'u')
  const base = randomBytes(64 * 1024, 20)
  writeFileSync(a, base)
  writeFileSync(b, randomBytes(64 * 1024, 21))
  const stream = await fullStream(night(base, 22))
  // Cut inside the last record: A was written in part, the journal has no end.
  await t.rejects(apply(stream.subarray(0, stream.length - 100), a, { undo }))
  const journal = snapshot(undo)
  const bBefore = snapshot(b)
  await t.rejects(apply(stream, b, { undo }), {
    code: 'ECONFLICT',
    message: new RegExp(
      `^the undo file ${undo} is the unfinished journal of this stream applied to ${a} \\(file:\\d+:\\d+\\), and ` +
        `${b} is another file \\(file:\\d+:\\d+\\): finish that apply .*Nothing was written$`,
    ),
  })
  await t.rejects(apply(stream, b, { undo, spool: dir }), { code: 'ECONFLICT' })
  // --spool checks the journal before the target is created: a target that is not there yet.
  const absent = join(dir, 'absent')
  await t.rejects(apply(stream, absent, { undo, spool: dir }), {
    code: 'ECONFLICT',
    message: `${absent} does not exist: finish that apply`,
  })
  t.notOk(existsSync(absent))
  // A new target is created before the journal is opened (then removed): another file.
  await t.rejects(apply(stream, join(dir, 'new'), { undo }), { code: 'ECONFLICT', message: /new is another file/ })
  t.notOk(existsSync(join(dir, 'new')), 'the new target was removed')
  await t.rejects(apply(stream, join(dir, 'new'), { undo, spool: dir }), { message: /new does not exist/ })
  sameFile(t, snapshot(b), bBefore, 'B untouched')
  sameFile(t, snapshot(undo), journal, 'the journal untouched')
  if (loopUnavailable() === undefined) {
    // A block device is named as one.
    const backing = join(dir, 'backing')
    writeFileSync(backing, Buffer.alloc(64 * 1024))
    await withLoop(backing, async (dev) => {
      await t.rejects(apply(stream, dev, { undo }), {
        code: 'ECONFLICT',
        message: /is another device \(block:\d+:\d+\)/,
      })
    })
    sameFile(t, snapshot(undo), journal, 'the journal untouched')
  }

  // A power loss tore a region written after the journal's last sync: half old again.
  const torn = readFileSync(a)
  base.copy(torn, 100, 100, 2000)
  writeFileSync(a, torn)
  // On a copy (another file), the mismatch is a conflict: nothing is written.
  const copy = join(dir, 'copy')
  writeFileSync(copy, torn)
  await t.rejects(apply(readFileSync(undo), copy), { code: 'ECONFLICT', message: /^conflict at byte 0: / })
  sameBytes(t, readFileSync(copy), torn, 'the copy is untouched')
  // On A itself the unfinished journal rolls back every region it holds, with warnings.
  const err = textSink()
  await apply(readFileSync(undo), a, { stderr: err.stream })
  t.match(err.text(), /warning: this unfinished undo journal does not match .*a at byte 0: regions written just before/)
  t.match(err.text(), /the undo journal has no end record/)
  sameBytes(t, readFileSync(a), base, 'A rolled back')
})

void t.test('an undo journal of the older kind still applies, with a warning', async (t) => {
  const dir = tempDir(t, 'bound')
  const target = join(dir, 'img')
  const old = randomBytes(8192, 30)
  const now = randomBytes(8192, 31)
  writeFileSync(target, now)
  const chunks: Buffer[] = []
  const w = new StreamWriter(
    hash,
    { write: (b: Buffer) => void chunks.push(Buffer.from(b)) },
    { kind: StreamKind.UNDO, size: 8192, baseSize: 8192, blockSize: 4096, metadata: { target } },
  )
  await w.start()
  await w.data(0, old)
  await w.end()
  const err = textSink()
  await apply(Buffer.concat(chunks), target, { stderr: err.stream })
  t.match(err.text(), /warning: this undo journal is of an older kind, without the digests .* applied as it is/)
  sameBytes(t, readFileSync(target), old)

  // Bound to another file, made by hand without the target's name; read from an async source.
  chunks.length = 0
  const bound = new StreamWriter(
    hash,
    { write: (b: Buffer) => void chunks.push(Buffer.from(b)) },
    { kind: StreamKind.UNDO, size: 8192, baseSize: 8192, blockSize: 4096, metadata: { [TARGET_ID_KEY]: 'file:1:2' } },
  )
  await bound.start()
  await bound.data(0, now, { length: 8192, digest: hash.digest(old, 0n) })
  await bound.end()
  const journal = Buffer.concat(chunks)
  const note = textSink()
  await applyStream(Readable.from([journal.subarray(0, 10), journal.subarray(10)]), {
    program: 'bpatch',
    target,
    stderr: note.stream,
  })
  t.match(note.text(), /made for another target \(file:1:2\)/)
  sameBytes(t, readFileSync(target), now)
})

void t.test('an unfinished journal of the older kind is continued as one, without digests', async (t) => {
  const dir = tempDir(t, 'bound')
  const target = join(dir, 'img')
  const undo = join(dir, 'u')
  const old = randomBytes(8192, 40)
  writeFileSync(target, old)
  const image = randomBytes(8192, 41)
  const stream = await fullStream(image)
  // What an older blockpipe left when it was killed before its first batch: a header, no records.
  const chunks: Buffer[] = []
  const w = new StreamWriter(
    hash,
    { write: (b: Buffer) => void chunks.push(Buffer.from(b)) },
    {
      kind: StreamKind.UNDO,
      size: 8192,
      baseSize: 8192,
      blockSize: 4096,
      metadata: { target, 'stream-id': streamId(parse(stream).header) },
    },
  )
  await w.start()
  writeFileSync(undo, Buffer.concat(chunks))
  await apply(stream, target, { undo })
  sameBytes(t, readFileSync(target), image, 'applied')
  const journal = parse(readFileSync(undo))
  t.ok(journal.done, 'the journal is finished')
  t.notOk(isBoundJournal(journal.header), 'and stays of the older kind')
  t.ok(
    journal.records.every((r) => (r.flags & RECORD_FLAG_BASE) === 0),
    'no record carries a base digest',
  )
  const err = textSink()
  await apply(readFileSync(undo), target, { stderr: err.stream })
  t.match(err.text(), /older kind/)
  sameBytes(t, readFileSync(target), old, 'rolled back')
})
