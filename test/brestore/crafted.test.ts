import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { K64 } from '../integration/bsync-lib.js'
import { randomBytes } from '../lib/data.js'
import { run, sh } from '../lib/run.js'
import { craftUndo, fileId } from './lib.js'

// Undo files the real tools do not write: legacy journals, broken ones,
// chains whose sizes cut the image short and grow it back. Made in process.

const T1 = '2026-11-20T01:30:00.000Z'
const T2 = '2026-11-21T01:30:00.000Z'

void t.test('a legacy journal needs --force, and then restores unchecked', async (t) => {
  const dir = t.testdir()
  const image = randomBytes(3 * K64, 1)
  const old = randomBytes(2 * K64 + 10, 2)
  writeFileSync(join(dir, 'img'), image)
  await craftUndo(join(dir, 'old.undo'), {
    size: old.length,
    after: image,
    records: [{ offset: 0, data: old }],
    created: T1,
  })
  let r = await run('brestore', ['img', 'old.undo'], { cwd: dir })
  t.equal(r.status, 2, r.stderr)
  t.match(r.stderr, /old\.undo is an undo journal of an older blockpipe, not bound to its image \(no target-id\)/)
  t.match(r.stderr, /--force restores with it unchecked/)
  t.equal(r.stdout.length, 0)
  r = await run('brestore', ['--force', '--raw', 'img', 'old.undo'], { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /warning: old\.undo is not bound to its image \(no target-id\): restoring with it unchecked/)
  t.ok(r.stdout.equals(old))
  // Legacy records without base digests, too.
  await craftUndo(join(dir, 'bare.undo'), {
    size: old.length,
    after: image,
    records: [{ offset: 0, data: old, noBase: true }],
    created: T1,
  })
  r = await run('brestore', ['--force', '--raw', 'img', 'bare.undo'], { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.ok(r.stdout.equals(old))
})

void t.test('a bound journal with a record that does not say what it undoes is refused', async (t) => {
  const dir = t.testdir()
  const image = randomBytes(2 * K64, 1)
  writeFileSync(join(dir, 'img'), image)
  const id = fileId(join(dir, 'img'))
  await craftUndo(join(dir, 'a.undo'), {
    size: image.length,
    after: image,
    records: [{ offset: K64, data: K64, noBase: true }],
    targetId: id,
    created: T1,
  })
  let r = await run('brestore', ['--raw', 'img', 'a.undo'], { cwd: dir })
  t.equal(r.status, 1, r.stderr)
  t.match(r.stderr, /a\.undo: record 0 at offset 65536 has no base digest in a journal bound to its image/)
  t.equal(r.stdout.length, 0)
  await craftUndo(join(dir, 'b.undo'), {
    size: image.length,
    after: image,
    records: [{ offset: K64, data: K64, baseLength: 100 }],
    targetId: id,
    created: T1,
  })
  r = await run('brestore', ['--raw', 'img', 'b.undo'], { cwd: dir })
  t.equal(r.status, 1, r.stderr)
  t.match(r.stderr, /b\.undo: record 0 at offset 65536 gives a base length of 100, not 65536/)
  await craftUndo(join(dir, 'c.undo'), { size: image.length, after: image, records: [], targetId: id })
  r = await run('brestore', ['--raw', 'img', 'c.undo'], { cwd: dir })
  t.equal(r.status, 3, r.stderr)
  t.match(r.stderr, /c\.undo does not say when it was made/)
})

void t.test('a size cut short by a newer night reads as zeros when an older one grows it back', async (t) => {
  const dir = t.testdir()
  // Now 2 blocks. Newest night grew the image from 1 block, its journal
  // cutting it back; the night before shrank it from 4 blocks, its journal
  // saving only block 3: block 1 was cut, block 2 never existed for it.
  const image = randomBytes(2 * K64, 1)
  const block3 = randomBytes(K64, 2)
  writeFileSync(join(dir, 'img'), image)
  const id = fileId(join(dir, 'img'))
  await craftUndo(join(dir, 'new.undo'), { size: K64, after: image, records: [], targetId: id, created: T2 })
  await craftUndo(join(dir, 'old.undo'), {
    size: 4 * K64,
    after: image.subarray(0, K64),
    records: [{ offset: 3 * K64, data: block3 }],
    targetId: id,
    created: T1,
  })
  const expected = Buffer.concat([image.subarray(0, K64), Buffer.alloc(2 * K64), block3])
  const r = await run('brestore', ['--raw', 'img', 'new.undo', 'old.undo'], { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.ok(r.stdout.equals(expected))
  // A journal that grows the image without saving the new part: zeros.
  await craftUndo(join(dir, 'grow.undo'), {
    size: 3 * K64,
    after: image,
    records: [{ offset: 0, data: K64 }],
    targetId: id,
    created: T2,
  })
  const grown = await sh('brestore img grow.undo | era-apply grown', { cwd: dir })
  t.equal(grown.status, 0, grown.stderr)
  t.ok(
    readFileSync(join(dir, 'grown')).equals(Buffer.concat([Buffer.alloc(K64), image.subarray(K64), Buffer.alloc(K64)])),
  )
})

void t.test('what is not a whole undo journal fails, naming it', async (t) => {
  const dir = t.testdir()
  const image = randomBytes(K64, 1)
  writeFileSync(join(dir, 'img'), image)
  const id = fileId(join(dir, 'img'))
  await craftUndo(join(dir, 'good.undo'), {
    size: K64,
    after: image,
    records: [{ offset: 0, data: K64 }],
    targetId: id,
    created: T1,
  })
  const good = readFileSync(join(dir, 'good.undo'))
  writeFileSync(join(dir, 'cut.undo'), good.subarray(0, good.length - 10))
  writeFileSync(join(dir, 'empty.undo'), '')
  mkdirSync(join(dir, 'dir.undo'))
  const block = await sh('era-copy --all img', { cwd: dir })
  writeFileSync(join(dir, 'block.bps'), block.stdout)
  const cases: [string, number, RegExp][] = [
    ['cut.undo', 1, /cut\.undo: unexpected end of data: the stream was cut/],
    ['empty.undo', 1, /empty\.undo: empty input/],
    ['dir.undo', 1, /dir\.undo: not a regular file, not an undo file/],
    ['none.undo', 1, /cannot open the undo file: none\.undo: no such file or device/],
    ['block.bps', 2, /block\.bps holds a block stream, not an undo journal/],
  ]
  for (const [file, status, message] of cases) {
    const r = await run('brestore', ['--raw', 'img', file], { cwd: dir })
    t.equal(r.status, status, `${file}: ${r.stderr}`)
    t.match(r.stderr, message)
    t.equal(r.stdout.length, 0)
  }
  const r = await run('brestore', ['--raw', 'none.img', 'good.undo'], { cwd: dir })
  t.equal(r.status, 1, r.stderr)
  t.match(r.stderr, /none\.img: no such file or device/)
})

void t.test('beside the listed files: other streams and other images do not count', async (t) => {
  const dir = t.testdir()
  const image = randomBytes(K64, 1)
  writeFileSync(join(dir, 'img'), image)
  await craftUndo(join(dir, 'a.undo'), {
    size: K64,
    after: image,
    records: [],
    targetId: fileId(join(dir, 'img')),
    created: T1,
  })
  await craftUndo(join(dir, 'b.undo'), { size: K64, after: image, records: [], targetId: 'file:1:2', created: T2 })
  writeFileSync(join(dir, 'junk.undo'), 'not a stream')
  writeFileSync(join(dir, 'block.undo'), (await sh('era-copy --all img', { cwd: dir })).stdout)
  const r = await run('brestore', ['--check', 'img', 'a.undo'], { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stdout.toString(), `img: 1 undo files form one chain ending at it; it was ${K64} bytes before ${T1}\n`)
})

void t.test('with no undo file after the date, the image as it is, zeros in long records', async (t) => {
  const dir = t.testdir()
  const image = Buffer.alloc(40 * 1024 * 1024)
  randomBytes(1000, 1).copy(image, 20 * 1024 * 1024)
  writeFileSync(join(dir, 'vm.img'), image)
  const r = await sh(
    'brestore --as-of 2026-11-20 --undo-dir . vm.img | tee out.bps | era-apply copy.img && bpdump out.bps',
    { cwd: dir },
  )
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /warning: no undo file of vm\.img in \. was made after 2026-11-20: the image is as it was then/)
  t.ok(readFileSync(join(dir, 'copy.img')).equals(image))
  t.match(
    r.stdout.toString(),
    /ZERO offset 0 length 16777216[^]*ZERO offset 16777216 length 4194304[^]*DATA offset 20971520 length 65536[^]*ZERO offset 21037056 length 16777216[^]*ZERO offset 37814272 length 4128768/,
  )
  const check = await run('brestore', ['--check', '--as-of', '2026-11-20', 'vm.img'], { cwd: dir })
  t.equal(check.status, 0, check.stderr)
  t.match(
    check.stdout.toString(),
    /vm\.img: 0 undo files form one chain ending at it; it was 41943040 bytes before then/,
  )
})

void t.test("an older night's digest is checked against zeros a newer night's journal restores", async (t) => {
  const dir = t.testdir()
  // Block 0: A two nights ago, zeros after the first night, now B.
  const image = randomBytes(2 * K64, 1)
  const a = randomBytes(K64, 2)
  writeFileSync(join(dir, 'img'), image)
  const id = fileId(join(dir, 'img'))
  await craftUndo(join(dir, 'new.undo'), {
    size: image.length,
    after: image,
    records: [{ offset: 0, data: K64 }],
    targetId: id,
    created: T2,
  })
  const between = Buffer.concat([Buffer.alloc(K64), image.subarray(K64)])
  await craftUndo(join(dir, 'old.undo'), {
    size: image.length,
    after: between,
    records: [{ offset: 0, data: a }],
    targetId: id,
    created: T1,
  })
  let r = await run('brestore', ['--raw', 'img', 'new.undo', 'old.undo'], { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.ok(r.stdout.equals(Buffer.concat([a, image.subarray(K64)])))
  // Had the first night left anything but zeros there, the chain is broken.
  await craftUndo(join(dir, 'other.undo'), {
    size: image.length,
    after: image,
    records: [{ offset: 0, data: a }],
    targetId: id,
    created: T1,
  })
  r = await run('brestore', ['--raw', 'img', 'new.undo', 'other.undo'], { cwd: dir })
  t.equal(r.status, 3, r.stderr)
  t.equal(r.stdout.length, 0)
})
