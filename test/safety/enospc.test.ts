import { execFileSync } from 'node:child_process'
import { appendFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { isRoot } from '../lib/run.js'
import { fullStream, runTool, sameBytes, sameFile, snapshot, tempDir } from './lib.js'

// A full disk under the spool or the undo journal. `ulimit -f` makes every
// write past a size fail with EFBIG, as ENOSPC does, and needs no root; as
// root a real 64 KiB tmpfs fills up with ENOSPC.

const oldImage = randomBytes(256 * 1024, 1)
const newImage = randomBytes(256 * 1024, 2)
const stream = await fullStream(newImage, 16 * 1024)

void t.test('the spool cannot hold the stream: nothing is written', async (t) => {
  const dir = tempDir(t, 'enospc')
  const spools = join(dir, 'spools')
  mkdirSync(spools)
  const target = join(dir, 'target')
  writeFileSync(target, oldImage)
  const before = snapshot(target)
  for (const program of ['era-apply', 'bpatch']) {
    const r = await runTool(program, ['--spool', spools, target], { input: stream, fileSizeLimit: 100 })
    t.equal(r.status, 1, r.stderr)
    t.match(r.stderr, new RegExp(`^${program}: --spool: cannot store the stream in ${spools}/\\.${program}-spool-`))
    t.match(r.stderr, new RegExp(`EFBIG.*: nothing was written to ${target}\\n$`))
    sameFile(t, snapshot(target), before, 'the target is untouched')
    t.same(readdirSync(spools), [], 'and no spool file is left')
  }
})

void t.test('the undo journal cannot be written: the target is not either', async (t) => {
  const dir = tempDir(t, 'enospc')
  const target = join(dir, 'target')
  const undo = join(dir, 'undo')
  writeFileSync(target, oldImage)
  const before = snapshot(target)
  // Not even the journal's header: nothing is journaled, nothing written, nothing left.
  const none = await runTool('era-apply', ['--undo', undo, target], { input: stream, fileSizeLimit: 0 })
  t.equal(none.status, 1, none.stderr)
  t.match(none.stderr, /cannot write the undo file .*EFBIG.*: nothing was written to /)
  sameFile(t, snapshot(target), before)
  t.notOk(existsSync(undo), 'the journal that never was is removed')

  // The journal of the last batch does not fit: that batch is not written.
  const last = await runTool('bpatch', ['--undo', undo, target], { input: stream, fileSizeLimit: 256 })
  t.equal(last.status, 1, last.stderr)
  t.match(last.stderr, new RegExp(`^bpatch: cannot write the undo file ${undo}: EFBIG`))
  sameFile(t, snapshot(target), before, 'one batch: nothing written')
  t.notOk(existsSync(undo))

  // One journal sync per record: the records before it are written, and rolled back.
  const some = await runTool('era-apply', ['--undo', undo, target], {
    input: stream,
    fileSizeLimit: 256,
    env: { BLOCKPIPE_UNDO_BATCH_RECORDS: '1' },
  })
  t.equal(some.status, 1, some.stderr)
  t.match(some.stderr, /cannot write the undo file .*EFBIG.*: 15 records were applied before it, .* is incomplete/)
  t.match(some.stderr, new RegExp(`to roll back: era-apply ${target} < ${undo}\\n$`))
  const back = await runTool('era-apply', [target], { input: readFileSync(undo) })
  t.equal(back.status, 0, back.stderr)
  t.match(back.stderr, /warning: the undo journal has no end record/)
  sameBytes(t, readFileSync(target), oldImage, 'rolled back')
})

void t.test(
  'a real full filesystem (root: a 64 KiB tmpfs)',
  { skip: isRoot ? undefined : 'mount needs root' },
  async (t) => {
    const dir = tempDir(t, 'enospc')
    const small = join(dir, 'small')
    mkdirSync(small)
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', small], { stdio: 'ignore' })
    } catch {
      t.comment('cannot mount a tmpfs here: skipped')
      return
    }
    t.teardown(() => execFileSync('umount', [small]))
    const target = join(dir, 'target')
    writeFileSync(target, oldImage)
    const before = snapshot(target)
    const spooled = await runTool('era-apply', ['--spool', small, target], { input: stream })
    t.equal(spooled.status, 1, spooled.stderr)
    t.match(spooled.stderr, /--spool: cannot store the stream in .*ENOSPC.*: nothing was written to /)
    sameFile(t, snapshot(target), before)
    const journaled = await runTool('bpatch', ['--undo', join(small, 'undo'), target], { input: stream })
    t.equal(journaled.status, 1, journaled.stderr)
    t.match(journaled.stderr, /cannot write the undo file .*ENOSPC.*: nothing was written to /)
    sameFile(t, snapshot(target), before)
    t.same(readdirSync(small), [], 'the full filesystem holds nothing of ours')
    // Full to the last byte: not even the journal's header fits.
    const fill = join(small, 'fill')
    try {
      for (;;) appendFileSync(fill, Buffer.alloc(4096))
    } catch {
      // ENOSPC: full.
    }
    const header = await runTool('era-apply', ['--undo', join(small, 'undo'), target], { input: stream })
    t.equal(header.status, 1, header.stderr)
    t.match(header.stderr, /cannot write the undo file .*ENOSPC.*: nothing was written to /)
    sameFile(t, snapshot(target), before)
    t.same(readdirSync(small), ['fill'])
  },
)
