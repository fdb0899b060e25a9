import { spawn } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { formatLock, lockPathOf, ownLock } from '../../packages/core/src/lock.js'
import { record } from '../erarange/lib.js'
import { randomBytes } from '../lib/data.js'
import { ROOT, binPath, sh, type RunResult } from '../lib/run.js'
import { childEnv, deltaStream, fullStream, runTool, sameBytes, tempDir } from './lib.js'

// Two applies at once on one target, or with one undo file: the second fails
// at once with exit 1 naming the first, which finishes as if alone. The first
// is held mid-stream (its stdin is ours) so that the two overlap for sure.

const B = 4096
const base = randomBytes(64 * B, 1)
const newA = Buffer.from(base)
const newB = Buffer.from(base)
for (let c = 0; c < 64; c += 3) {
  randomBytes(B, 100 + c).copy(newA, c * B)
  randomBytes(B, 200 + c).copy(newB, c * B)
}

interface Held {
  pid: number
  /** Sends the rest of the stream; resolves when the program exits. */
  finish(): Promise<RunResult>
}

/** Starts `program`, gives it the first part of `stream` and waits until it holds the lock of `locked`. */
async function startHeld(program: string, args: string[], stream: Buffer, locked: string): Promise<Held> {
  const child = spawn(process.execPath, [binPath(program), ...args], { env: childEnv(true) })
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => err.push(b))
  const closed = new Promise<RunResult>((resolve) =>
    child.on('close', (status, signal) =>
      resolve({ status, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }),
    ),
  )
  const cut = Math.floor(stream.length / 2)
  child.stdin.write(stream.subarray(0, cut))
  const lockFile = lockPathOf(locked).file
  for (let waited = 0; !existsSync(lockFile) && waited < 15000; waited += 50) {
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  return {
    pid: child.pid as number,
    finish: () => {
      child.stdin.end(stream.subarray(cut))
      return closed
    },
  }
}

function refusedBy(t: Test, second: RunResult, program: string, what: string, holder: Held, lock: string): void {
  t.equal(second.status, 1, 'the second apply fails')
  t.match(
    second.stderr,
    new RegExp(
      `^${program}: ${what} is locked by \\S+ \\(pid ${holder.pid} on ${hostname()}, since [^)]+\\); ` +
        `wait for it or, if it is gone, remove ${lock}\\n$`,
    ),
    'naming the holder and the lock file',
  )
}

/** The first apply ends well, its image whole on the target, and its lock gone. */
async function firstWins(t: Test, first: Held, target: string): Promise<void> {
  const done = await first.finish()
  t.equal(done.status, 0, done.stderr)
  sameBytes(t, readFileSync(target), newA, "the target is the first's image, byte for byte")
  t.notOk(existsSync(lockPathOf(target).file), 'the lock is released')
}

void t.test('era-apply: two full streams onto one file', async (t) => {
  const dir = tempDir(t, 'race')
  const target = join(dir, 'vm.img')
  writeFileSync(target, base)
  const first = await startHeld('era-apply', [target], await fullStream(newA), target)
  const second = await runTool('era-apply', [target], { input: await fullStream(newB) })
  refusedBy(t, second, 'era-apply', target, first, lockPathOf(target).file)
  await firstWins(t, first, target)
})

void t.test('bpatch --undo: two deltas from one base onto one file', async (t) => {
  const dir = tempDir(t, 'race')
  const target = join(dir, 'vm.img')
  writeFileSync(target, base)
  const first = await startHeld(
    'bpatch',
    ['--undo', join(dir, 'a.undo'), target],
    await deltaStream(base, newA, B),
    target,
  )
  const second = await runTool('bpatch', ['--undo', join(dir, 'b.undo'), target], {
    input: await deltaStream(base, newB, B),
  })
  refusedBy(t, second, 'bpatch', target, first, lockPathOf(target).file)
  t.notOk(existsSync(join(dir, 'b.undo')), 'the second wrote no journal')
  const done = await first.finish()
  t.equal(done.status, 0, done.stderr)
  sameBytes(t, readFileSync(target), newA, "the target is the first's image, byte for byte")
  const back = await runTool('bpatch', [target], { input: readFileSync(join(dir, 'a.undo')) })
  t.equal(back.status, 0, back.stderr)
  sameBytes(t, readFileSync(target), base, 'rolled back')
})

void t.test('one --undo file for two overlapping applies', async (t) => {
  const dir = tempDir(t, 'race')
  const [one, two, journal] = [join(dir, 'one.img'), join(dir, 'two.img'), join(dir, 'j.undo')]
  writeFileSync(one, base)
  writeFileSync(two, base)
  const stream = await fullStream(newA)
  const first = await startHeld('era-apply', ['--undo', journal, one], stream, journal)
  const second = await runTool('era-apply', ['--undo', journal, two], { input: stream })
  refusedBy(t, second, 'era-apply', `the undo file ${journal}`, first, lockPathOf(journal).file)
  sameBytes(t, readFileSync(two), base, 'the second target is untouched')
  const done = await first.finish()
  t.equal(done.status, 0, done.stderr)
  const back = await runTool('era-apply', [one], { input: readFileSync(journal) })
  t.equal(back.status, 0, back.stderr)
  sameBytes(t, readFileSync(one), base, 'the journal rolls back the whole apply')
})

void t.test('a lock left by a dead process is taken over; one of another host is not', async (t) => {
  const dir = tempDir(t, 'race')
  const target = join(dir, 'vm.img')
  writeFileSync(target, base)
  const lock = lockPathOf(target).file
  writeFileSync(lock, formatLock({ ...ownLock('bpatch'), pid: 999999999, startTime: '1' }))
  const taken = await runTool('era-apply', [target], { input: await fullStream(newA) })
  t.equal(taken.status, 0, taken.stderr)
  t.match(taken.stderr, /^era-apply: note: removed the stale lock .* of bpatch \(pid 999999999, which is gone/)
  sameBytes(t, readFileSync(target), newA)
  t.notOk(existsSync(lock))

  writeFileSync(lock, formatLock({ ...ownLock('bpatch'), pid: 999999999, host: 'nas2' }))
  const refused = await runTool('bpatch', [target], { input: await deltaStream(newA, newB, B) })
  t.equal(refused.status, 1)
  t.match(refused.stderr, /^bpatch: \S+ is locked by bpatch \(pid 999999999 on nas2, since .*remove \S+\n$/)
  sameBytes(t, readFileSync(target), newA, 'untouched')
  t.ok(existsSync(lock), 'left in place')
})

void t.test("the script lock of era-apply(1) is the applies' lock", async (t) => {
  const dir = tempDir(t, 'race')
  const target = join(dir, 'vm.img')
  writeFileSync(target, base)
  writeFileSync(join(dir, 'full.bps'), await fullStream(newA))
  const doc = readFileSync(join(ROOT, 'man', 'era-apply.1.md'), 'utf8')
  const from = doc.indexOf('    lock=/srv/.vm.img.blockpipe-lock')
  const snippet = doc
    .slice(from, doc.indexOf('    cp --sparse', from))
    .replace(/^ {4}/gm, '')
    .replaceAll('/srv/', `${dir}/`)
  t.match(snippet, /set -o noclobber[^]*trap/)

  const held = await sh(`${snippet}
echo "pid=$$"
era-apply ${target} < ${dir}/full.bps; echo "era-apply=$?"
bash -c '${snippet.replaceAll("'", "'\\''")}'; echo "again=$?"`)
  t.equal(held.status, 0, held.stderr)
  const pid = /pid=(\d+)/.exec(held.stdout.toString())?.[1]
  t.match(held.stdout.toString(), /era-apply=1\nagain=1\n$/)
  t.match(
    held.stderr,
    new RegExp(`^era-apply: ${target} is locked by vm-rotate \\(pid ${pid} on ${hostname()}, since [^)]+\\); wait`),
  )
  t.match(held.stderr, /\nvm-rotate: \S+ is locked: pid=\d+ host=\S+ boot-id=\S+ start-time=\d+ program=vm-rotate \n$/)
  sameBytes(t, readFileSync(target), base, 'untouched while the script held the lock')
  t.notOk(existsSync(lockPathOf(target).file), 'released when the script ended')

  const killed = await sh(`${snippet}\nkill -9 $$`)
  t.equal(killed.signal, 'SIGKILL')
  t.ok(existsSync(lockPathOf(target).file), 'a killed script leaves its lock')
  const taken = await runTool('era-apply', [target], { input: readFileSync(join(dir, 'full.bps')) })
  t.equal(taken.status, 0, taken.stderr)
  t.match(taken.stderr, /^era-apply: note: removed the stale lock \S+ of vm-rotate \(pid \d+, which is gone/)
  sameBytes(t, readFileSync(target), newA)
})

void t.test('era-apply: a stream of the original era_copy holds the lock too', async (t) => {
  const dir = tempDir(t, 'race')
  const target = join(dir, 'vm.img')
  writeFileSync(target, base)
  const records: Buffer[] = []
  for (let at = 0; at < newA.length; at += 16 * B) records.push(record(at, newA.subarray(at, at + 16 * B)))
  const first = await startHeld('era-apply', [target], Buffer.concat(records), target)
  const second = await runTool('era-apply', ['--force', target], { input: await fullStream(newB) })
  refusedBy(t, second, 'era-apply', target, first, lockPathOf(target).file)
  await firstWins(t, first, target)
})

void t.test('one --spool file for two overlapping applies', async (t) => {
  const dir = tempDir(t, 'race')
  const [one, two, spool] = [join(dir, 'one.img'), join(dir, 'two.img'), join(dir, 'stream.spool')]
  writeFileSync(one, base)
  writeFileSync(two, base)
  const stream = await fullStream(newA)
  const first = await startHeld('bpatch', ['--spool', spool, one], stream, spool)
  const second = await runTool('era-apply', ['--spool', spool, two], { input: stream })
  refusedBy(t, second, 'era-apply', `the spool file ${spool}`, first, lockPathOf(spool).file)
  const done = await first.finish()
  t.equal(done.status, 0, done.stderr)
  sameBytes(t, readFileSync(one), newA)
  sameBytes(t, readFileSync(two), base, 'the second target is untouched')
})
