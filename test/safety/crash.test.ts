import { spawn } from 'node:child_process'
import { closeSync, fstatSync, openSync, readFileSync, writeFileSync, writeSync } from 'node:fs'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { prng, randomBytes } from '../lib/data.js'
import { StreamParser, type StreamRecord } from '../../packages/core/src/parse.js'
import { binPath } from '../lib/run.js'
import {
  blockStream,
  childEnv,
  deltaStream,
  fullStream,
  hash,
  pool,
  runTool,
  snapshot,
  tempDir,
  testSeed,
} from './lib.js'

// era-apply and bpatch with --undo, killed with SIGKILL at seeded random
// points, then either run again to the end with the same --undo FILE or
// rolled back with it: the target must be the new image or the old one, byte
// for byte, every time. A re-run to the end is then rolled back too, so the
// journal continued across the crash is checked as well.
//
// The kill points: the stream goes through stdin, and the child is killed
// once a seeded number of bytes has been written and it has gone idle (it
// has consumed them and done what they allow); or, mid-write, a seeded delay
// after its undo journal appears. A journal sync after every 1 to 4 records
// puts many batches into a small stream. A SIGKILL leaves every write the
// process made; most of the killed trials then also lose part of the writes
// made after the last journal sync, as a power loss would (see tear()).

const TRIALS = Number(process.env.BLOCKPIPE_CRASH_TRIALS) || 52
t.setTimeout(30 * 60 * 1000)
const B = 4096

interface Scenario {
  program: 'era-apply' | 'bpatch'
  what: string
  make(rand: () => number, seed: number): Promise<{ oldImage: Buffer; newImage: Buffer; stream: Buffer }>
}

/** An image that changed in places: some chunks new, some zeroed, the size changed. */
function evolve(oldImage: Buffer, size: number, rand: () => number, seed: number): Buffer {
  // Grown: new data past the old end.
  const out = randomBytes(size, seed + 77)
  oldImage.copy(out, 0, 0, Math.min(size, oldImage.length))
  for (let at = 0; at < size; at += B) {
    const r = rand()
    if (r < 0.3) randomBytes(Math.min(B, size - at), seed * 1000 + at / B).copy(out, at)
    else if (r < 0.4) out.fill(0, at, Math.min(size, at + B))
  }
  return out
}

const SCENARIOS: Scenario[] = [
  {
    program: 'era-apply',
    what: 'an incremental block stream that grows the image (from thin_delta)',
    async make(rand, seed) {
      const oldImage = randomBytes(48 * B + 1000, seed)
      const newImage = evolve(oldImage, 64 * B, rand, seed)
      const regions: [number, number][] = []
      for (let at = 0; at < newImage.length; at += B) {
        const was = oldImage.subarray(at, at + B)
        if (!was.equals(newImage.subarray(at, at + B)) || at + B > oldImage.length) regions.push([at, B])
      }
      return {
        oldImage,
        newImage,
        stream: await blockStream(newImage, regions, { metadata: { night: `${seed}`, input: 'thin_delta' } }),
      }
    },
  },
  {
    program: 'era-apply',
    what: 'a full block stream that shrinks the image',
    async make(rand, seed) {
      const oldImage = randomBytes(64 * B, seed)
      const newImage = evolve(oldImage, 40 * B + 300, rand, seed)
      return { oldImage, newImage, stream: await fullStream(newImage, B) }
    },
  },
  {
    program: 'bpatch',
    what: 'a delta that grows the image',
    async make(rand, seed) {
      const oldImage = randomBytes(48 * B + 1000, seed)
      const newImage = evolve(oldImage, 64 * B, rand, seed)
      return { oldImage, newImage, stream: await deltaStream(oldImage, newImage, B, BigInt(seed)) }
    },
  },
  {
    program: 'bpatch',
    what: 'a delta that shrinks the image',
    async make(rand, seed) {
      const oldImage = randomBytes(64 * B, seed)
      const newImage = evolve(oldImage, 40 * B + 300, rand, seed)
      return { oldImage, newImage, stream: await deltaStream(oldImage, newImage, B, BigInt(seed)) }
    },
  },
]

function procRead(pid: number, what: string): string {
  try {
    return readFileSync(`/proc/${pid}/${what}`, 'latin1')
  } catch {
    return '' // gone
  }
}

/** Waits until the child sits in epoll with nothing more read for a few polls: it has done what its input allows. */
async function idle(pid: number): Promise<void> {
  let quiet = 0
  let last = ''
  for (let i = 0; i < 400 && quiet < 4; i++) {
    await sleep(5)
    const io = procRead(pid, 'io').split('\n')[0] as string
    const waiting = procRead(pid, 'wchan').includes('epoll')
    quiet = waiting && io === last ? quiet + 1 : 0
    last = io
  }
}

/**
 * What a power loss could add to a kill: target writes made after the last
 * journal sync reach the disk in part, in any order. Parts of the regions the
 * journal holds go back to their old contents (the journal has them), parts
 * of the target past its old end go back to holes, and a truncate of its
 * tail (journaled first) may be lost whole. Nothing else may differ:
 * no write precedes the journal of its region. Returns the regions torn.
 */
function tear(target: string, undo: string, rand: () => number): number {
  const journal = snapshot(undo)
  if (journal === null) return 0
  const parser = new StreamParser(hash)
  const records: StreamRecord[] = []
  try {
    parser.push(journal.bytes)
    for (let item = parser.next(); item !== null; item = parser.next()) {
      if (item.type === 'record') records.push(item.record)
    }
  } catch {
    // The journal's torn end: what is before it counts.
  }
  if (parser.header === undefined || parser.done) return 0 // no write yet, or all synced
  const fd = openSync(target, 'r+')
  let torn = 0
  const oldData = (rec: StreamRecord, from: number, to: number): Buffer =>
    rec.type === 'DATA' ? rec.payload.subarray(from - rec.offset, to - rec.offset) : Buffer.alloc(to - from)
  try {
    const shrunkTo = fstatSync(fd).size
    for (const rec of records) {
      // Past the end of a shrunk target: a truncate reaches the disk whole or not at all (below).
      if (rec.offset >= shrunkTo || rand() > 0.4) continue
      const end = Math.min(rec.offset + rec.length, shrunkTo)
      const from = rec.offset + Math.floor(rand() * (end - rec.offset))
      const to = from + 1 + Math.floor(rand() * (end - from))
      writeSync(fd, oldData(rec, from, to), 0, to - from, from)
      torn++
    }
    if (shrunkTo < parser.header.size && rand() < 0.5) {
      // The truncate is lost: the old size and the old tail, which the journal holds, are back.
      for (const rec of records) {
        if (rec.offset >= shrunkTo)
          writeSync(fd, oldData(rec, rec.offset, rec.offset + rec.length), 0, rec.length, rec.offset)
      }
      torn++
    }
    const size = fstatSync(fd).size
    for (let n = 0; n < 3 && size > parser.header.size; n++) {
      const from = parser.header.size + Math.floor(rand() * (size - parser.header.size))
      const length = Math.min(1 + Math.floor(rand() * B), size - from)
      writeSync(fd, Buffer.alloc(length), 0, length, from)
      torn++
    }
  } finally {
    closeSync(fd)
  }
  return torn
}

interface Killed {
  status: number | null
  signal: NodeJS.Signals | null
  stderr: string
}

/** Runs `program`, feeds it `stream`, and kills it as `plan` says. */
async function runAndKill(
  program: string,
  args: string[],
  stream: Buffer,
  env: Record<string, string>,
  plan: { mode: 'after-bytes'; bytes: number } | { mode: 'mid-write'; delay: number; undo: string },
): Promise<Killed> {
  const child = spawn(process.execPath, [binPath(program), ...args], {
    env: childEnv(false, env),
    stdio: ['pipe', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
  child.stdin.on('error', () => {
    // Killed while we write: expected.
  })
  const closed = new Promise<Killed>((resolve) =>
    child.on('close', (status, signal) => resolve({ status, signal, stderr })),
  )
  const pid = child.pid as number
  if (plan.mode === 'after-bytes') {
    await new Promise<void>((resolve) => child.stdin.write(stream.subarray(0, plan.bytes), () => resolve()))
    await idle(pid)
  } else {
    child.stdin.end(stream)
    for (let i = 0; i < 2000 && snapshot(plan.undo) === null && child.exitCode === null; i++) await sleep(1)
    await sleep(plan.delay)
  }
  child.kill('SIGKILL')
  child.stdin.destroy()
  return closed
}

void t.test(`${TRIALS} crashes of era-apply and bpatch with --undo`, async (t) => {
  const seed = testSeed('crash trials')
  const dir = tempDir(t, 'crash')
  const trials = Array.from({ length: TRIALS }, (_, i) => i)
  const failures: string[] = []
  const seen = { rerun: 0, rollback: 0, killed: 0, finished: 0, midWrite: 0, mixed: 0, torn: 0 }
  await pool(trials, availableParallelism(), async (i) => {
    const rand = prng(seed + i * 7919)
    const scenario = SCENARIOS[i % SCENARIOS.length] as Scenario
    const { oldImage, newImage, stream } = await scenario.make(rand, (seed + i) >>> 0)
    const target = join(dir, `target-${i}`)
    const undo = join(dir, `undo-${i}`)
    writeFileSync(target, oldImage)
    const batch = 1 + Math.floor(rand() * 4)
    const env = { BLOCKPIPE_UNDO_BATCH_RECORDS: String(batch) }
    const midWrite = rand() < 0.3
    const plan = midWrite
      ? { mode: 'mid-write' as const, delay: Math.floor(rand() * 60), undo }
      : { mode: 'after-bytes' as const, bytes: Math.floor(rand() * (stream.length + 1)) }
    const rerun = rand() < 0.5
    const label =
      `trial ${i} (seed ${seed}): ${scenario.program}, ${scenario.what}, batch ${batch}, ` +
      (plan.mode === 'mid-write' ? `killed ${plan.delay} ms into the apply` : `killed after ${plan.bytes} bytes`) +
      `, then ${rerun ? 're-run' : 'rolled back'}`
    const fail = (what: string): void => void failures.push(`${label}: ${what}`)
    const cover = i < 4 // a sample of the children collects coverage

    const killed = await runAndKill(scenario.program, ['--undo', undo, target], stream, env, plan)
    if (killed.signal === 'SIGKILL') seen.killed++
    else if (killed.status === 0) seen.finished++
    else if (plan.mode === 'after-bytes' && plan.bytes < stream.length) {
      // Cut by the kill? No: killed only after the bytes were written; a
      // status means it failed by itself, which it must not.
      return fail(`exited ${killed.status} before the kill: ${killed.stderr}`)
    }
    if (midWrite) seen.midWrite++
    if (killed.signal === 'SIGKILL' && rand() < 0.6 && tear(target, undo, rand) > 0) seen.torn++
    const left = readFileSync(target)
    if (!left.equals(oldImage) && !left.equals(newImage)) seen.mixed++

    if (rerun) {
      seen.rerun++
      const again = await runTool(scenario.program, ['--undo', undo, target], { input: stream, env, cover })
      const complete = again.status === 2 && /holds the complete journal of a finished apply/.test(again.stderr)
      if (again.status !== 0 && !complete) return fail(`the re-run failed: ${again.status}: ${again.stderr}`)
      if (snapshot(target)?.bytes.equals(newImage) !== true)
        return fail(`the re-run did not give the new image: ${again.status} ${again.stderr}`)
    }
    // Roll back: to the old image, whatever happened before.
    if (snapshot(undo) === null) {
      // Killed before the journal (or its header) was written: nothing was.
      if (!readFileSync(target).equals(oldImage)) fail('no journal, yet the target changed')
      return
    }
    seen.rollback++
    const back = await runTool('era-apply', [target], { input: readFileSync(undo), cover })
    if (back.status !== 0) {
      if (/stream header|empty input/.test(back.stderr) && readFileSync(target).equals(oldImage)) return
      return fail(`the rollback failed: ${back.status}: ${back.stderr}`)
    }
    if (snapshot(target)?.bytes.equals(oldImage) !== true)
      fail(`the rollback did not give the old image: ${back.stderr}`)
  })
  t.same(failures, [], `every one of ${TRIALS} trials ends with the new or the old image`)
  t.comment(`trials: ${JSON.stringify(seen)}`)
  t.ok(seen.killed >= TRIALS / 2, 'most trials were killed mid-apply')
  t.ok(seen.rerun > 0 && seen.rollback > 0, 'both recoveries were tried')
  t.ok(seen.mixed > 0, 'some kills left a target half old, half new')
  t.ok(seen.torn > 0, 'some targets were torn as by a power loss')
})
