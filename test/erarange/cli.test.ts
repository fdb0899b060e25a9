import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { randomBytes, scribble, writeImage } from '../lib/data.js'
import { eraInvalidate, eraRestore } from '../lib/era.js'
import { have, run, sh } from '../lib/run.js'
import { BASIC, BASIC_IMAGE, applied, fixture, fixturePath } from './lib.js'

// The old era_copy stream through the real binaries: era-apply and bpatch
// read it (from the hand-made fixtures, through pipes that deliver it in
// short reads), era-copy --format erarange writes it.

const EMPTY =
  'the input is empty: taken as a stream of the original era_copy without records (a night without changes).' +
  ' A blockpipe stream or undo journal is never empty: if one was expected, it did not arrive'

const WARNING =
  ': warning: this is a stream of the original era_copy (ERARANGE records): it has no checksums and no end' +
  ' marker, so corrupt data, or a stream cut between two records, cannot be detected\n'

void t.test('era-apply and bpatch apply a hand-made stream, saying it cannot be checked', async (t) => {
  const dir = t.testdir()
  const r = await run('era-apply', [join(dir, 'new.img')], { inputFile: fixturePath('basic') })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, `era-apply${WARNING}`)
  t.ok(readFileSync(join(dir, 'new.img')).equals(BASIC_IMAGE))
  const base = randomBytes(9000, 1)
  writeFileSync(join(dir, 'old.img'), base)
  const p = await run('bpatch', [join(dir, 'old.img')], { input: fixture('basic') })
  t.equal(p.status, 0, p.stderr)
  t.equal(p.stderr, `bpatch${WARNING}`)
  t.ok(readFileSync(join(dir, 'old.img')).equals(applied(BASIC, base)))
})

void t.test('short reads split across the header fields, through a real pipe', async (t) => {
  const dir = t.testdir()
  const f = fixturePath('basic')
  // Record 1's header is bytes 88..111: its magic, offset (96..103) and length (104..111) arrive in pieces.
  const r = await sh(
    `{ head -c 92 ${f}; sleep 0.2; tail -c +93 ${f} | head -c 7; sleep 0.2; tail -c +100 ${f} | head -c 9; sleep 0.2;` +
      ` tail -c +109 ${f}; } | era-apply target.img`,
    { cwd: dir },
  )
  t.equal(r.status, 0, r.stderr)
  t.ok(readFileSync(join(dir, 'target.img')).equals(BASIC_IMAGE))
  // And byte by byte, through gzip.
  const g = await sh(`gzip -c < ${f} | gunzip | dd bs=1 status=none | era-apply byte.img`, { cwd: dir })
  t.equal(g.status, 0, g.stderr)
  t.ok(readFileSync(join(dir, 'byte.img')).equals(BASIC_IMAGE))
})

void t.test('a cut or damaged stream fails with exit 1; --spool keeps it from the target', async (t) => {
  const dir = t.testdir()
  const target = join(dir, 'new.img')
  const cut = await run('era-apply', [target], { input: fixture('cut-data') })
  t.equal(cut.status, 1)
  t.match(
    cut.stderr,
    /era-apply: unexpected end of data: the stream was cut in record 2 .*: .*new.img was new and has been removed\n$/,
  )
  t.notOk(existsSync(target))
  const base = randomBytes(9000, 2)
  writeFileSync(join(dir, 'old.img'), base)
  const spooled = await run('era-apply', ['--spool', dir, join(dir, 'old.img')], { input: fixture('cut-header') })
  t.equal(spooled.status, 1)
  t.match(spooled.stderr, /cut in the header of record 1 at byte 88: 11 of its 24 bytes arrived: nothing was written/)
  t.ok(readFileSync(join(dir, 'old.img')).equals(base))
  const bad = await run('era-apply', [join(dir, 'old.img')], { input: fixture('bad-magic') })
  t.equal(bad.status, 1)
  t.match(bad.stderr, /record 1 at byte 88: no ERARANGE magic where the next record should start/)
})

void t.test('--undo journals a legacy apply; era-apply rolls it back', async (t) => {
  const dir = t.testdir()
  const base = randomBytes(9000, 3)
  writeFileSync(join(dir, 'vm.img'), base)
  const r = await sh(`era-apply --undo undo.bps vm.img < ${fixturePath('basic')} && era-apply vm.img < undo.bps`, {
    cwd: dir,
  })
  t.equal(r.status, 0, r.stderr)
  t.ok(readFileSync(join(dir, 'vm.img')).equals(base), 'rolled back')
})

void t.test('era-apply --check accepts what era-apply applies: ERARANGE, and the empty stream', async (t) => {
  const r = await run('era-apply', ['--check'], { inputFile: fixturePath('basic') })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, `era-apply${WARNING}`)
  t.match(r.stdout.toString(), /^format: +ERARANGE.*\nrecords: +3\ndata: +224 bytes.*\nextent: +up to byte 8224 /)
  const cut = await run('era-apply', ['--check'], { input: fixture('cut-data') })
  t.equal(cut.status, 1)
  t.match(cut.stderr, /^era-apply: warning: .*\nera-apply: unexpected end of data: the stream was cut in record 2 /)
  const empty = await run('era-apply', ['--check'], { input: '' })
  t.equal(empty.status, 0, empty.stderr)
  t.equal(empty.stderr, `era-apply: warning: ${EMPTY}\n`)
  t.match(empty.stdout.toString(), /\nrecords: +0\n/)
})

void t.test('an empty stream (a night without changes) applies as empty, with its warning', async (t) => {
  const dir = t.testdir()
  const base = randomBytes(9000, 4)
  const target = join(dir, 'vm.img')
  writeFileSync(target, base)
  const mtime = statSync(target).mtimeMs
  for (const args of [[], ['--spool', dir], ['--undo', join(dir, 'u')]]) {
    const r = await run('era-apply', [...args, target], { input: '' })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stderr, `era-apply: warning: ${EMPTY}\n`, args.join(' '))
    t.ok(readFileSync(target).equals(base), 'untouched')
    t.equal(statSync(target).mtimeMs, mtime, 'not even written')
  }
  // Its journal holds nothing to undo, and undoes nothing.
  const back = await run('era-apply', [target], { inputFile: join(dir, 'u') })
  t.equal(back.status, 0, back.stderr)
  t.ok(readFileSync(target).equals(base))
  // No target: nothing to make one from.
  const none = await run('era-apply', [join(dir, 'new.img')], { input: '' })
  t.equal(none.status, 1)
  t.match(none.stderr, /new\.img does not exist, and the input is empty: .*nothing was created\n$/)
  t.notOk(existsSync(join(dir, 'new.img')))
  // bpatch expects a delta: empty is a stream that did not arrive.
  const p = await run('bpatch', [target], { input: '' })
  t.equal(p.status, 1)
  t.match(p.stderr, /^bpatch: empty input: no stream at all: nothing was written/)
})

void t.test('era-copy --format erarange writes the old format; era-apply reads it back', async (t) => {
  const dir = t.testdir()
  const K64 = 64 * 1024
  // Data, a run of zeros (sent as data: the format has no ZERO records), data, a partial last block.
  const image = writeImage(join(dir, 'src.img'), 10 * K64 + 1000, 4, [[2 * K64, 3 * K64]])
  const full = await run('era-copy', ['--all', '--format', 'erarange', join(dir, 'src.img')])
  t.equal(full.status, 0, full.stderr)
  const stream = full.stdout
  t.equal(stream.toString('latin1', 0, 8), 'ERARANGE', 'no header: the first record comes first')
  t.equal(stream.readBigInt64LE(8), 0n)
  // Three records: data (2 x 64K), zeros (3 x 64K), data (5 x 64K + 1000).
  t.equal(stream.length, image.length + 3 * 24, 'every byte of the image travels, zeros too')
  writeFileSync(join(dir, 'full.er'), stream)
  const a = await run('era-apply', [join(dir, 'copy.img')], { input: stream })
  t.equal(a.status, 0, a.stderr)
  t.ok(readFileSync(join(dir, 'copy.img')).equals(image))
  const dump = await run('bpdump', ['--json', join(dir, 'full.er')])
  t.equal(dump.status, 0, dump.stderr)
  const lines = dump.stdout
    .toString()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
  t.same(
    lines.filter((l) => l.type === 'record').map((l) => [l.offset, l.length]),
    [
      [0, 2 * K64],
      [2 * K64, 3 * K64],
      [5 * K64, 5 * K64 + 1000],
    ],
    'runs of data, then the zeros as one record',
  )
  const bad = await run('era-copy', ['--all', '--format', 'zip', join(dir, 'src.img')])
  t.equal(bad.status, 2)
  t.match(bad.stderr, /Invalid values:[\s\S]*format/)
})

void t.test(
  'an incremental in the old format, from real era_invalidate output',
  { skip: !have('era_invalidate') && 'thin-provisioning-tools is not installed' },
  async (t) => {
    const dir = t.testdir()
    const K64 = 64 * 1024
    const src = join(dir, 'src.img')
    writeImage(src, 16 * K64, 5)
    writeFileSync(join(dir, 'backup.img'), readFileSync(src))
    scribble(src, 3 * K64 + 5, 100, 6)
    scribble(src, 9 * K64, K64 * 2, 7)
    const eras = new Array<number>(16).fill(1)
    eras[3] = 4
    eras[9] = eras[10] = 5
    const meta = eraRestore(dir, { blockSectors: 128, eras, currentEra: 6 })
    writeFileSync(join(dir, 'blocks.xml'), eraInvalidate(meta, 4))
    const r = await sh(
      'era-copy -b 128 --format erarange src.img < blocks.xml > incr.er && era-apply backup.img < incr.er',
      {
        cwd: dir,
      },
    )
    t.equal(r.status, 0, r.stderr)
    t.ok(readFileSync(join(dir, 'backup.img')).equals(readFileSync(src)))
    t.equal(readFileSync(join(dir, 'incr.er')).length, 3 * K64 + 2 * 24, 'two records: block 3, blocks 9-10')
  },
)
