import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { K64, chunkDigests, parseStream } from '../integration/bsync-lib.js'
import { fixturePath } from '../erarange/lib.js'
import { randomBytes, writeImage } from '../lib/data.js'
import { run, sh } from '../lib/run.js'

// bpdump lists every kind of stream, as text and as JSON lines, verifying
// it as it goes: a damaged stream is listed up to the damage, then fails.

type Json = Record<string, unknown>

function jsonLines(out: Buffer): Json[] {
  return out
    .toString()
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Json)
}

const hex = (v: bigint): string => v.toString(16).padStart(16, '0')

/** A block stream from era-copy --all of an image of 200 KiB: data, 128 KiB of zeros, data. */
async function blockStream(dir: string): Promise<Buffer> {
  writeImage(join(dir, 'src.img'), 3 * K64 + 8192, 1, [[K64, 2 * K64]])
  const r = await run('era-copy', ['--all', '--written-since', '7', 'src.img'], { cwd: dir })
  writeFileSync(join(dir, 'block.bps'), r.stdout)
  return r.stdout
}

void t.test('a block stream, as text: header, records, totals', async (t) => {
  const dir = t.testdir()
  const stream = await blockStream(dir)
  const r = await run('bpdump', [join(dir, 'block.bps')])
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stderr, '')
  const { header } = await parseStream(stream)
  const h = header.byteLength
  t.equal(
    r.stdout.toString(),
    [
      'kind:       block (full: covers the whole image), format version 1',
      'image size: 204800 bytes (200.0 KiB)',
      'block size: 65536 bytes (64.0 KiB)',
      `producer:   ${header.metadata.producer}`,
      'source:     src.img',
      `created:    ${header.metadata.created}`,
      `id:         ${header.metadata.id}`,
      'input:      all',
      'written-since: 7',
      `record 0 at byte ${h}: DATA offset 0 length 65536 (64.0 KiB), payload 65536`,
      `record 1 at byte ${h + 48 + K64}: ZERO offset 65536 length 131072 (128.0 KiB)`,
      `record 2 at byte ${h + 96 + K64}: DATA offset 196608 length 8192 (8.00 KiB), payload 8192`,
      'records:    3',
      'data:       73728 bytes (72.0 KiB)',
      'zeros:      131072 bytes (128.0 KiB)',
      `length:     ${stream.length} bytes (${(stream.length / 1024).toFixed(1)} KiB)`,
      'verified:   every record checksum, the order of records and the end record',
      '',
    ].join('\n'),
  )
  // --digests: a block stream has no chunk digests to list.
  const digests = await run('bpdump', ['--digests', join(dir, 'block.bps')])
  t.same(digests.stdout, r.stdout)
  // Standard input, named - or not at all, lists the same.
  for (const args of [[], ['-']]) {
    const s = await run('bpdump', args, { input: stream })
    t.equal(s.status, 0, s.stderr)
    t.same(s.stdout, r.stdout, `stdin ${args.join(' ')}`)
  }
})

void t.test('a block stream as JSON lines', async (t) => {
  const dir = t.testdir()
  const stream = await blockStream(dir)
  const { header, records } = await parseStream(stream)
  const r = await run('bpdump', ['--json', join(dir, 'block.bps')])
  t.equal(r.status, 0, r.stderr)
  const lines = jsonLines(r.stdout)
  t.same(lines[0], {
    type: 'header',
    format: 'blockpipe',
    version: 1,
    kind: 'block',
    flags: 1,
    full: true,
    size: 204800,
    baseSize: 0,
    blockSize: 65536,
    hash: 'xxh64',
    seed: '0',
    metadata: header.metadata,
    checksum: hex(header.checksum),
    bytes: header.byteLength,
  })
  t.same(lines[2], {
    type: 'record',
    index: 1,
    position: header.byteLength + 48 + K64,
    record: 'ZERO',
    flags: 0,
    offset: 65536,
    length: 131072,
    payloadLength: 0,
    checksum: hex((records[1] as { checksum: bigint }).checksum),
  })
  t.same(lines[4], {
    type: 'end',
    format: 'blockpipe',
    records: 3,
    payloadBytes: 73728,
    dataBytes: 73728,
    zeroBytes: 131072,
    size: 204800,
    bytes: stream.length,
    verified: true,
  })
  t.equal(lines.length, 5)
})

void t.test('a delta stream: base lengths and digests; a digest stream: each digest with --digests', async (t) => {
  const dir = t.testdir()
  const old = writeImage(join(dir, 'old.img'), 4 * K64 + 100, 2)
  const neu = Buffer.from(old)
  randomBytes(10, 3).copy(neu, K64 + 5)
  randomBytes(50, 4).copy(neu, 4 * K64 + 50)
  writeFileSync(join(dir, 'new.img'), neu)
  const d = await sh('bsum -b 64K --seed 9 old.img > sums.bps && bdiff new.img < sums.bps > delta.bps', { cwd: dir })
  t.equal(d.status, 0, d.stderr)
  const olds = await chunkDigests(old, K64, 9n)
  const news = await chunkDigests(neu, K64, 9n)
  const text = await run('bpdump', [join(dir, 'delta.bps')])
  t.equal(text.status, 0, text.stderr)
  const out = text.stdout.toString()
  t.match(out, /^kind: {7}delta, format version 1\nimage size: 262244 bytes .*\nbase size: {2}262244 bytes/)
  t.match(out, '\ndigests:    xxh64, seed 9\n')
  t.match(
    out,
    `: DATA offset 65536 length 65536 (64.0 KiB), payload 65536, base 65536 bytes xxh64 ${hex(olds.digests[1] as bigint)}\n`,
  )
  t.match(
    out,
    `: DATA offset 262144 length 100 (100 B), payload 100, base 100 bytes xxh64 ${hex(olds.digests[4] as bigint)}\n`,
  )
  t.match(out, `\nimage:      xxh64 ${hex(news.image)} (of the chunk digests)\n`)
  const json = jsonLines((await run('bpdump', ['--json', join(dir, 'delta.bps')])).stdout)
  t.match(json[1], { record: 'DATA', offset: 65536, baseLength: 65536, baseDigest: hex(olds.digests[1] as bigint) })
  t.match(json[3], { type: 'end', imageDigest: hex(news.image) })

  const sums = await run('bpdump', ['--digests', join(dir, 'sums.bps')])
  t.equal(sums.status, 0, sums.stderr)
  const lines = sums.stdout.toString().split('\n')
  t.ok(lines.some((l) => /^record 0 at byte \d+: SUMS offset 0 length 262244 \(256\.1 KiB\), 5 digests$/.test(l)))
  t.same(
    lines.filter((l) => l.startsWith('  chunk')),
    olds.digests.map((dg, i) => `  chunk ${i} offset ${i * K64} length ${i === 4 ? 100 : K64}: xxh64 ${hex(dg)}`),
  )
  const plain = await run('bpdump', [join(dir, 'sums.bps')])
  t.notMatch(plain.stdout.toString(), /^ {2}chunk/m, 'the digests only with --digests')
  const sj = jsonLines((await run('bpdump', ['--json', '--digests', join(dir, 'sums.bps')])).stdout)
  t.match(sj[0], { kind: 'digest', seed: '9' })
  t.match(sj[1], { type: 'record', record: 'SUMS', digests: 5, payloadLength: 40 })
  t.same(sj[6], {
    type: 'digest',
    record: 0,
    chunk: 4,
    offset: 4 * K64,
    length: 100,
    digest: hex(olds.digests[4] as bigint),
  })
  t.match(sj[7], { type: 'end', imageDigest: hex(olds.image), verified: true })
})

void t.test('an undo journal', async (t) => {
  const dir = t.testdir()
  const stream = await blockStream(dir)
  writeFileSync(join(dir, 'target.img'), randomBytes(300000, 5))
  const a = await run('era-apply', ['--undo', 'undo.bps', 'target.img'], { cwd: dir, input: stream })
  t.equal(a.status, 0, a.stderr)
  const r = await run('bpdump', [join(dir, 'undo.bps')])
  t.equal(r.status, 0, r.stderr)
  t.match(
    r.stdout.toString(),
    /^kind: {7}undo, format version 1\nimage size: 300000 bytes .*\nbase size: {2}204800 bytes/,
  )
  t.match(r.stdout.toString(), /\ntarget: {5}target.img\nstream-id: {2}[0-9a-f]{16}\n/)
  // The old contents of each region the apply wrote, then of the tail it cut off.
  t.match(r.stdout.toString(), /: DATA offset 0 length 65536 [^\n]*\n/)
  t.match(r.stdout.toString(), /: DATA offset 204800 length 95200 [^\n]*\nrecords: {4}4\n/)
})

void t.test('the original era_copy stream, as text and JSON', async (t) => {
  const text = await run('bpdump', [fixturePath('basic')])
  t.equal(text.status, 0, text.stderr)
  t.match(
    text.stderr,
    /^bpdump: warning: this is a stream of the original era_copy \(ERARANGE records\): it has no checksums/,
  )
  t.equal(
    text.stdout.toString(),
    [
      'format:     ERARANGE, the stream of the original era_copy: no header, no checksums, no end marker',
      'record 0 at byte 0: ERARANGE offset 0 length 64 (64 B)',
      'record 1 at byte 88: ERARANGE offset 512 length 128 (128 B)',
      'record 2 at byte 240: ERARANGE offset 8192 length 32 (32 B)',
      'records:    3',
      'data:       224 bytes (224 B)',
      'extent:     up to byte 8224 (8.03 KiB)',
      'order:      ascending',
      'length:     296 bytes (296 B)',
      'verified:   only the structure (every record starts with ERARANGE and its data is whole): corrupt data, or a' +
        ' cut between two records, cannot be detected',
      '',
    ].join('\n'),
  )
  const json = await run('bpdump', ['--json'], { inputFile: fixturePath('unordered') })
  t.equal(json.status, 0, json.stderr)
  t.same(jsonLines(json.stdout), [
    { type: 'header', format: 'erarange' },
    { type: 'record', index: 0, position: 0, record: 'ERARANGE', offset: 4096, length: 16 },
    { type: 'record', index: 1, position: 40, record: 'ERARANGE', offset: 0, length: 8 },
    { type: 'record', index: 2, position: 72, record: 'ERARANGE', offset: 0, length: 0 },
    { type: 'record', index: 3, position: 96, record: 'ERARANGE', offset: 4100, length: 4 },
    {
      type: 'end',
      format: 'erarange',
      records: 4,
      dataBytes: 28,
      end: 4112,
      ascending: false,
      bytes: 124,
      verified: false,
    },
  ])
  const cut = await run('bpdump', ['--json', fixturePath('cut-data')])
  t.equal(cut.status, 1)
  const lines = jsonLines(cut.stdout)
  t.equal(lines.length, 5, 'header, three records, the error')
  t.same(lines[4], {
    type: 'error',
    code: 'ETRUNCATED',
    message:
      'unexpected end of data: the stream was cut in record 2 (image bytes 8192..8224, from stream byte 240): 22 of' +
      ' its 32 bytes of data arrived',
    record: 2,
    position: 240,
  })
  t.match(cut.stderr, /\nbpdump: unexpected end of data: the stream was cut in record 2 /)
})

void t.test('a cut or corrupt stream is listed up to the damage, then fails', async (t) => {
  const dir = t.testdir()
  const stream = await blockStream(dir)
  const { header } = await parseStream(stream)
  const cutAt = header.byteLength + 48 + K64 + 48 + 10 // inside the last record's payload
  const cut = await run('bpdump', [], { input: stream.subarray(0, cutAt) })
  t.equal(cut.status, 1)
  const lines = cut.stdout.toString().trimEnd().split('\n')
  t.match(lines[lines.length - 1], /^record 1 at byte \d+: ZERO offset 65536 /, 'the records before the cut')
  t.notMatch(cut.stdout.toString(), /records:/, 'no totals')
  t.equal(
    cut.stderr,
    `bpdump: unexpected end of data: the stream was cut at byte ${cutAt}, in record 2 (after 2 whole records), before its end record\n`,
  )
  const bad = Buffer.from(stream)
  const at = header.byteLength + 48 + 100 // a bit of record 0's payload
  bad.writeUInt8(bad.readUInt8(at) ^ 1, at)
  const corrupt = await run('bpdump', ['--json'], { input: bad })
  t.equal(corrupt.status, 1)
  const json = jsonLines(corrupt.stdout)
  t.same(
    json.map((l) => l.type),
    ['header', 'error'],
  )
  t.match(json[1], { code: 'ECORRUPT', record: 0, position: header.byteLength, message: /checksum mismatch/ })
  const gz = await sh(`gzip -c < ${join(dir, 'block.bps')} | bpdump`)
  t.equal(gz.status, 1)
  t.match(gz.stderr, /bad magic at the start of the stream: gzip-compressed data: add gunzip/)
  const empty = await run('bpdump', ['--json'], { input: Buffer.alloc(0) })
  t.equal(empty.status, 1)
  t.same(jsonLines(empty.stdout), [
    { type: 'error', code: 'ETRUNCATED', message: 'empty input: no stream at all', record: 0, position: 0 },
  ])
})

void t.test('files that cannot be read, and usage errors', async (t) => {
  const dir = t.testdir()
  const missing = await run('bpdump', ['--json', join(dir, 'nope.bps')])
  t.equal(missing.status, 1)
  t.equal(missing.stderr, `bpdump: ${join(dir, 'nope.bps')}: no such file or device\n`)
  t.same(jsonLines(missing.stdout), [
    { type: 'error', code: 'EDEVICE', message: `${join(dir, 'nope.bps')}: no such file or device` },
  ])
  const directory = await run('bpdump', [dir])
  t.equal(directory.status, 1)
  t.equal(directory.stderr, `bpdump: ${dir}: is a directory\n`)
  const unreadable = await run('bpdump', ['/proc/self/mem'])
  t.equal(unreadable.status, 1)
  t.match(unreadable.stderr, /^bpdump: \/proc\/self\/mem: read error: EIO/)
  const two = await run('bpdump', ['a', 'b'])
  t.equal(two.status, 2)
  t.match(two.stderr, 'bpdump: one FILE only, got a b')
  const option = await run('bpdump', ['--jsn'])
  t.equal(option.status, 2)
})

void t.test('a long listing goes out in batches, and stops at a closed pipe', async (t) => {
  const dir = t.testdir()
  writeImage(join(dir, 'big.img'), 8 * 1024 * 1024, 6)
  const s = await sh('bsum -b 4K --seed 1 big.img > big.bps', { cwd: dir })
  t.equal(s.status, 0, s.stderr)
  const all = await run('bpdump', ['--json', '--digests', join(dir, 'big.bps')])
  t.equal(all.status, 0, all.stderr)
  const lines = jsonLines(all.stdout)
  t.equal(lines.filter((l) => l.type === 'digest').length, 2048)
  t.ok(all.stdout.length > 128 * 1024)
  const head = await sh('bpdump --digests big.bps | head -n 1', { cwd: dir })
  t.equal(head.status, 1)
  t.equal(head.stdout.toString(), 'kind:       digest, format version 1\n')
  t.equal(head.stderr, 'bpdump: the reading end of the output went away (broken pipe)\n')
  const cut = readFileSync(join(dir, 'big.bps')).subarray(0, 20000)
  writeFileSync(join(dir, 'cut.bps'), cut)
  const both = await sh('bpdump --json --digests cut.bps | head -c 100 > /dev/null', { cwd: dir })
  t.equal(both.status, 1)
  t.match(both.stderr, /broken pipe|unexpected end of data/)
})
