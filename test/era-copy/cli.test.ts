import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { randomBytes, writeImage } from '../lib/data.js'
import { binPath, have, run, runCommand, sh } from '../lib/run.js'

// era-copy as a user runs it: the built binary, XML on stdin, a stream on stdout.

const KiB = 1024
const BLOCK = 64 * KiB

function check(stream: Buffer) {
  return run('era-apply', ['--check'], { input: stream })
}

void t.test('usage errors exit 2 and write nothing', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  writeImage(img, 4 * BLOCK, 1)
  const cases: [string[], RegExp][] = [
    [['-b', 'NaN', img], /--block-size "NaN" is not a size: give sectors \(128\) or bytes with a suffix/],
    [['-b', '0', img], /--block-size must not be zero/],
    [['-b', '-1', img], /--block-size "-1" is not a size/],
    [['--block-size=-8', img], /--block-size "-8" is not a size/],
    [['-b', '100', img], /--block-size 100 is not a multiple of 4 KiB \(100 sectors = 51200 bytes; sectors must be/],
    [['-b', '6K', img], /--block-size 6K is not a multiple of 4 KiB/],
    [['-b', '2G', img], /--block-size 2G is too large/],
    [['-b', '', img], /--block-size "" is not a size/],
    [[img], /--block-size is required: give the dm-era block size, e\.g\. -b 128/],
    [['-b', '128'], /missing DEVICE/],
    [['--all', '-b', '128'], /missing DEVICE/],
    [['-b', '128', img, img], /one DEVICE only/],
    [['-b', '128', '--bogus', img], /unknown option --bogus\n/],
    [['-b', '128', '--writen-since', '1', img], /unknown option --writen-since \(did you mean --written-since\?\)/],
    [['-b', '128', '--written-since', 'seven', img], /--written-since "seven" is not an era number/],
    [['-b', '128', '--written-since', '-1', img], /--written-since "-1" is not an era number/],
  ]
  for (const [args, message] of cases) {
    const r = await run('era-copy', args, { input: '<blocks/>' })
    t.equal(r.status, 2, args.join(' '))
    t.match(r.stderr, message, args.join(' '))
    t.match(r.stderr, /^era-copy: .*\nTry 'era-copy --help' for more information\.\n$/)
    t.equal(r.stdout.length, 0, 'nothing on stdout')
  }
})

void t.test('--help and --version', async (t) => {
  const help = await run('era-copy', ['--help'])
  t.equal(help.status, 0)
  t.match(help.stdout.toString(), /Usage: era-copy \[-b SIZE\] DEVICE < era_invalidate\.xml > stream/)
  t.match(help.stdout.toString(), /--block-size/)
  const version = await run('era-copy', ['--version'])
  t.equal(version.status, 0)
  t.match(version.stdout.toString(), /^era-copy \d+\.\d+\.\d+\n$/)
})

void t.test('a device that cannot be read is a failure, exit 1', async (t) => {
  const dir = t.testdir()
  const missing = await run('era-copy', ['-b', '128', join(dir, 'nope')], { input: '<blocks/>' })
  t.equal(missing.status, 1)
  t.match(missing.stderr, /^era-copy: .*nope: no such file or device\n$/)
  t.equal(missing.stdout.length, 0)
  mkdirSync(join(dir, 'subdir'))
  const directory = await run('era-copy', ['-b', '128', join(dir, 'subdir')], { input: '<blocks/>' })
  t.equal(directory.status, 1)
  t.match(directory.stderr, /subdir: (is a directory|not a regular file or block device)/)
})

void t.test('a block beyond the device: exit 1 naming the block and the size, nothing on stdout', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  // Five era blocks, the last one partial.
  writeImage(img, 5 * BLOCK - 100, 2)
  const beyond = ['<block block="5"/>', '<range begin="3" end="6"/>', '<range begin="1000" end="1001"/>']
  for (const element of beyond) {
    const r = await run('era-copy', ['-b', '128', img], { input: `<blocks>\n  ${element}\n</blocks>\n` })
    t.equal(r.status, 1, element)
    t.match(
      r.stderr,
      new RegExp(
        `^era-copy: block (5|1000) is beyond the end of ${img}, which has 5 blocks of 64\\.0 KiB ` +
          '\\(319\\.9 KiB\\): wrong device or wrong block size \\(-b\\)\\?\\n$',
      ),
    )
    t.equal(r.stdout.length, 0, 'nothing was written')
  }
  // With -b 8 (4 KiB blocks) the same XML fits: block numbers count era blocks.
  const fits = await run('era-copy', ['-b', '8', img], { input: '<blocks><block block="5"/></blocks>' })
  t.equal(fits.status, 0)
  // The partial last block is fine and is clamped to the device.
  const last = await run('era-copy', ['-b', '128', img], { input: '<blocks><block block="4"/></blocks>' })
  t.equal(last.status, 0)
  const summary = await check(last.stdout)
  t.match(summary.stdout.toString(), /records: +1\b/)
  t.match(summary.stdout.toString(), /data: +65436 bytes/)
})

void t.test('bad XML: exit 1, a message with the line, nothing on stdout', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  writeImage(img, 8 * BLOCK, 3)
  const cases: [string, RegExp][] = [
    [
      '<blocks>\n<range begin="0" end="2"/>\n<range begin="1" end="3"/>\n</blocks>\n',
      /^era-copy: line 3: block 1 comes after block 1/,
    ],
    [
      '<blocks>\n<range begin="0" end="2"/>\n',
      /^era-copy: unexpected end of input: <blocks> is never closed \(was the XML cut off\?\)/,
    ],
    [
      '<superblock uuid="" block_size="128" nr_blocks="8" current_era="3">\n</superblock>\n',
      /this looks like era_dump or thin_delta output/,
    ],
    ['<blocks>\n<range begin="0" end=2/>\n</blocks>', /^era-copy: line 2: malformed XML/],
    ['', /^era-copy: empty input: no XML at all/],
    ['\x89BPS\r\n\x1a\n', /^era-copy: line 1: unexpected text/],
  ]
  for (const [xml, message] of cases) {
    const r = await run('era-copy', ['-b', '128', img], { input: xml })
    t.equal(r.status, 1, JSON.stringify(xml))
    t.match(r.stderr, message)
    t.equal(r.stdout.length, 0)
  }
})

void t.test('an empty list is a valid stream with no records', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  writeImage(img, 8 * BLOCK, 4)
  for (const xml of ['<blocks>\n</blocks>\n', '<blocks>\n</blocks>', '<blocks/>']) {
    const r = await run('era-copy', ['-b', '128', '--written-since', '9', img], { input: xml })
    t.equal(r.status, 0)
    t.equal(r.stderr, '')
    const summary = await check(r.stdout)
    t.equal(summary.status, 0)
    t.match(summary.stdout.toString(), /kind: +block, format version 1\n/)
    t.notMatch(summary.stdout.toString(), /full/)
    t.match(summary.stdout.toString(), /records: +0\n/)
    t.match(summary.stdout.toString(), /written-since: +9\n/)
  }
})

void t.test('--all copies every block; the stream says it is full', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  // Not a multiple of the block size, nor of 512.
  const data = writeImage(img, 5 * BLOCK + 777, 5, [[BLOCK, 2 * BLOCK]])
  const r = await run('era-copy', ['--all', '-b', '128', img])
  t.equal(r.status, 0)
  const summary = (await check(r.stdout)).stdout.toString()
  t.match(summary, /kind: +block \(full: covers the whole image\)/)
  t.match(summary, new RegExp(`image size: +${data.length} bytes`))
  t.match(summary, /block size: +65536 bytes/)
  t.match(summary, /input: +all/)
  t.match(summary, new RegExp(`zeros: +${2 * BLOCK} bytes`))
  const backup = join(dir, 'backup')
  const applied = await run('era-apply', [backup], { input: r.stdout })
  t.equal(applied.status, 0, applied.stderr)
  t.ok(readFileSync(backup).equals(data), 'byte for byte')
  // Without -b, --all uses 64 KiB.
  const plain = await run('era-copy', ['--all', img])
  t.equal(plain.status, 0)
  t.match((await check(plain.stdout)).stdout.toString(), /block size: +65536 bytes/)
})

void t.test('--all of an empty file', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  writeFileSync(img, '')
  const r = await run('era-copy', ['--all', '-b', '8', img])
  t.equal(r.status, 0)
  t.match((await check(r.stdout)).stdout.toString(), /full[\s\S]*records: +0/)
  const backup = join(dir, 'backup')
  t.equal((await run('era-apply', [backup], { input: r.stdout })).status, 0)
  t.equal(readFileSync(backup).length, 0)
})

void t.test('listing every block of the device makes a full stream', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  writeImage(img, 3 * BLOCK + 1, 6)
  const r = await run('era-copy', ['-b', '64K', img], {
    input: '<blocks><range begin="0" end="3"/><block block="3"/></blocks>',
  })
  t.equal(r.status, 0)
  t.match((await check(r.stdout)).stdout.toString(), /full: covers the whole image/)
})

void t.test('--progress reports on stderr, the stream is unchanged', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  writeImage(img, 16 * BLOCK, 7)
  const xml = '<blocks><range begin="2" end="5"/></blocks>'
  const quiet = await run('era-copy', ['-b', '128', img], { input: xml })
  const loud = await run('era-copy', ['--progress', '-b', '128', img], { input: xml })
  t.equal(loud.status, 0)
  t.match(loud.stderr, /^era-copy: 1\.00 MiB of 1\.00 MiB \(100%\), .*\/s, \d+:\d\d elapsed, 192\.\d KiB written\n$/)
  t.equal(quiet.stderr, '')
  t.equal(loud.stdout.length, quiet.stdout.length)
})

void t.test(
  'a binary stream is never written to a terminal',
  { skip: !have('script') && 'script(1) is not installed' },
  async (t) => {
    const dir = t.testdir()
    const img = join(dir, 'img')
    writeImage(img, 4 * BLOCK, 8)
    const node = process.execPath
    const bin = binPath('era-copy')
    const out = await runCommand('script', ['-qec', `${node} ${bin} --all -b 8 ${img}`, '/dev/null'], { input: '' })
    t.equal(out.status, 2)
    t.match(out.stdout.toString(), /era-copy: refusing to write a binary stream to a terminal/)
    const into = await runCommand('script', ['-qec', `${node} ${bin} -b 8 ${img} > ${join(dir, 's')}`, '/dev/null'], {
      input: '',
    })
    t.equal(into.status, 2)
    t.match(into.stdout.toString(), /era-copy: expected era_invalidate XML on standard input, not a terminal/)
    t.equal(readFileSync(join(dir, 's')).length, 0)
  },
)

void t.test('the reader going away is reported, exit 1', async (t) => {
  const dir = t.testdir()
  const img = join(dir, 'img')
  writeFileSync(img, randomBytes(16 * 1024 * 1024, 9))
  const r = await sh(`era-copy --all -b 8 ${img} | head -c 100 > /dev/null; echo "status \${PIPESTATUS[0]}" >&2`)
  t.match(r.stderr, /era-copy: the reading end of the output went away \(broken pipe\)\nstatus 1\n$/)
})
