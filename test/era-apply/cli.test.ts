import { closeSync, existsSync, openSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import t from 'tap'
import { randomBytes, writeImage } from '../lib/data.js'
import { binPath, have, run, runCommand } from '../lib/run.js'

// era-apply as a user runs it: the built binary, a stream on stdin.

const KiB = 1024
const MiB = 1024 * KiB
const BLOCK = 64 * KiB

async function eraCopy(args: string[], xml?: string): Promise<Buffer> {
  const r = await run('era-copy', args, { input: xml ?? '' })
  if (r.status !== 0) throw new Error(`era-copy ${args.join(' ')}: ${r.stderr}`)
  return r.stdout
}

/** An image and two streams of it: all of it, and blocks 1 and 3 only. */
async function fixture(dir: string, size = 6 * BLOCK - 300) {
  const img = join(dir, 'source.img')
  const data = writeImage(img, size, 11, [[2 * BLOCK, BLOCK]])
  const full = await eraCopy(['--all', '-b', '128', img])
  const partial = await eraCopy(
    ['-b', '128', '--written-since', '7', img],
    '<blocks><block block="1"/><block block="3"/></blocks>',
  )
  return { img, data, full, partial }
}

function only(data: Buffer, blocks: number[], onto: Buffer = Buffer.alloc(data.length)): Buffer {
  const out = Buffer.from(onto)
  for (const b of blocks) data.copy(out, b * BLOCK, b * BLOCK, Math.min((b + 1) * BLOCK, data.length))
  return out
}

void t.test('usage errors exit 2', async (t) => {
  const dir = t.testdir()
  const { full } = await fixture(dir)
  const cases: [string[], RegExp][] = [
    [[], /^era-apply: missing TARGET\nTry 'era-apply --help' for more information\.\n$/],
    [[join(dir, 'a'), join(dir, 'b')], /^era-apply: one TARGET only, got /],
    [['--check', join(dir, 'a')], /^era-apply: --check takes no TARGET\n/],
    [['--bogus', join(dir, 'a')], /^era-apply: unknown option --bogus\n/],
  ]
  for (const [args, message] of cases) {
    const r = await run('era-apply', args, { input: full })
    t.equal(r.status, 2, args.join(' '))
    t.match(r.stderr, message)
    t.equal(r.stdout.length, 0)
  }
  t.notOk(existsSync(join(dir, 'a')), 'no target was created')
  const help = await run('era-apply', ['--help'])
  t.equal(help.status, 0)
  t.match(help.stdout.toString(), /Usage: era-apply .*TARGET < stream/)
  t.match(help.stdout.toString(), /--check/)
})

void t.test('a full stream creates the target at the stream size', async (t) => {
  const dir = t.testdir()
  const { data, full } = await fixture(dir)
  const backup = join(dir, 'backup.img')
  const r = await run('era-apply', [backup], { input: full })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  t.equal(r.stdout.length, 0)
  t.ok(readFileSync(backup).equals(data), 'byte for byte')
})

void t.test('an existing target is extended or truncated to the stream size', async (t) => {
  const dir = t.testdir()
  const { data, full } = await fixture(dir)
  for (const size of [data.length - 5000, data.length + 3 * MiB, 1]) {
    const backup = join(dir, `backup-${size}.img`)
    writeFileSync(backup, randomBytes(size, size))
    const r = await run('era-apply', [backup], { input: full })
    t.equal(r.status, 0, r.stderr)
    t.ok(readFileSync(backup).equals(data), `from ${size} bytes`)
  }
})

void t.test('a partial stream onto a missing or empty target: exit 3 unless --force', async (t) => {
  const dir = t.testdir()
  const { data, partial } = await fixture(dir)
  const missing = join(dir, 'missing.img')
  const r1 = await run('era-apply', [missing], { input: partial })
  t.equal(r1.status, 3)
  t.match(
    r1.stderr,
    /^era-apply: .*missing\.img does not exist, and this stream holds only some blocks \(those written since era 7\), not a full copy: .*Apply a full stream first \(era-copy --all\), or pass --force\n$/,
  )
  t.notOk(existsSync(missing), 'not created')
  const empty = join(dir, 'empty.img')
  writeFileSync(empty, '')
  const r2 = await run('era-apply', [empty], { input: partial })
  t.equal(r2.status, 3)
  t.match(r2.stderr, /empty\.img is empty, and this stream holds only some blocks/)
  t.equal(statSync(empty).size, 0, 'left as it was')

  const forced = await run('era-apply', ['--force', missing], { input: partial })
  t.equal(forced.status, 0, forced.stderr)
  t.ok(readFileSync(missing).equals(only(data, [1, 3])), 'the listed blocks, zeros elsewhere')
  const forcedEmpty = await run('era-apply', ['--force', empty], { input: partial })
  t.equal(forcedEmpty.status, 0, forcedEmpty.stderr)
  t.ok(readFileSync(empty).equals(only(data, [1, 3])))
})

void t.test('a partial stream onto a backup writes just its blocks', async (t) => {
  const dir = t.testdir()
  const { data, partial } = await fixture(dir)
  const old = randomBytes(data.length, 99)
  const backup = join(dir, 'backup.img')
  writeFileSync(backup, old)
  const r = await run('era-apply', [backup], { input: partial })
  t.equal(r.status, 0, r.stderr)
  t.ok(readFileSync(backup).equals(only(data, [1, 3], old)))
})

void t.test('delta and digest streams are refused before anything is written', async (t) => {
  const dir = t.testdir()
  const { img, data } = await fixture(dir)
  const old = join(dir, 'old.img')
  const oldData = randomBytes(data.length, 12)
  writeFileSync(old, oldData)
  const delta = await run('bdiff', ['--base', old, img])
  t.equal(delta.status, 0, delta.stderr)
  const target = join(dir, 'target.img')
  writeFileSync(target, oldData)
  const refused = await run('era-apply', [target], { input: delta.stdout })
  t.equal(refused.status, 2)
  t.match(
    refused.stderr,
    /^era-apply: this is a delta stream \(from bdiff\): apply it with bpatch.* only with --force\n/,
  )
  t.ok(readFileSync(target).equals(oldData), 'untouched')
  const forced = await run('era-apply', ['--force', target], { input: delta.stdout })
  t.equal(forced.status, 0, forced.stderr)
  t.ok(readFileSync(target).equals(data), '--force writes it')

  const sums = await run('bsum', [img])
  t.equal(sums.status, 0, sums.stderr)
  const digest = await run('era-apply', [target], { input: sums.stdout })
  t.equal(digest.status, 1)
  t.match(digest.stderr, /^era-apply: this is a digest stream \(from bsum\): it holds no data; give it to bdiff\n$/)
  const digestNew = await run('era-apply', ['--force', join(dir, 'new.img')], { input: sums.stdout })
  t.equal(digestNew.status, 1)
  t.notOk(existsSync(join(dir, 'new.img')))
})

void t.test('what is not a stream is named', async (t) => {
  const dir = t.testdir()
  const { full } = await fixture(dir)
  const target = join(dir, 't.img')
  const cases: [Buffer | string, RegExp][] = [
    [gzipSync(full), /gzip-compressed data: add gunzip \(or zcat\) to the pipe/],
    ['<blocks>\n</blocks>\n', /XML text: era_invalidate output goes to era-copy, not here/],
    ['', /truncated|empty|ended/i],
  ]
  for (const [input, message] of cases) {
    const r = await run('era-apply', [target], { input })
    t.equal(r.status, 1)
    t.match(r.stderr, message)
    t.notOk(existsSync(target))
  }
})

void t.test('a cut or corrupt stream is an error, exit 1', async (t) => {
  const dir = t.testdir()
  const { data, full } = await fixture(dir, 40 * BLOCK)
  // Onto a new target: it is removed.
  const target = join(dir, 'new.img')
  const cut = await run('era-apply', [target], { input: full.subarray(0, full.length - 30) })
  t.equal(cut.status, 1)
  t.match(cut.stderr, /^era-apply: .*the stream was cut at byte \d+.*: .*new\.img was new and has been removed/)
  t.notOk(existsSync(target))
  // Onto an existing target: says how many records went in, and that it is incomplete.
  const old = randomBytes(data.length, 13)
  const existing = join(dir, 'old.img')
  writeFileSync(existing, old)
  const cutOld = await run('era-apply', [existing], { input: full.subarray(0, Math.floor(full.length / 2)) })
  t.equal(cutOld.status, 1)
  t.match(cutOld.stderr, /\d+ records were applied before it, .*old\.img is incomplete/)
  // A flipped bit in the middle of a payload: nothing of that record is written.
  const bad = Buffer.from(full)
  const at = Math.floor(bad.length / 2)
  bad.writeUInt8(bad.readUInt8(at) ^ 0x10, at)
  writeFileSync(existing, old)
  const corrupt = await run('era-apply', [existing], { input: bad })
  t.equal(corrupt.status, 1)
  t.match(corrupt.stderr, /^era-apply: record \d+ \(DATA at image offset \d+, stream byte \d+\): checksum mismatch/)
  t.match(corrupt.stderr, /\d+ records were applied before it, .*old\.img is incomplete/)
  // --check says the same without a target.
  t.equal((await run('era-apply', ['--check'], { input: bad })).status, 1)
  t.equal((await run('era-apply', ['--check'], { input: full.subarray(0, full.length - 1) })).status, 1)
})

void t.test('--check verifies and summarises without a target', async (t) => {
  const dir = t.testdir()
  const { data, full, partial } = await fixture(dir)
  const r = await run('era-apply', ['--check'], { input: full })
  t.equal(r.status, 0, r.stderr)
  const out = r.stdout.toString()
  t.match(out, /^kind: +block \(full: covers the whole image\), format version 1\n/)
  t.match(out, new RegExp(`\\nimage size: +${data.length} bytes \\(`))
  t.match(out, /\nblock size: +65536 bytes \(64\.0 KiB\)\n/)
  t.match(out, /\nrecords: +\d+\n/)
  t.match(out, new RegExp(`\\ndata: +${data.length - BLOCK} bytes`))
  t.match(out, new RegExp(`\\nzeros: +${BLOCK} bytes`))
  t.match(out, /\nverified: .*end record\n$/)
  const p = (await run('era-apply', ['--check'], { input: partial })).stdout.toString()
  t.match(p, /^kind: +block, format version 1\n/)
  t.match(p, /\nrecords: +2\n/)
  t.match(p, /\nwritten-since: +7\n/)
})

void t.test('a new target is sparse: ZERO records leave holes', async (t) => {
  const dir = t.testdir()
  const probe = join(dir, 'probe')
  closeSync(openSync(probe, 'w'))
  await runCommand('truncate', ['-s', '8M', probe])
  if (statSync(probe).blocks !== 0) {
    void t.skip('this file system does not keep holes', () => {})
    return
  }
  const img = join(dir, 'source.img')
  // 16 MiB, of which 2 MiB of data.
  const data = writeImage(img, 16 * MiB, 14, [
    [MiB, 7 * MiB],
    [9 * MiB, 7 * MiB],
  ])
  const full = await eraCopy(['--all', '-b', '128', img])
  const fresh = join(dir, 'fresh.img')
  t.equal((await run('era-apply', [fresh], { input: full })).status, 0)
  t.ok(readFileSync(fresh).equals(data))
  const allocated = statSync(fresh).blocks * 512
  t.ok(allocated <= 2 * MiB + 256 * KiB, `the new image holds ${allocated} bytes on disk, its data is 2 MiB`)
  // Onto an existing image the zeros are written: old data there is gone.
  const existing = join(dir, 'existing.img')
  writeFileSync(existing, randomBytes(16 * MiB, 15))
  t.equal((await run('era-apply', [existing], { input: full })).status, 0)
  t.ok(readFileSync(existing).equals(data), 'zeros overwrite old data')
  // stat(1) agrees.
  if (have('stat')) {
    const st = await runCommand('stat', ['-c', '%b %B', fresh])
    const [blocks, unit] = st.stdout.toString().trim().split(' ').map(Number)
    t.equal((blocks as number) * (unit as number), allocated)
  }
})

void t.test('--progress reports on stderr', async (t) => {
  const dir = t.testdir()
  const { full } = await fixture(dir)
  const target = join(dir, 't.img')
  const r = await run('era-apply', ['--progress', target], { input: full })
  t.equal(r.status, 0)
  t.match(r.stderr, /^era-apply: 383\.7 KiB of 383\.7 KiB \(100%\), .*\/s, \d+:\d\d elapsed, 319\.7 KiB written\n$/)
  t.equal(r.stdout.length, 0)
})

void t.test('a terminal on stdin is refused', { skip: !have('script') && 'script(1) is not installed' }, async (t) => {
  const dir = t.testdir()
  const target = join(dir, 't.img')
  for (const args of [[target], ['--check']]) {
    const r = await runCommand(
      'script',
      ['-qec', `${process.execPath} ${binPath('era-apply')} ${args.join(' ')}`, '/dev/null'],
      {
        input: '',
      },
    )
    t.equal(r.status, 2)
    t.match(r.stdout.toString(), /era-apply: expected a blockpipe stream on standard input, not a terminal/)
  }
  t.notOk(existsSync(target))
})

void t.test('standard input: a file is read whole from where it stands, a closed one is empty', async (t) => {
  const dir = t.testdir()
  const { data, full } = await fixture(dir, 40 * BLOCK + 7)
  const stream = join(dir, 'stream')
  // Ahead of the stream, bytes another program read first from the same open file.
  writeFileSync(stream, Buffer.concat([Buffer.from('skip me\n'), full]))
  const target = join(dir, 't.img')
  const node = JSON.stringify(process.execPath)
  const bin = JSON.stringify(binPath('era-apply'))
  let r = await runCommand('bash', [
    '-c',
    `(head -c 8 >/dev/null; ${node} ${bin} ${JSON.stringify(target)}) < ${JSON.stringify(stream)}`,
  ])
  t.equal(r.status, 0, r.stderr.toString())
  t.ok(readFileSync(target).equals(data), 'applied from a file on stdin')
  // Empty is what the original era_copy writes for a night without changes: checked as era-apply applies it.
  r = await runCommand('bash', ['-c', `${node} ${bin} --check <&-`])
  t.equal(r.status, 0)
  t.match(r.stderr.toString(), /^era-apply: warning: the input is empty: taken as a stream of the original era_copy/)
  t.match(r.stdout.toString(), /^format: +ERARANGE.*\nrecords: +0\n/)
})

void t.test('--stats and --json for a script to log; --spool names a directory or a new file', async (t) => {
  const dir = t.testdir()
  const { full, data } = await fixture(dir)
  const target = join(dir, 't.img')
  const r = await run('era-apply', ['--stats', '--json', '--spool', dir, target], { input: full })
  t.equal(r.status, 0, r.stderr)
  t.match(
    r.stderr,
    /^era-apply: .*t\.img: \d+ records, 319\.7 KiB written, 64\.0 KiB skipped, 383\.7 KiB in all, [\d.]+ s\n$/,
  )
  t.match(JSON.parse(r.stdout.toString()), {
    program: 'era-apply',
    target,
    skipped: 64 * KiB,
    created: true,
    complete: true,
  })
  t.same(readFileSync(target), data)
  const missing = await run('era-apply', ['--spool', join(dir, 'no-such') + '/', target], { input: full })
  t.equal(missing.status, 2)
  t.match(missing.stderr, /--spool .*no-such\/: no such directory; create it first/)
  const deep = await run('era-apply', ['--spool', join(dir, 'no-such', 'spool'), target], { input: full })
  t.equal(deep.status, 2)
  t.match(deep.stderr, /neither a directory nor a new file in one/)
  const file = await run('era-apply', ['--spool', join(dir, 'new-spool'), target], { input: full })
  t.equal(file.status, 0)
  t.match(file.stderr, /--spool .*new-spool is not a directory: spooling into that new file/)
  t.notOk(existsSync(join(dir, 'new-spool')), 'nothing is left behind')
})
