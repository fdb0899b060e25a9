import { spawn } from 'node:child_process'
import { closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, binPath } from '../lib/run.js'

// A dm-snapshot store of 1,500,000 exceptions, listed in a scrambled order,
// read by era-copy --snapshot-cow with bounded memory: the chunks are sorted
// in runs of 1,048,576 spilled to a temporary file, not in one array.
//
// 512-byte chunks (32 exceptions per metadata area): every chunk of a sparse
// 732 MiB origin changed, so the stream is small (ZERO records of 16 MiB) and
// the test measures the store's reading and sorting. The store is written as
// a sparse file: its header and metadata areas only. Measured here: 82 MiB
// peak RSS (Node's own footprint is about 60 MB; the sorter's run 8 MiB);
// 3,000,000 scattered 4 KiB chunks of a 24 GB origin, copied chunk by chunk:
// 170-180 MB. 160 MiB fails a list held as JavaScript objects (checked: 282
// MiB here) and leaves the collector room on a busy host.

const N = 1_500_000
const CHUNK = 512
const PER_AREA = CHUNK / 16
const LIMIT = 160 * 1024 * 1024

/** The store as the kernel lays it out; exception k saves origin chunk (k * 7919) mod N. */
function writeStore(path: string): void {
  const fd = openSync(path, 'w')
  const header = Buffer.alloc(16)
  header.writeUInt32LE(0x70416e53, 0)
  header.writeUInt32LE(1, 4)
  header.writeUInt32LE(1, 8)
  header.writeUInt32LE(CHUNK / 512, 12)
  writeSync(fd, header, 0, 16, 0)
  const stride = PER_AREA + 1
  const area = Buffer.alloc(CHUNK)
  let next = 2
  let k = 0
  for (let a = 0; k < N; a++) {
    area.fill(0)
    for (let i = 0; i < PER_AREA && k < N; i++, k++) {
      area.writeBigUInt64LE(BigInt((k * 7919) % N), i * 16)
      area.writeBigUInt64LE(BigInt(next), i * 16 + 8)
      if (++next % stride === 1) next++
    }
    writeSync(fd, area, 0, CHUNK, (1 + a * stride) * CHUNK)
  }
  // N is a multiple of 32: the last area is full, the next one (zeros) ends the list.
  ftruncateSync(fd, (next + stride + 1) * CHUNK)
  closeSync(fd)
}

void t.test('1,500,000 exceptions with bounded memory', async (t) => {
  const dir = t.testdir()
  const cow = join(dir, 'cow.img')
  const origin = join(dir, 'origin.img')
  writeStore(cow)
  const fd = openSync(origin, 'w')
  ftruncateSync(fd, N * CHUNK)
  closeSync(fd)

  const rssFile = join(dir, 'rss')
  // Without tap's coverage collection (its preload costs about 40 MB): this measures era-copy.
  const args = ['-u', 'NODE_OPTIONS', '-u', 'NODE_V8_COVERAGE', process.execPath]
  args.push('--import', join(ROOT, 'test', 'lib', 'rss.js'), binPath('era-copy'), '--snapshot-cow', cow, origin)
  const child = spawn('env', args, { env: { ...process.env, BLOCKPIPE_RSS_FILE: rssFile } })
  const out: Buffer[] = []
  let stderr = ''
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  const status = await new Promise<number | null>((resolve) => child.on('close', resolve))
  t.equal(status, 0, stderr)
  const rss = Number(readFileSync(rssFile, 'utf8'))
  t.comment(`era-copy --snapshot-cow peak RSS: ${(rss / 1024 / 1024).toFixed(1)} MiB for ${N} exceptions`)
  t.ok(rss < LIMIT, `peak RSS under ${LIMIT / 1024 / 1024} MiB`)

  const stream = Buffer.concat(out)
  t.equal(stream.readUInt32LE(12) & 1, 1, 'every chunk listed: a full stream')
  const end = stream.subarray(stream.length - 48)
  t.equal(Number(end.readBigUInt64LE(24)), N * CHUNK, 'every chunk sent, as zeros')
})
