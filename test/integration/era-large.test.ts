import { spawn } from 'node:child_process'
import { closeSync, openSync, ftruncateSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { Readable } from 'node:stream'
import t from 'tap'
import { END_PAYLOAD_SIZE, HEADER_SIZE, RECORD_HEADER_SIZE } from '../../packages/core/src/format.js'
import { ROOT, binPath } from '../lib/run.js'

// A list of 1,000,000 ranges, the size era_invalidate prints for a busy
// multi-terabyte device, read by era-copy with bounded memory.
//
// The XML is generated as a stream (42 MB, never held), era-copy runs in its
// own process with a preload (test/lib/rss.js) that records its peak RSS,
// and its stream is checked as it goes by: byte count, header and end record.
//
// Why 256 MiB. Parsed as one document the XML takes about 450 MB (see
// REFERENCE.md: fast-xml-parser on 1,000,000 ranges); era-copy made to parse
// its whole input at once peaked at 860 MB in this test. era-copy holds one
// batch of XML (a pipe read, 64 KiB) with its parse, at most 65536 ranges
// (1 MiB) before they spill to a temporary file, and one 1 MiB record
// buffer; the rest is Node's own footprint (60 MB here: the 1-range run)
// and the garbage V8 lets pile up between collections, which depends on
// the machine's load. Measured: 150 to 172 MB for 1,000,000 ranges, 120 MB
// for 100,000. Under --max-old-space-size=32 it still parses the 1,000,000
// (slowly): what it keeps alive is small, the rest is collector slack.
// 256 MiB leaves room for that slack and fails anything that holds the
// document or its parse.

const RANGES = 1_000_000
const BLOCK = 4096 // -b 8
const LIMIT = 256 * 1024 * 1024

/** <range begin="2i" end = "2i+1"/>, 0.9 dialect: no two ranges touch, so none merge. */
function* xml(n: number): Generator<string> {
  yield '<blocks>\n'
  for (let i = 0; i < n;) {
    let s = ''
    for (let k = 0; k < 2000 && i < n; k++, i++) s += `  <range begin="${2 * i}" end = "${2 * i + 1}"/>\n`
    yield s
  }
  yield '</blocks>\n'
}

interface Measured {
  status: number | null
  stderr: string
  rss: number
  bytes: number
  head: Buffer
  tail: Buffer
  seconds: number
}

function measure(dir: string, device: string, n: number): Promise<Measured> {
  const rssFile = join(dir, `rss-${n}`)
  const start = process.hrtime.bigint()
  // Without tap's coverage collection, which costs about 40 MB of its own:
  // this measures era-copy. tap puts its preload back into NODE_OPTIONS of
  // every process a test spawns, so env(1) takes it out.
  const env = { ...process.env, BLOCKPIPE_RSS_FILE: rssFile }
  const args = ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath]
  args.push('--import', join(ROOT, 'test', 'lib', 'rss.js'), binPath('era-copy'), '-b', '8', device)
  const child = spawn('env', args, { env, stdio: ['pipe', 'pipe', 'pipe'] })
  Readable.from(xml(n)).pipe(child.stdin)
  let bytes = 0
  let head = Buffer.alloc(0)
  let tail = Buffer.alloc(0)
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => {
    bytes += b.length
    if (head.length < 64) head = Buffer.concat([head, b]).subarray(0, 64)
    tail = Buffer.concat([tail, b]).subarray(-(RECORD_HEADER_SIZE + END_PAYLOAD_SIZE))
  })
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (status) =>
      resolve({
        status,
        stderr,
        rss: Number(readFileSync(rssFile, 'utf8')),
        bytes,
        head,
        tail,
        seconds: Number(process.hrtime.bigint() - start) / 1e9,
      }),
    )
  })
}

void t.test('1,000,000 ranges with bounded memory', async (t) => {
  const dir = t.testdir()
  // 2,000,000 blocks of 4 KiB, sparse: every listed block reads as zeros.
  const device = join(dir, 'device.img')
  const fd = openSync(device, 'w')
  ftruncateSync(fd, 2 * RANGES * BLOCK)
  closeSync(fd)

  const baseline = await measure(dir, device, 1)
  t.equal(baseline.status, 0, baseline.stderr)
  const big = await measure(dir, device, RANGES)
  t.equal(big.status, 0, big.stderr)
  t.equal(big.stderr, '')
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MiB`
  t.comment(
    `era-copy peak RSS: ${mb(big.rss)} for ${RANGES} ranges in ${big.seconds.toFixed(1)} s, ` +
      `${mb(baseline.rss)} for 1 range`,
  )
  t.ok(big.rss < LIMIT, `peak RSS ${mb(big.rss)} is under ${mb(LIMIT)}`)

  // Every range became one ZERO record (the ranges do not touch), in one stream.
  const headerLength = HEADER_SIZE + big.head.readUInt16LE(38)
  t.equal(big.bytes, headerLength + RANGES * RECORD_HEADER_SIZE + RECORD_HEADER_SIZE + END_PAYLOAD_SIZE)
  t.equal(big.tail.toString('latin1', 0, 4), 'END.')
  const end = big.tail.subarray(RECORD_HEADER_SIZE)
  t.equal(Number(end.readBigUInt64LE(0)), RANGES, 'the end record counts every range')
  t.equal(Number(end.readBigUInt64LE(24)), RANGES * BLOCK, 'and every block as zeros')
})
