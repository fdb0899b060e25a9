import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { prng, randomBytes, writeImage } from '../lib/data.js'
import { eraInvalidate, eraRestore, expectedBlocks, type EraHistory } from '../lib/era.js'
import { ROOT, have, run, sh } from '../lib/run.js'

// The real thin-provisioning-tools: era metadata restored into a file with
// era_restore, the block lists printed by era_invalidate, and the pipeline a
// backup runs, ending with a byte-for-byte comparison of backup and source.

const missing = ['era_restore', 'era_invalidate', 'gzip'].filter((c) => !have(c))
const skip = missing.length > 0 && `not installed: ${missing.join(', ')} (apt-get install thin-provisioning-tools)`

/** The blocks an era_invalidate output lists, by a reading independent of era-copy's. */
function listed(xml: string): number[] {
  const out: number[] = []
  for (const m of xml.matchAll(/<range begin="(\d+)" end\s*=\s*"(\d+)"\/>|<block block="(\d+)"\/>/g)) {
    if (m[3] !== undefined) out.push(Number(m[3]))
    else for (let b = Number(m[1]); b < Number(m[2]); b++) out.push(b)
  }
  return out
}

function same(t: Test, backup: string, source: string, what: string): void {
  const a = readFileSync(backup)
  const b = readFileSync(source)
  t.equal(a.length, b.length, `${what}: same size`)
  t.ok(a.equals(b), `${what}: backup and source are equal byte for byte`)
}

/** Writes new data (or zeros) into era blocks of the source and records the era they were written in. */
function write(source: string, h: EraHistory, blocks: number[], era: number, seed: number, zero = false): void {
  const data = readFileSync(source)
  const bs = h.blockSectors * 512
  for (const b of blocks) {
    const from = b * bs
    const to = Math.min(from + bs, data.length)
    // Part of the block only, as a filesystem does: the rest of it is unchanged.
    const at = from + ((b * 4096) % Math.max(to - from - 4096, 1))
    const len = Math.min(4096 * 3, to - at)
    if (zero) data.fill(0, from, to)
    else randomBytes(len, seed + b).copy(data, at)
    if (h.writeset?.era === era) h.writeset.blocks.push(b)
    else h.eras[b] = era
  }
  writeFileSync(source, data)
}

/** The dm-era snapshot step: the writeset is archived into the era array, the era moves on. */
function snapshot(h: EraHistory): number {
  if (h.writeset !== undefined) for (const b of h.writeset.blocks) h.eras[b] = h.writeset.era
  h.currentEra++
  h.writeset = { era: h.currentEra, blocks: [] }
  return h.currentEra
}

interface Night {
  blocks: number[]
  zeroed?: number[]
  /** Written after the snapshot, while the copy runs: still in the live writeset. */
  late?: number[]
}

async function scenario(t: Test, blockSectors: number, size: number, nights: Night[]): Promise<void> {
  const dir = t.testdir()
  const bs = blockSectors * 512
  const nrBlocks = Math.ceil(size / bs)
  const source = join(dir, 'source.img')
  const backup = join(dir, 'backup.img')
  writeImage(source, size, blockSectors, [[bs, 2 * bs + 1000]])
  const h: EraHistory = { blockSectors, eras: new Array<number>(nrBlocks).fill(0), currentEra: 1 }

  // The first, full backup.
  let prev = snapshot(h)
  const full = await sh(`era-copy --all -b ${blockSectors} ${source} | gzip | gunzip | era-apply ${backup}`)
  t.equal(full.status, 0, full.stderr)
  same(t, backup, source, 'after era-copy --all')

  for (const [i, night] of nights.entries()) {
    write(source, h, night.blocks, h.currentEra, 1000 * (i + 1))
    write(source, h, night.zeroed ?? [], h.currentEra, 0, true)
    const next = snapshot(h)
    write(source, h, night.late ?? [], h.currentEra, 5000 * (i + 1))
    const meta = eraRestore(dir, h)
    const xml = eraInvalidate(meta, prev).toString()
    const expected = expectedBlocks(h, prev)
    t.strictSame(
      listed(xml),
      expected,
      `night ${i + 1}: era_invalidate --written-since ${prev} lists the blocks written`,
    )
    const r = await sh(
      `era_invalidate --written-since ${prev} ${meta} | era-copy -b ${blockSectors} --written-since ${prev} ${source}` +
        ` | gzip | gunzip | era-apply ${backup}`,
    )
    t.equal(r.status, 0, r.stderr)
    same(t, backup, source, `night ${i + 1} (${expected.length} of ${nrBlocks} blocks listed)`)
    prev = next
  }

  // --written-since 0 lists every block: a full stream, applied to a new file.
  const meta = eraRestore(dir, h)
  t.strictSame(listed(eraInvalidate(meta, 0).toString()), [...Array(nrBlocks).keys()], 'since 0: every block')
  const fresh = join(dir, 'fresh.img')
  const r = await sh(
    `era_invalidate --written-since 0 ${meta} | era-copy -b ${blockSectors} ${source} | era-apply ${fresh}`,
  )
  t.equal(r.status, 0, r.stderr)
  same(t, fresh, source, '--written-since 0 onto a new file')

  // An era beyond the current one: an empty list, the backup unchanged.
  const empty = eraInvalidate(meta, h.currentEra + 5).toString()
  t.strictSame(listed(empty), [], 'a later era lists nothing')
  const r2 = await sh(
    `era_invalidate --written-since ${h.currentEra + 5} ${meta} | era-copy -b ${blockSectors} ${source} | era-apply ${backup}`,
  )
  t.equal(r2.status, 0, r2.stderr)
  same(t, backup, source, 'after an empty list')
}

function nightsFor(nrBlocks: number, seed: number): Night[] {
  const rnd = prng(seed)
  const some = (n: number): number[] => {
    const set = new Set<number>()
    while (set.size < n) set.add(Math.floor(rnd() * nrBlocks))
    return [...set].sort((a, b) => a - b)
  }
  const last = nrBlocks - 1
  return [
    { blocks: [0, 1, 2, 7] }, // a run and a single block
    { blocks: [...some(5), last], zeroed: [3], late: [4, last] }, // the partial last block; zeros; the live writeset
    { blocks: [] }, // nothing written: only the late blocks of the night before
    { blocks: [] }, // nothing at all: an empty list
    { blocks: some(Math.floor(nrBlocks / 2)) },
  ]
}

void t.test('64 KiB era blocks (-b 128), an image of 37 blocks less 1000 bytes', { skip }, async (t) => {
  const size = 37 * 65536 - 1000 // not a multiple of the block size, nor of 512
  await scenario(t, 128, size, nightsFor(37, 1))
})

void t.test('68 KiB era blocks (-b 136, not a power of two), a partial last block', { skip }, async (t) => {
  const size = 29 * 136 * 512 - 5 * 4096
  await scenario(t, 136, size, nightsFor(29, 2))
})

void t.test('the committed 1.x-dialect fixture', async (t) => {
  const fixture = join(ROOT, 'test', 'fixtures', 'era-invalidate-1x.xml')
  const xml = readFileSync(fixture, 'utf8')
  t.match(xml, /end="\d+"/, 'no spaces around =')
  t.notMatch(xml, / = /)
  t.notOk(xml.endsWith('\n'), 'no newline at the end')
  t.strictSame(listed(xml), [0, 1, 2, 5, 9, 10, 11])

  const dir = t.testdir()
  const source = join(dir, 'source.img')
  const size = 12 * 65536 - 3 * 512 // block 11, listed, is partial
  const data = writeImage(source, size, 21)
  const old = randomBytes(size, 22)
  const backup = join(dir, 'backup.img')
  writeFileSync(backup, old)
  const r = await sh(`era-copy -b 128 ${source} < ${fixture} | era-apply ${backup}`)
  t.equal(r.status, 0, r.stderr)
  const expected = Buffer.from(old)
  for (const b of [0, 1, 2, 5, 9, 10, 11]) data.copy(expected, b * 65536, b * 65536, Math.min((b + 1) * 65536, size))
  t.ok(readFileSync(backup).equals(expected), 'the listed blocks and nothing else')

  // On a device of 11 blocks, block 11 is beyond its end.
  const small = join(dir, 'small.img')
  writeFileSync(small, data.subarray(0, 11 * 65536))
  const refused = await run('era-copy', ['-b', '128', small], { inputFile: fixture })
  t.equal(refused.status, 1)
  t.match(
    refused.stderr,
    /^era-copy: block 11 is beyond the end of .*small\.img, which has 11 blocks of 64\.0 KiB \(704\.0 KiB\)/,
  )
  t.equal(refused.stdout.length, 0)
})

void t.test('a block beyond the device, from the real era_invalidate', { skip }, async (t) => {
  const dir = t.testdir()
  const h: EraHistory = { blockSectors: 128, eras: new Array<number>(16).fill(3), currentEra: 4 }
  const meta = eraRestore(dir, h)
  const source = join(dir, 'source.img')
  writeImage(source, 10 * 65536, 31) // metadata for 16 blocks, a device of 10
  const r = await sh(`era_invalidate --written-since 2 ${meta} | era-copy -b 128 ${source} > ${join(dir, 'out')}`)
  t.equal(r.status, 1)
  t.match(
    r.stderr,
    /^era-copy: block 15 is beyond the end of .*source\.img, which has 10 blocks of 64\.0 KiB \(640\.0 KiB\): wrong device or wrong block size \(-b\)\?\n$/,
  )
  t.equal(readFileSync(join(dir, 'out')).length, 0, 'nothing on stdout')
  // The wrong block size: -b 8 names the size in 4 KiB blocks and fits, -b 256 does not.
  const wrong = await sh(`era_invalidate --written-since 2 ${meta} | era-copy -b 256 ${source} > /dev/null`)
  t.equal(wrong.status, 1)
  t.match(wrong.stderr, /block 15 is beyond the end of .*which has 5 blocks of 128\.0 KiB/)
})
