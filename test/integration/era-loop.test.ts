import { createHash } from 'node:crypto'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { randomBytes, writeImage } from '../lib/data.js'
import { eraRestore, type EraHistory } from '../lib/era.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'
import { have, run, sh } from '../lib/run.js'

// Real block devices: loop devices as era-copy's source and era-apply's
// target. fstat gives a block device's size as 0; the tools must find it.

const skip = loopUnavailable() ?? (!have('era_invalidate') && 'thin-provisioning-tools is not installed')

const BLOCK = 65536
// A multiple of 512 (a block device's size is) but not of the era block size.
const SIZE = 37 * BLOCK - 3 * 512

function digest(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex')
}

void t.test('a loop device as the source', { skip }, async (t) => {
  const dir = t.testdir()
  const file = join(dir, 'source.img')
  const data = writeImage(file, SIZE, 41, [[2 * BLOCK, 3 * BLOCK]])
  const h: EraHistory = { blockSectors: 128, eras: new Array<number>(37).fill(1), currentEra: 5 }
  for (const b of [0, 4, 5, 6, 36]) h.eras[b] = 4
  const meta = eraRestore(dir, h)
  await withLoop(file, async (dev) => {
    const full = join(dir, 'full.img')
    const r = await sh(`era-copy --all -b 128 ${dev} | era-apply ${full}`)
    t.equal(r.status, 0, r.stderr)
    t.ok(readFileSync(full).equals(data), 'era-copy --all of the device: byte for byte')

    const backup = join(dir, 'backup.img')
    const old = randomBytes(SIZE, 42)
    writeFileSync(backup, old)
    const incr = await sh(`era_invalidate --written-since 4 ${meta} | era-copy -b 128 ${dev} | era-apply ${backup}`)
    t.equal(incr.status, 0, incr.stderr)
    const expected = Buffer.from(old)
    for (const b of [0, 4, 5, 6, 36]) data.copy(expected, b * BLOCK, b * BLOCK, Math.min((b + 1) * BLOCK, SIZE))
    t.ok(readFileSync(backup).equals(expected), 'the listed blocks, the partial last one clamped')

    // The device's size is known: a block beyond it is refused.
    const beyond = await run('era-copy', ['-b', '128', dev], { input: '<blocks><block block="37"/></blocks>' })
    t.equal(beyond.status, 1)
    t.match(
      beyond.stderr,
      new RegExp(`^era-copy: block 37 is beyond the end of ${dev}, which has 37 blocks of 64\\.0 KiB \\(2\\.31 MiB\\)`),
    )
    t.equal(beyond.stdout.length, 0)
  })
})

void t.test('a loop device as the target', { skip }, async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'source.img')
  const data = writeImage(source, SIZE, 43, [[BLOCK, 4 * BLOCK]])
  const full = await run('era-copy', ['--all', '-b', '128', source])
  t.equal(full.status, 0, full.stderr)

  // The same size.
  const file = join(dir, 'target.img')
  writeFileSync(file, randomBytes(SIZE, 44))
  await withLoop(file, async (dev) => {
    const r = await run('era-apply', [dev], { input: full.stdout })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stderr, '')
    t.ok(readFileSync(dev).equals(data), 'the device holds the image, zeros written where ZERO records were')
    // An incremental stream onto the device (it exists and is not empty: no --force needed).
    const partial = await run('era-copy', ['-b', '128', source], {
      input: '<blocks><range begin="30" end="37"/></blocks>',
    })
    t.equal((await run('era-apply', [dev], { input: partial.stdout })).status, 0)
    t.ok(readFileSync(dev).equals(data))
  })
  t.ok(readFileSync(file).equals(data), 'and so does its backing file')

  // A bigger device: the image is written, the bytes after it are left alone.
  const big = join(dir, 'big.img')
  const tail = randomBytes(BLOCK, 45)
  writeFileSync(big, Buffer.concat([randomBytes(SIZE, 46), tail]))
  await withLoop(big, async (dev) => {
    const r = await run('era-apply', [dev], { input: full.stdout })
    t.equal(r.status, 0, r.stderr)
    const now = readFileSync(dev)
    t.ok(now.subarray(0, SIZE).equals(data), 'the image')
    t.ok(now.subarray(SIZE).equals(tail), 'the rest untouched')
  })
})

void t.test('a device smaller than the stream is refused before anything is written', { skip }, async (t) => {
  const dir = t.testdir()
  const source = join(dir, 'source.img')
  writeImage(source, SIZE, 47)
  const full = await run('era-copy', ['--all', '-b', '128', source])
  const partial = await run('era-copy', ['-b', '128', source], { input: '<blocks><block block="0"/></blocks>' })
  const file = join(dir, 'small.img')
  writeFileSync(file, randomBytes(SIZE - 512, 48))
  const before = digest(file)
  await withLoop(file, async (dev) => {
    for (const [name, stream] of [
      ['full', full.stdout],
      ['partial', partial.stdout],
    ] as const) {
      for (const args of [[dev], ['--force', dev]]) {
        const r = await run('era-apply', args, { input: stream })
        t.equal(r.status, 1, `${name} ${args.join(' ')}`)
        t.match(
          r.stderr,
          new RegExp(
            `^era-apply: ${dev} is too small: ${SIZE - 512} bytes \\(2\\.31 MiB\\), the stream is for ${SIZE} bytes` +
              ' \\(2\\.31 MiB\\); nothing was written\\n$',
          ),
        )
      }
    }
    t.equal(digest(dev), before, 'the device is unchanged')
  })
  t.equal(digest(file), before)
})
