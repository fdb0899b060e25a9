import { join } from 'node:path'
import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'
import { run, sh } from '../lib/run.js'
import { K64, changed, put, same } from './bsync-lib.js'

// Block devices for real: loop devices as the source, as the target, and on
// both ends of the pipeline.

const skip = loopUnavailable()
const SIZE = 48 * K64 + 5 * 512

void t.test('loop devices', { skip: skip ?? false }, async (t) => {
  const dir = t.testdir()
  const old = randomBytes(SIZE, 1)
  const neu = changed(changed(old, 3, 1, 2), SIZE - 512, 512, 3)
  neu.fill(0, 4 * K64, 8 * K64)
  const oldFile = join(dir, 'old.img')
  const newFile = join(dir, 'new.img')

  await t.test('a loop device as the source', async (t) => {
    put(oldFile, old)
    put(newFile, neu)
    await withLoop(newFile, async (src) => {
      const r = await sh(`bsum -b 64K ${oldFile} | bdiff --progress ${src} | bpatch ${oldFile}`)
      t.equal(r.status, 0, r.stderr)
      t.match(r.stderr, /bdiff: .*, 6 of 49 chunks differ/)
    })
    t.ok(same(oldFile, neu))
  })

  await t.test('a loop device as the target, re-run, conflict', async (t) => {
    put(oldFile, old)
    put(newFile, neu)
    await withLoop(oldFile, async (tgt) => {
      let r = await sh(`bsum -b 64K ${tgt} | bdiff ${newFile} | tee ${dir}/delta | bpatch ${tgt}`)
      t.equal(r.status, 0, r.stderr)
      t.ok(same(tgt, neu), 'the device holds the new image')
      r = await sh(`bpatch --progress ${tgt} < ${dir}/delta`)
      t.equal(r.status, 0, r.stderr)
      t.match(r.stderr, /, 0 B written\n$/, 're-run: nothing written')

      const sums = await run('bsum', ['-b', '64K', tgt])
      const newer = changed(neu, 20 * K64, 1, 4)
      put(newFile, newer)
      r = await sh(
        `dd if=/dev/urandom of=${tgt} bs=512 seek=${(20 * K64 + 4096) / 512} count=1 conv=notrunc,fsync 2>/dev/null`,
      )
      t.equal(r.status, 0, r.stderr)
      const meddled = await sh(`cat ${tgt}`)
      const delta = await run('bdiff', [newFile], { input: sums.stdout })
      r = await run('bpatch', [tgt], { input: delta.stdout })
      t.equal(r.status, 3)
      t.match(r.stderr, `conflict at byte ${20 * K64} (chunk 20)`)
      t.ok(same(tgt, meddled.stdout), 'the device is untouched')
    })
  })

  await t.test('between two loop devices', async (t) => {
    put(oldFile, old)
    put(newFile, neu)
    await withLoop(newFile, (src) =>
      withLoop(oldFile, async (tgt) => {
        const r = await sh(`bsum -b 4K ${tgt} | bdiff ${src} | bpatch ${tgt}`)
        t.equal(r.status, 0, r.stderr)
        t.equal(r.stderr, '')
        t.ok(same(tgt, neu))
      }),
    )
    t.ok(same(oldFile, neu), 'the backing file too')
  })

  await t.test('a device of another size than the image', async (t) => {
    put(oldFile, old)
    await withLoop(oldFile, async (tgt) => {
      // Smaller image: written, and the bytes past its end stay.
      const small = changed(old.subarray(0, 16 * K64), 0, 1, 5)
      put(newFile, small)
      let r = await sh(`bsum -b 64K ${tgt} | bdiff ${newFile} | bpatch ${tgt}`)
      t.equal(r.status, 0, r.stderr)
      t.match(r.stderr, `bpatch: note: ${tgt} is a block device of ${SIZE} bytes; the image is ${16 * K64} bytes`)
      t.ok(same(tgt, Buffer.concat([small, old.subarray(16 * K64)])))

      // Larger image: refused before anything is written.
      const before = (await sh(`cat ${tgt}`)).stdout
      put(newFile, Buffer.concat([before, randomBytes(K64, 6)]))
      r = await sh(`bsum -b 64K ${tgt} | bdiff ${newFile} | bpatch ${tgt}`)
      t.equal(r.status, 1)
      t.match(r.stderr, `${tgt} is too small: ${SIZE} bytes`)
      t.match(r.stderr, 'nothing was written')
      t.ok(same(tgt, before))
    })
  })
})
