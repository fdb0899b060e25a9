import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { pool, runTool, sameBytes, snapshot, tempDir } from './lib.js'

// A stream cut at every byte offset, through the real binaries. With --spool
// the target must come out byte for byte as it was (a target that did not
// exist still does not exist); without it the apply must fail and say what it
// left: the target incomplete, untouched when the cut came before the first
// write, or removed when the apply had created it. Hundreds of processes: the
// streams are small, the runs go in parallel, and only a sample of the
// children collects coverage.

const JOBS = availableParallelism()
const cover = (offset: number): boolean => offset % 50 === 0

export interface CutCase {
  program: 'era-apply' | 'bpatch'
  oldImage: Buffer
  newImage: Buffer
  stream: Buffer
  /** A full stream may create its target: every other offset then runs onto a missing one. */
  creates: boolean
}

export async function everyOffset(t: Test, c: CutCase): Promise<void> {
  const dir = tempDir(t, 'cut')
  const spools = join(dir, 'spools')
  mkdirSync(spools)

  // The whole stream applies, so that every failure below is the cut's doing.
  const whole = join(dir, 'whole')
  writeFileSync(whole, c.oldImage)
  const ok = await runTool(c.program, [whole], { input: c.stream })
  t.equal(ok.status, 0, ok.stderr)
  sameBytes(t, snapshot(whole)?.bytes, c.newImage, 'the whole stream gives the new image')

  const reference = join(dir, 'reference')
  writeFileSync(reference, c.oldImage)
  const failures: string[] = []
  const offsets = Array.from({ length: c.stream.length }, (_, i) => i)
  await pool(offsets, JOBS, async (offset) => {
    const fail = (what: string): void => void failures.push(`cut at ${offset}: ${what}`)
    const input = c.stream.subarray(0, offset)
    const missing = c.creates && offset % 2 === 1
    if (offset === 0 && c.program === 'era-apply') {
      await nothingAtAll(dir, reference, spools, fail)
      return
    }

    // --spool, into a directory or a new file name in turn.
    const spooled = join(dir, `spooled-${offset}`)
    if (!missing) copyFileSync(reference, spooled)
    const before = snapshot(spooled)
    const spool = offset % 3 === 0 ? join(spools, `file-${offset}`) : spools
    const a = await runTool(c.program, ['--spool', spool, spooled], { input, cover: cover(offset) })
    if (a.status !== 1) fail(`--spool: exit ${a.status}: ${a.stderr}`)
    if (!a.stderr.includes(`nothing was written to ${spooled}`)) fail(`--spool: message ${a.stderr}`)
    const after = snapshot(spooled)
    if (missing !== (after === null)) fail(`--spool: the target ${missing ? 'was created' : 'is gone'}`)
    if (after !== null && (!after.bytes.equals(before!.bytes) || after.mtimeNs !== before!.mtimeNs)) {
      fail('--spool: the target changed')
    }

    // No --spool: a failure that says what it left.
    const direct = join(dir, `direct-${offset}`)
    if (!missing) copyFileSync(reference, direct)
    const copied = snapshot(direct)
    const b = await runTool(c.program, [direct], { input, cover: cover(offset) })
    if (b.status !== 1) fail(`no --spool: exit ${b.status}: ${b.stderr}`)
    if (!b.stderr.includes('--spool keeps a cut or corrupt stream from touching the target, --undo')) {
      fail(`no --spool: no advice: ${b.stderr}`)
    }
    const left = snapshot(direct)
    if (copied === null) {
      if (left !== null) fail('no --spool: a target it created is left behind')
      else if (!/nothing was written to|was new and has been removed/.test(b.stderr)) fail(`message ${b.stderr}`)
    } else if (left === null) {
      fail('no --spool: the existing target was removed')
    } else if (left.bytes.equals(copied.bytes) && left.size === copied.size && left.mtimeNs === copied.mtimeNs) {
      if (!b.stderr.includes(`nothing was written to ${direct}`)) fail(`untouched, but the message says ${b.stderr}`)
    } else if (!b.stderr.includes(`${direct} is incomplete`)) {
      fail(`changed, but the message says ${b.stderr}`)
    }
  })
  t.same(failures, [], `cut at each of the ${c.stream.length} offsets`)
  t.same(readdirSync(spools), [], 'no spool file is left behind')
}

/**
 * era-apply and no input at all, what the original era_copy writes for a night
 * without changes: an empty stream, applied as one with a warning; the target
 * is not touched, with or without --spool.
 */
async function nothingAtAll(
  dir: string,
  reference: string,
  spools: string,
  fail: (what: string) => void,
): Promise<void> {
  for (const args of [['--spool', spools], []]) {
    const target = join(dir, `empty-${args.length}`)
    copyFileSync(reference, target)
    const before = snapshot(target)
    const r = await runTool('era-apply', [...args, target], { input: Buffer.alloc(0), cover: true })
    if (r.status !== 0 || !r.stderr.includes('warning: the input is empty'))
      fail(`${args.join(' ')}: exit ${r.status}: ${r.stderr}`)
    const after = snapshot(target)
    if (after === null || !after.bytes.equals(before!.bytes) || after.mtimeNs !== before!.mtimeNs) {
      fail(`${args.join(' ')}: the target changed`)
    }
  }
}
