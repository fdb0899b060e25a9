import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { defaultUndoDir, parseAsOf, undoFileTime, undoFilesAfter } from '../../packages/brestore/src/as-of.js'
import { run } from '../lib/run.js'

// --as-of: which moment a date names, and which undo files are after it, by
// the names the example scripts give them.

const ns = (iso: string): bigint => BigInt(Date.parse(iso)) * 1_000_000n

void t.test('a day is its end, UTC; a time without a zone is UTC', (t) => {
  t.equal(parseAsOf('2026-11-20'), ns('2026-11-21T00:00:00Z') - 1n)
  t.equal(parseAsOf('2028-02-29'), ns('2028-03-01T00:00:00Z') - 1n, 'a leap day')
  t.equal(parseAsOf('2026-11-20T18:00'), ns('2026-11-20T18:00:00Z'))
  t.equal(parseAsOf('2026-11-20 18:00:05'), ns('2026-11-20T18:00:05Z'))
  t.equal(parseAsOf('2026-11-20T18:00:05.5Z'), ns('2026-11-20T18:00:05Z') + 500_000_000n)
  t.equal(parseAsOf('2026-11-20T18:00:05.123456789Z'), ns('2026-11-20T18:00:05Z') + 123_456_789n)
  t.equal(parseAsOf('2026-11-20T18:00+02:00'), ns('2026-11-20T16:00:00Z'))
  t.equal(parseAsOf('2026-11-20T18:00-0130'), ns('2026-11-20T19:30:00Z'))
  t.end()
})

void t.test('what is not a real date is a usage error', (t) => {
  for (const bad of [
    '2026-02-30',
    '2026-13-01',
    '2027-02-29',
    '2026-11-20T24:00',
    '2026-11-20T10:60',
    '2026-11-20T10:00:60',
    'yesterday',
    '20261120',
    '2026-11-20T10',
    '2026-11-20T10:00:00.1234567890Z',
    '',
  ]) {
    t.throws(() => parseAsOf(bad), { code: 'EUSAGE', message: /not a date; give YYYY-MM-DD/ }, bad)
  }
  t.end()
})

void t.test('undo file names: era-backup.sh, bsync-backup.sh, and no others', (t) => {
  t.equal(undoFileTime('vm.img.20261120T013000Z.era5-6.undo', 'vm.img'), ns('2026-11-20T01:30:00Z'))
  t.equal(undoFileTime('vm.img.20261120T013000.000000042Z.undo', 'vm.img'), ns('2026-11-20T01:30:00Z') + 42n)
  t.equal(undoFileTime('vm.img.20261120T013000Z.undo', 'vm.img'), ns('2026-11-20T01:30:00Z'))
  for (const other of [
    'vm.img2.20261120T013000Z.undo',
    'vm.20261120T013000Z.undo',
    'vm.img.20261120T013000Z',
    'vm.img.20261120T013000.undo',
    'vm.img.2026-11-20.undo',
    'vm.img.20261131T013000Z.undo',
    'vm.img.20261120T013000Zundo',
  ]) {
    t.equal(undoFileTime(other, 'vm.img'), undefined, other)
  }
  t.end()
})

void t.test('the undo files made at or after a moment, newest first', (t) => {
  const dir = t.testdir({
    'vm.img.20261120T013000Z.era1-2.undo': '',
    'vm.img.20261121T013000.5Z.undo': '',
    'vm.img.20261121T013000.5Z.b.undo': '',
    'vm.img.20261121T013000.5Z.a.undo': '',
    'vm.img.20261122T013000Z.undo': '',
    'vm.img.20261123T013000Z.undo.tmp': '',
    'other.img.20261123T013000Z.undo': '',
  })
  const names = (moment: string): string[] =>
    undoFilesAfter(dir, join('/srv', 'vm.img'), parseAsOf(moment)).map((p) => p.slice(dir.length + 1))
  t.same(names('2026-11-19'), [
    'vm.img.20261122T013000Z.undo',
    'vm.img.20261121T013000.5Z.undo',
    'vm.img.20261121T013000.5Z.b.undo',
    'vm.img.20261121T013000.5Z.a.undo',
    'vm.img.20261120T013000Z.era1-2.undo',
  ])
  // An apply that began at the moment had not changed the image yet.
  t.same(names('2026-11-21T01:30:00.5'), [
    'vm.img.20261122T013000Z.undo',
    'vm.img.20261121T013000.5Z.undo',
    'vm.img.20261121T013000.5Z.b.undo',
    'vm.img.20261121T013000.5Z.a.undo',
  ])
  t.same(names('2026-11-21T01:30:00.500000001'), ['vm.img.20261122T013000Z.undo'])
  t.same(names('2026-11-22'), [])
  t.throws(() => undoFilesAfter(join(dir, 'none'), 'vm.img', 0n), {
    code: 'EDEVICE',
    message: /cannot list the undo directory: .*none: no such file or device/,
  })
  t.end()
})

void t.test('the undo directory of the scripts, else the image directory', (t) => {
  const dir = t.testdir()
  t.equal(defaultUndoDir(join(dir, 'vm.img')), dir)
  mkdirSync(join(dir, 'vm.img.undo'))
  t.equal(defaultUndoDir(join(dir, 'vm.img')), join(dir, 'vm.img.undo'))
  writeFileSync(join(dir, 'b.img.undo'), '')
  t.equal(defaultUndoDir(join(dir, 'b.img')), dir, 'a file of that name is not the directory')
  t.end()
})

void t.test('the command line: exit 2 for what cannot work', async (t) => {
  const dir = t.testdir({ 'vm.img': 'x', 'a.undo': '' })
  const cases: [string[], RegExp][] = [
    [[], /missing IMAGE/],
    [['vm.img'], /missing UNDO files \(newest first\), or --as-of DATE/],
    [['--as-of', '2026-11-20', 'vm.img', 'a.undo'], /either --as-of DATE or the UNDO files, not both/],
    [['--undo-dir', '.', 'vm.img', 'a.undo'], /--undo-dir goes with --as-of/],
    [['--as-of', '2026-02-30', 'vm.img'], /--as-of 2026-02-30: not a date/],
    [['--as-of', '2026-11-20T25:00', 'vm.img'], /not a date/],
    [['--as-of', 'last tuesday', 'vm.img'], /not a date/],
    [['--bogus', 'vm.img', 'a.undo'], /[Uu]nknown/],
  ]
  for (const [args, message] of cases) {
    const r = await run('brestore', args, { cwd: dir })
    t.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`)
    t.match(r.stderr, message)
    t.match(r.stderr, /^brestore: /)
    t.equal(r.stdout.length, 0)
  }
})
