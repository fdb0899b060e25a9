// SIGINT, SIGTERM and SIGHUP during an apply: the tools stop between two
// writes, say what state the target is in, and exit as a shell reports the
// signal. An interrupted create leaves nothing at the target's name; an
// interrupted update continues with the same command, or rolls back.

import { spawn } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { binPath } from '../lib/run.js'
import { childEnv, deltaStream, fullStream, runTool, tempDir } from './lib.js'

const MiB = 1024 * 1024
const SIZE = 8 * MiB
const STATUS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const
type Signal = keyof typeof STATUS
// Small undo batches: the first is journaled and written after a few records.
const env = { BLOCKPIPE_UNDO_BATCH_RECORDS: '16' }

interface Interrupted {
  status: number | null
  stderr: string
}

/**
 * Runs `program` with the first `sent` bytes of `stream` on a pipe that stays
 * open, waits until `started()` says the first batch was written, and sends
 * `signal`.
 */
async function interrupt(
  program: string,
  args: string[],
  stream: Buffer,
  sent: number,
  started: () => boolean,
  signal: Signal,
): Promise<Interrupted> {
  const child = spawn(process.execPath, [binPath(program), ...args], {
    env: childEnv(true, env),
    stdio: ['pipe', 'ignore', 'pipe'],
  })
  const err: Buffer[] = []
  child.stderr.on('data', (b: Buffer) => err.push(b))
  child.stdin.on('error', () => {
    // It may stop reading once signalled.
  })
  const closed = new Promise<number | null>((resolve) => child.on('close', (status) => resolve(status)))
  child.stdin.write(stream.subarray(0, sent))
  for (let i = 0; i < 200 && !started(); i++) await sleep(25)
  // The batch under way is written whole; the process then waits for more input.
  await sleep(300)
  child.kill(signal)
  const status = await closed
  child.stdin.destroy()
  return { status, stderr: Buffer.concat(err).toString() }
}

function temporaries(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.includes('.blockpipe-'))
}

function sizeOf(path: string): number {
  return existsSync(path) ? statSync(path).size : 0
}

for (const [signal, program] of [
  ['SIGINT', 'era-apply'],
  ['SIGTERM', 'bpatch'],
  ['SIGHUP', 'era-apply'],
] as const) {
  void t.test(`${signal} during a create (${program}): nothing at the target's name`, async (t) => {
    const dir = tempDir(t, 'signals')
    const image = randomBytes(SIZE, 1)
    const stream = await fullStream(image, 64 * 1024)
    const target = join(dir, 'new.img')
    const got = await interrupt(
      program,
      [target],
      stream,
      3 * MiB,
      () => temporaries(dir).some((name) => sizeOf(join(dir, name)) > 0),
      signal,
    )
    t.equal(got.status, STATUS[signal], got.stderr)
    t.match(
      got.stderr,
      `${program}: interrupted by ${signal}: ${target} was not created (nothing is left at that name)`,
    )
    t.notMatch(got.stderr, /internal error|\n\s+at /)
    t.notOk(existsSync(target), 'no file at TARGET')
    t.same(temporaries(dir), [], 'no temporary file left')
    // The same command again creates it whole.
    const again = await runTool(program, [target], { input: stream })
    t.equal(again.status, 0, again.stderr)
    t.ok(readFileSync(target).equals(image))
    t.same(temporaries(dir), [])
  })

  void t.test(`${signal} during an update with --undo (${program}): continue, and roll back`, async (t) => {
    const dir = tempDir(t, 'signals')
    const oldImage = randomBytes(SIZE, 2)
    const newImage = randomBytes(SIZE, 3)
    const stream =
      program === 'bpatch' ? await deltaStream(oldImage, newImage, 64 * 1024) : await fullStream(newImage, 64 * 1024)
    const target = join(dir, 'vm.img')
    const undo = join(dir, 'vm.undo')
    writeFileSync(target, oldImage)
    const args = ['--undo', undo, target]
    const got = await interrupt(program, args, stream, 3 * MiB, () => sizeOf(undo) > MiB, signal)
    t.equal(got.status, STATUS[signal], got.stderr)
    t.match(got.stderr, `${program}: interrupted by ${signal}: ${target} is partly updated (`)
    t.match(
      got.stderr,
      `run the same command again with the whole stream to continue, or roll back with: ${program} ${target} < ${undo}`,
    )
    const now = readFileSync(target)
    t.notOk(now.equals(oldImage), 'partly written')
    t.notOk(now.equals(newImage), 'not whole')
    t.same(temporaries(dir), [])
    if (signal === 'SIGTERM') {
      // Rolled back straight from the interrupted state.
      const back = await runTool(program, [target], { input: readFileSync(undo), env })
      t.equal(back.status, 0, back.stderr)
      t.ok(readFileSync(target).equals(oldImage), 'rolled back byte-exact')
      return
    }
    const more = await runTool(program, args, { input: stream, env })
    t.equal(more.status, 0, more.stderr)
    t.ok(readFileSync(target).equals(newImage), 'continued byte-exact to the new image')
    const back = await runTool(program, [target], { input: readFileSync(undo), env })
    t.equal(back.status, 0, back.stderr)
    t.ok(readFileSync(target).equals(oldImage), 'rolled back byte-exact to the old image')
  })
}
