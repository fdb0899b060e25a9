import { spawn } from 'node:child_process'
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, truncateSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { K64, changed, put } from '../integration/bsync-lib.js'
import { randomBytes, sha256 } from '../lib/data.js'
import { binPath, run, sh } from '../lib/run.js'

// Three nights of a backup image, each applied by the real tools with
// --undo: a shrink (bpatch), a grow (bpatch), then a full copy of the same
// size (era-copy | era-apply). brestore must bring back every night byte for
// byte, as a stream and as raw bytes, and leave the image and the undo files
// as they were.

const U1 = 'img.20261120T013000Z.era1-2.undo'
const U2 = 'img.20261121T013000.123456789Z.undo'
const U3 = 'img.20261122T013000Z.undo'

interface Nights {
  dir: string
  /** The image after night 0 (the first full copy), 1, 2 and 3. */
  states: Buffer[]
  /** Newest first: the undo files of nights 3, 2 and 1. */
  undo: string[]
}

async function threeNights(t: Test): Promise<Nights> {
  const dir = t.testdir()
  mkdirSync(join(dir, 'img.undo'))
  const s0 = randomBytes(20 * K64 + 1000, 1)
  s0.fill(0, 3 * K64, 6 * K64)
  const s1 = changed(s0.subarray(0, 12 * K64 + 5), 7 * K64, 100, 2)
  const s2 = changed(Buffer.concat([s1, randomBytes(14 * K64 - 5 + 300, 3)]), K64 - 100, 5000, 4)
  const s3 = changed(s2, 10 * K64 + 7, 3 * K64, 5).fill(0, 20 * K64, 22 * K64)
  const states = [s0, s1, s2, s3]
  states.forEach((s, i) => put(join(dir, `s${i}`), s))
  const nights = [
    'era-copy --all s0 | era-apply img',
    `bsum -b 64K img | bdiff s1 | bpatch --undo img.undo/${U1} img`,
    `bsum -b 64K img | bdiff s2 | bpatch --undo img.undo/${U2} img`,
    `era-copy --all s3 | era-apply --spool . --undo img.undo/${U3} img`,
  ]
  for (const night of nights) {
    const r = await sh(night, { cwd: dir })
    t.equal(r.status, 0, `${night}: ${r.stderr}`)
  }
  t.ok(readFileSync(join(dir, 'img')).equals(s3), 'the image is the last night')
  return { dir, states, undo: [U3, U2, U1].map((u) => join('img.undo', u)) }
}

function hashes(dir: string, files: string[]): string[] {
  return files.map((f) => sha256(join(dir, f)))
}

void t.test('every night comes back byte for byte, and nothing is changed', async (t) => {
  const { dir, states, undo } = await threeNights(t)
  const before = hashes(dir, ['img', ...undo])
  const asOf: [string, number][] = [
    ['2026-11-19', 0],
    ['2026-11-20', 1],
    ['2026-11-21T01:30:00', 1],
    ['2026-11-21T01:30:00.2Z', 2],
    ['2026-11-21', 2],
    ['2026-11-22T03:30+02:00', 2],
    ['2026-11-22', 3],
  ]
  for (const [date, night] of asOf) {
    const raw = await run('brestore', ['--raw', '--as-of', date, 'img'], { cwd: dir })
    t.equal(raw.status, 0, `${date}: ${raw.stderr}`)
    t.ok(raw.stdout.equals(states[night] as Buffer), `--raw --as-of ${date} is night ${night}`)
    const piped = await sh(`brestore --as-of ${date} img | era-apply restored-${date}`, { cwd: dir })
    t.equal(piped.status, 0, piped.stderr)
    t.ok(readFileSync(join(dir, `restored-${date}`)).equals(states[night] as Buffer), `--as-of ${date} | era-apply`)
  }
  for (let n = 1; n <= 3; n++) {
    const listed = undo.slice(0, n)
    const r = await sh(`brestore img ${listed.join(' ')} | era-apply listed-${n}`, { cwd: dir })
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stderr, '', 'nothing to say')
    t.ok(readFileSync(join(dir, `listed-${n}`)).equals(states[3 - n] as Buffer), `${n} undo files listed`)
  }
  const check = await run('brestore', ['--check', 'img', ...undo], { cwd: dir })
  t.equal(check.status, 0, check.stderr)
  t.match(check.stdout.toString(), `img: 3 undo files form one chain ending at it; it was ${states[0]?.length} bytes`)
  const header = await sh('brestore --as-of 2026-11-20 img | bpdump | head -n 9', { cwd: dir })
  t.match(header.stdout.toString(), /kind: +block \(full[^\n]*\n[^]*producer: +brestore [^]*as-of: +2026-11-20/)
  t.same(hashes(dir, ['img', ...undo]), before, 'the image and the undo files are as they were')
})

void t.test('a wrong order, a gap or another image is refused before anything is written', async (t) => {
  const { dir, states, undo } = await threeNights(t)
  const [u3, u2, u1] = undo as [string, string, string]
  const refused = async (args: string[], message: RegExp | string, status = 3): Promise<void> => {
    const r = await run('brestore', args, { cwd: dir })
    t.equal(r.status, status, `${args.join(' ')}: ${r.stderr}`)
    t.equal(r.stdout.length, 0, 'nothing written')
    t.match(r.stderr, message)
  }
  await refused(['img', u2, u3, u1], `${u3} (made `)
  await refused(['img', u2, u3, u1], 'list the undo files newest first')
  await refused(['img', u3, u1], `${u1} does not come right before ${u3}`)
  // Night 3 kept the size: the sizes alone do not show that its undo file is missing.
  await refused(['img', u2, u1], `${join(dir, u3)} (made `)
  await refused(['img', u2, u1], 'is not listed: the chain would skip it (a gap)')
  // Elsewhere, without the newer file beside it: the contents tell.
  mkdirSync(join(dir, 'gap'))
  copyFileSync(join(dir, u2), join(dir, 'gap', 'x.undo'))
  await refused(['img', 'gap/x.undo'], /gap\/x\.undo does not fit at offset \d+: the image with the newer undo files/)
  // Another image of the same size, and one of another size.
  put(join(dir, 'other'), changed(states[3] as Buffer, 21 * K64, 1, 9))
  await refused(['other', u3], /does not fit at offset \d+/)
  await refused(['s1', u3], `s1 is ${states[1]?.length} bytes, but the apply of the newest undo file ${u3}`)
})

void t.test('a copy of the image restores, with a warning; an undo file of another image is refused', async (t) => {
  const { dir, states, undo } = await threeNights(t)
  copyFileSync(join(dir, 'img'), join(dir, 'copy'))
  const r = await run('brestore', ['--raw', 'copy', ...undo], { cwd: dir })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /warning: copy is not the file the undo files were made on \(file:\d+:\d+\)/)
  t.ok(r.stdout.equals(states[0] as Buffer))
  // The copy lives on: a night applied to it has an undo file of another target.
  const night = await sh(`bsum -b 64K copy | bdiff s2 | bpatch --undo copy.undo copy`, { cwd: dir })
  t.equal(night.status, 0, night.stderr)
  const mixed = await run('brestore', ['copy', 'copy.undo', undo[1] as string], { cwd: dir })
  t.equal(mixed.status, 3, mixed.stderr)
  t.match(mixed.stderr, /is an undo file of another image \(file:\d+:\d+\) than copy\.undo/)
})

/** Runs brestore, holding its output back once it starts, while `meanwhile` changes things. */
function whileWriting(
  dir: string,
  args: string[],
  meanwhile: () => void,
): Promise<{ status: number | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath('brestore'), ...args], { cwd: dir })
    let stderr = ''
    let changedYet = false
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()))
    child.stdout.on('data', () => {
      if (changedYet) return
      changedYet = true
      child.stdout.pause()
      // The first pass is over (output has begun); the second is held by the full pipe.
      setTimeout(() => {
        meanwhile()
        child.stdout.resume()
      }, 200)
    })
    child.on('error', reject)
    child.on('close', (status) => resolve({ status, stderr }))
  })
}

function overwrite(path: string, offset: number, bytes: Buffer): void {
  const fd = openSync(path, 'r+')
  writeSync(fd, bytes, 0, bytes.length, offset)
  closeSync(fd)
}

void t.test('an image that changes between the check and the output fails: the output is unusable', async (t) => {
  const { dir, undo, states } = await threeNights(t)
  // A region the undo files check: the second pass finds it changed.
  let r = await whileWriting(dir, ['--raw', 'img', ...undo], () =>
    overwrite(join(dir, 'img'), 21 * K64, Buffer.from('changed')),
  )
  t.equal(r.status, 1, r.stderr)
  t.match(
    r.stderr,
    /the image changed while brestore read it \(at offset \d+, checked by [^)]+\): the output is unusable/,
  )
  // A region none of them covers: its modification time tells.
  r = await whileWriting(dir, ['--as-of', '2026-11-22', 'img'], () =>
    overwrite(join(dir, 'img'), 0, Buffer.from('changed')),
  )
  t.equal(r.status, 1, r.stderr)
  t.match(r.stderr, /img changed while brestore read it: the output is unusable/)
  // Put back what the undo files check, so that only the cut is new.
  overwrite(join(dir, 'img'), 0, (states[3] as Buffer).subarray(0, 7))
  overwrite(join(dir, 'img'), 21 * K64, (states[3] as Buffer).subarray(21 * K64, 21 * K64 + 7))
  // Cut short.
  r = await whileWriting(dir, ['--raw', 'img', ...undo], () => truncateSync(join(dir, 'img'), 22 * K64))
  t.equal(r.status, 1, r.stderr)
  t.match(r.stderr, `img ended at byte ${22 * K64} while brestore read it: it changed`)
})
