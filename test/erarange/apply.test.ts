import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { applyStream, type ApplyOptions } from '../../packages/core/src/apply.js'
import { ERARANGE_PIECE } from '../../packages/core/src/erarange.js'
import { randomBytes } from '../lib/data.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'
import { BASIC, BASIC_IMAGE, UNORDERED_IMAGE, applied, fixture, record } from './lib.js'

// applyStream (era-apply and bpatch) on streams of the original era_copy:
// plain writes into a target that exists or is created, growing it to the
// furthest record; with --spool the structure is checked before anything is
// written; with --undo the old contents are journaled.

const WARNING =
  'era-apply: warning: this is a stream of the original era_copy (ERARANGE records): it has no checksums and no' +
  ' end marker, so corrupt data, or a stream cut between two records, cannot be detected\n'

interface Run {
  stderr: string
}

/** Applies `stream` (in pieces of `piece` bytes) to `target`; what was said on stderr is in `run.stderr`. */
async function apply(
  stream: Buffer,
  target: string,
  options: Partial<ApplyOptions> = {},
  run: Run = { stderr: '' },
  piece = stream.length,
): ReturnType<typeof applyStream> {
  const stderr = {
    write: (s: string): boolean => {
      run.stderr += s
      return true
    },
  } as NodeJS.WritableStream
  const chunks: Buffer[] = []
  for (let at = 0; at < stream.length; at += piece) chunks.push(stream.subarray(at, at + piece))
  return applyStream(chunks, { program: 'era-apply', target, stderr, ...options })
}

void t.test('a new target is created and grows to the furthest record', async (t) => {
  const dir = t.testdir()
  const target = join(dir, 'new.img')
  const run = { stderr: '' }
  const result = await apply(fixture('basic'), target, {}, run, 5)
  t.ok(readFileSync(target).equals(BASIC_IMAGE))
  t.equal(run.stderr, WARNING, 'says that the format cannot be checked')
  t.match(result, {
    header: { size: 8224, metadata: { input: 'erarange' } },
    end: undefined,
    records: 3,
    written: 224,
    skipped: 0,
    created: true,
  })
})

void t.test('an existing target: written in place, never shrunk; records in stream order', async (t) => {
  const dir = t.testdir()
  const base = randomBytes(20000, 1)
  const big = join(dir, 'big.img')
  writeFileSync(big, base)
  const result = await apply(fixture('basic'), big)
  t.ok(readFileSync(big).equals(applied(BASIC, base)), 'the records over the old contents, the size kept')
  t.match(result, { created: false, records: 3, header: { size: 20000 } })
  // Two streams one after another: the later record wins.
  const small = join(dir, 'small.img')
  writeFileSync(small, Buffer.alloc(10, 0x55))
  await apply(fixture('unordered'), small, { program: 'bpatch' })
  const expected = Buffer.from(UNORDERED_IMAGE)
  expected.fill(0x55, 8, 10)
  t.ok(readFileSync(small).equals(expected))
})

void t.test('zeros beyond the end of a file are left as holes, and the file still grows', async (t) => {
  const dir = t.testdir()
  const target = join(dir, 'sparse.img')
  writeFileSync(target, Buffer.alloc(100, 1))
  const zeros = Buffer.alloc(4 * ERARANGE_PIECE)
  const stream = Buffer.concat([record(0, Buffer.alloc(50)), record(ERARANGE_PIECE, zeros)])
  const result = await apply(stream, target)
  const after = readFileSync(target)
  t.equal(after.length, 5 * ERARANGE_PIECE)
  t.ok(
    after.subarray(0, 50).every((b) => b === 0),
    'zeros within the old file are written',
  )
  t.ok(after.subarray(50, 100).every((b) => b === 1))
  t.ok(after.subarray(100).every((b) => b === 0))
  t.match(result, { written: 50, skipped: 4 * ERARANGE_PIECE, records: 2 })
  t.ok(statSync(target).blocks * 512 < ERARANGE_PIECE, 'the zeros take no space')
})

void t.test('a cut or damaged stream: a new target is removed, an existing one said to be incomplete', async (t) => {
  const dir = t.testdir()
  const fresh = join(dir, 'fresh.img')
  await t.rejects(apply(fixture('cut-data'), fresh), {
    code: 'ETRUNCATED',
    message:
      'unexpected end of data: the stream was cut in record 2 (image bytes 8192..8224, from stream byte 240):' +
      ` 22 of its 32 bytes of data arrived: ${fresh} was new and has been removed`,
  })
  t.notOk(existsSync(fresh))
  const old = join(dir, 'old.img')
  const base = randomBytes(10000, 2)
  writeFileSync(old, base)
  await t.rejects(apply(fixture('cut-data'), old, {}, undefined, 1), {
    code: 'ETRUNCATED',
    message: new RegExp(
      `22 of its 32 bytes of data arrived: 2 records were applied before it, ${old} is incomplete \\(part new, part old\\)$`,
    ),
  })
  t.ok(readFileSync(old).equals(applied(BASIC.slice(0, 2), base)), 'the cut record was not written at all')
  await t.rejects(apply(fixture('bad-magic'), old), {
    code: 'EBADSTREAM',
    message: /^record 1 at byte 88: no ERARANGE magic .*: 1 records were applied before it/,
  })
  await t.rejects(apply(fixture('cut-header'), old), { code: 'ETRUNCATED', message: /in the header of record 1/ })
  await t.rejects(apply(fixture('huge'), old), { code: 'EBADSTREAM', message: /reach beyond 1 PiB/ })
})

void t.test('--spool: a stream cut inside a record writes nothing', async (t) => {
  const dir = t.testdir()
  const old = join(dir, 'old.img')
  const base = randomBytes(10000, 3)
  writeFileSync(old, base)
  await t.rejects(apply(fixture('cut-data'), old, { spool: dir }), {
    code: 'ETRUNCATED',
    message: /22 of its 32 bytes of data arrived: nothing was written to the target$/,
  })
  t.ok(readFileSync(old).equals(base), 'untouched')
  const fresh = join(dir, 'fresh.img')
  await t.rejects(apply(fixture('bad-magic'), fresh, { spool: join(dir, 'spool-file') }), {
    code: 'EBADSTREAM',
    message: /nothing was written to the target$/,
  })
  t.notOk(existsSync(fresh), 'not even created')
  const result = await apply(fixture('basic'), old, { spool: dir, progress: true }, undefined, 7)
  t.ok(readFileSync(old).equals(applied(BASIC, base)))
  t.match(result, { records: 3, written: 224 })
})

/** Rolls `target` back with the journal at `undo` (an ordinary undo stream). */
async function rollBack(target: string, undo: string): Promise<void> {
  await applyStream([readFileSync(undo)], { program: 'era-apply', target })
}

void t.test('--undo journals the old contents; the journal rolls the apply back', async (t) => {
  const dir = t.testdir()
  const target = join(dir, 'vm.img')
  const base = randomBytes(10000, 4)
  writeFileSync(target, base)
  await apply(fixture('basic'), target, { undo: join(dir, 'undo1') })
  t.ok(readFileSync(target).equals(applied(BASIC, base)))
  await rollBack(target, join(dir, 'undo1'))
  t.ok(readFileSync(target).equals(base), 'rolled back')
  // More regions than a batch: the journal is synced between batches.
  const records = Array.from({ length: 1500 }, (_, i) => record(i * 6, Buffer.from(`r${String(i).padStart(4, '0')} `)))
  await apply(Buffer.concat(records), target, { undo: join(dir, 'undo2'), progress: true })
  t.equal(readFileSync(target).toString('latin1', 0, 12), 'r0000 r0001 ')
  t.equal(readFileSync(target).toString('latin1', 8994, 9000), 'r1499 ')
  await rollBack(target, join(dir, 'undo2'))
  t.ok(readFileSync(target).equals(base), 'rolled back')
  // Nothing to journal: a stream of empty records.
  await apply(Buffer.concat([record(0, Buffer.alloc(0)), record(512, Buffer.alloc(0))]), target, {
    undo: join(dir, 'undo3'),
  })
  await rollBack(target, join(dir, 'undo3'))
  t.ok(readFileSync(target).equals(base))
  // A journal is never continued: the same undo file is refused.
  await t.rejects(apply(fixture('basic'), target, { undo: join(dir, 'undo2') }), { code: 'EUSAGE' })
  t.ok(readFileSync(target).equals(base))
})

void t.test('--undo without --spool: the target must exist and may not grow; records in order', async (t) => {
  const dir = t.testdir()
  const fresh = join(dir, 'fresh.img')
  await t.rejects(apply(fixture('basic'), fresh, { undo: join(dir, 'u0') }), {
    code: 'EUSAGE',
    message: `${fresh} does not exist: with --undo, a stream of the original era_copy is applied to a new target only with --spool (the journal must know the size of the target before the first write)`,
  })
  t.notOk(existsSync(fresh))
  t.notOk(existsSync(join(dir, 'u0')))
  const target = join(dir, 'small.img')
  const base = randomBytes(1000, 5)
  writeFileSync(target, base)
  await t.rejects(apply(fixture('basic'), target, { undo: join(dir, 'u1') }), {
    code: 'EINPUT',
    message:
      'record 2 at byte 240 (image bytes 8192..8224) reaches beyond the end of ' +
      `${target} (1000 bytes): with --undo, a stream of the original era_copy grows the target only with --spool` +
      ` (the journal must know the final size before the first write): nothing was written to ${target}, and the` +
      ` undo file ${join(dir, 'u1')} was removed`,
  })
  t.ok(readFileSync(target).equals(base), 'the records before it wait for the journal: none was written')
  t.notOk(existsSync(join(dir, 'u1')), 'the journal of nothing is removed')
  // Refused after a batch was written: the journal rolls it back.
  const mid = join(dir, 'mid.img')
  const midBase = randomBytes(4000, 9)
  writeFileSync(mid, midBase)
  const many = Array.from({ length: 1100 }, (_, i) => record(i, Buffer.from('m')))
  await t.rejects(apply(Buffer.concat([...many, record(990, Buffer.alloc(20, 1))]), mid, { undo: join(dir, 'u2') }), {
    code: 'EINPUT',
    message: new RegExp(
      '^record 1100 at byte 27500 \\(image bytes 990..1010\\) comes before the end of the record before it' +
        ` \\(1100\\).*: 1024 records were applied before it, ${mid} is incomplete \\(part new, part old\\);` +
        ` roll back with: era-apply ${mid} < ${join(dir, 'u2')}$`,
    ),
  })
  t.equal(readFileSync(mid).toString('latin1', 0, 1024), 'm'.repeat(1024))
  await rollBack(mid, join(dir, 'u2'))
  t.ok(readFileSync(mid).equals(midBase), 'and the journal rolls them back')
  const wide = join(dir, 'wide.img')
  const wideBase = randomBytes(9000, 6)
  writeFileSync(wide, wideBase)
  await t.rejects(apply(fixture('unordered'), wide, { undo: join(dir, 'u3') }), {
    code: 'EINPUT',
    message:
      'record 1 at byte 40 (image bytes 0..8) comes before the end of the record before it (4112): an undo journal' +
      ` needs the records in ascending order: nothing was written to ${wide}, and the undo file ${join(dir, 'u3')}` +
      ' was removed',
  })
  t.ok(readFileSync(wide).equals(wideBase))
  // A stream cut in its second batch, with --undo.
  const cut = Buffer.concat(many).subarray(0, 1100 * 25 - 10)
  await t.rejects(apply(cut, wide, { undo: join(dir, 'u4') }), {
    code: 'ETRUNCATED',
    message: new RegExp(`: 1024 records were applied before it, .*; roll back with: era-apply ${wide} < `),
  })
  await rollBack(wide, join(dir, 'u4'))
  t.ok(readFileSync(wide).equals(wideBase))
})

void t.test(
  '--undo with --spool: any growth, and out-of-order streams refused before anything is written',
  async (t) => {
    const dir = t.testdir()
    const target = join(dir, 'small.img')
    const base = randomBytes(1000, 7)
    writeFileSync(target, base)
    await t.rejects(apply(fixture('unordered'), target, { undo: join(dir, 'u1'), spool: dir }), {
      code: 'EINPUT',
      message: /not in ascending order .*: an undo journal needs them in order; .*; nothing was written$/,
    })
    t.ok(readFileSync(target).equals(base))
    await apply(fixture('basic'), target, { undo: join(dir, 'u2'), spool: dir })
    t.ok(readFileSync(target).equals(applied(BASIC, base)))
    await rollBack(target, join(dir, 'u2'))
    t.ok(readFileSync(target).equals(base), 'rolled back, to the old size too')
    const fresh = join(dir, 'fresh.img')
    await apply(fixture('basic'), fresh, { undo: join(dir, 'u3'), spool: dir })
    t.ok(readFileSync(fresh).equals(BASIC_IMAGE))
    await rollBack(fresh, join(dir, 'u3'))
    t.equal(statSync(fresh).size, 0, 'a target the apply created rolls back to nothing')
    // The undo file is judged before the stream is spooled.
    let pulled = 0
    async function* input(): AsyncGenerator<Buffer> {
      pulled++
      yield await Promise.resolve(fixture('basic'))
    }
    await t.rejects(applyStream(input(), { program: 'era-apply', target, spool: dir, undo: join(dir, 'u3') }), {
      code: 'EUSAGE',
      message: /holds the complete journal of a finished apply/,
    })
    t.equal(pulled, 1, 'only the first bytes were read, to tell the format')
    await t.rejects(apply(fixture('basic'), join(target, 'x'), { spool: dir, undo: join(dir, 'u4') }), {
      code: 'EDEVICE',
      message: /small.img\/x: a component of the path is not a directory; nothing was written$/,
    })
    t.ok(readFileSync(target).equals(base))
  },
)

void t.test('a block device: no record beyond its end; zeros are written', { skip: loopUnavailable() }, async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'disk.img')
  const base = randomBytes(8192, 8)
  writeFileSync(file, base)
  await withLoop(file, async (dev) => {
    const stream = Buffer.concat([record(0, Buffer.alloc(512)), record(4096, Buffer.from('abc'))])
    const result = await apply(stream, dev)
    const expected = applied(
      [
        [0, Buffer.alloc(512)],
        [4096, Buffer.from('abc')],
      ],
      base,
    )
    t.ok(readFileSync(file).equals(expected), 'zeros on a device are written, not skipped')
    t.match(result, { written: 515, skipped: 0, header: { size: 8192 } })
    await t.rejects(apply(fixture('basic'), dev), {
      code: 'EDEVICE',
      message:
        `record 2 at byte 240 (image bytes 8192..8224) reaches beyond the end of ${dev}, a block device of 8192` +
        ` bytes (8.00 KiB): the stream is for a larger device: 2 records were applied before it, ${dev} is` +
        ' incomplete (part new, part old)',
    })
    t.ok(readFileSync(file).equals(applied(BASIC.slice(0, 2), expected)))
    writeFileSync(file, base)
    await t.rejects(apply(fixture('basic'), dev, { spool: dir, undo: join(dir, 'u') }), {
      code: 'EDEVICE',
      message: `${dev} is too small: 8192 bytes (8.00 KiB), the stream writes up to byte 8224 (8.03 KiB); nothing was written`,
    })
    t.ok(readFileSync(file).equals(base), 'untouched')
    const fits = Buffer.concat([record(0, Buffer.from('head')), record(8188, Buffer.from('tail'))])
    await apply(fits, dev, { spool: dir, undo: join(dir, 'u2') })
    t.ok(
      readFileSync(file).equals(
        applied(
          [
            [0, Buffer.from('head')],
            [8188, Buffer.from('tail')],
          ],
          base,
        ),
      ),
    )
    await rollBack(dev, join(dir, 'u2'))
    t.ok(readFileSync(file).equals(base))
  })
})
