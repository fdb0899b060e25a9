import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { scribble, writeImage } from '../lib/data.js'
import { ROOT, binDir, runCommand, sh, type RunResult } from '../lib/run.js'
import { sshdUnavailable, startSshd, type Sshd } from '../lib/sshd.js'
import { sameFiles } from '../safety/lib.js'

// examples/bsync-backup.sh, night after night, against local files with ssh
// going through a real sshd on 127.0.0.1: the "backup host" is this machine,
// reached the way a cron job reaches it.

const SCRIPT = join(ROOT, 'examples', 'bsync-backup.sh')
const CHUNK = 32 * 1024
const SIZE = 4 * 1024 * 1024

/** A subtest's `t` (the parameter of a test callback). */
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

interface Setup {
  dir: string
  src: string
  img: string
  digests: string
  undo: string
  /** Each remote bsum run appends a line here. */
  bsumLog: string
  /** The script's command line with these options. */
  argv(args?: string[]): string[]
  env: Record<string, string>
  run(args?: string[], env?: Record<string, string>): Promise<RunResult>
}

function setup(t: Tap, sshd: Sshd): Setup {
  const dir = mkdtempSync(join(tmpdir(), 'blockpipe-bsync-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'remote'))
  mkdirSync(join(dir, 'state'))
  const src = join(dir, 'src.img')
  writeImage(src, SIZE, 1, [[1 << 20, 512 * 1024]])
  const bsumLog = join(dir, 'bsum.log')
  // The backup host's bsum: logs each call, so a test can tell whether the image was read.
  const bsum = join(dir, 'remote-bsum')
  writeFileSync(bsum, `#!/bin/sh\necho "$*" >> '${bsumLog}'\nexec '${join(binDir(), 'bsum')}' "$@"\n`)
  chmodSync(bsum, 0o755)
  const words = sshd.ssh.split(' ')
  const img = join(dir, 'remote', 'vm.img')
  const digests = join(dir, 'state', 'vm.sum')
  const env = {
    SSH: words.slice(0, -1).join(' '),
    REMOTE_BSUM: bsum,
    REMOTE_BPATCH: join(binDir(), 'bpatch'),
    PATH: `${binDir()}:${process.env.PATH ?? ''}`,
  }
  const remote = words[words.length - 1] ?? ''
  const argv = (args: string[] = []): string[] => [
    SCRIPT,
    ...['-r', remote, '-i', img, '-s', digests, '-b', '32K'],
    ...args,
    src,
  ]
  return {
    dir,
    src,
    img,
    digests,
    undo: `${img}.undo`,
    bsumLog,
    argv,
    env,
    run: (args = [], extra = {}) => runCommand('bash', argv(args), { env: { ...env, ...extra } }),
  }
}

const bsumCalls = (s: Setup): number =>
  existsSync(s.bsumLog) ? readFileSync(s.bsumLog, 'utf8').trim().split('\n').length : 0

const undoFiles = (s: Setup): string[] => (existsSync(s.undo) ? readdirSync(s.undo).sort() : [])
const leftovers = (s: Setup): string[] => readdirSync(join(s.dir, 'state')).filter((f) => !/^vm\.sum(\.lock)?$/.test(f))

const why = sshdUnavailable()

void t.test('usage', async (t) => {
  let r = await runCommand('bash', [SCRIPT, '-h'])
  t.equal(r.status, 0)
  t.match(r.stdout.toString(), /^Usage: bsync-backup\.sh/)
  r = await runCommand('bash', [SCRIPT, '-r', 'host', '/dev/null'])
  t.equal(r.status, 2, 'no -i')
  t.match(r.stderr, /no image path/)
  r = await runCommand('bash', [SCRIPT, '-x'])
  t.equal(r.status, 2)
  t.match(r.stderr, /unknown option -x/)
})

void t.test(
  'nightly: the copy follows the source, read on the backup host only the first night',
  { skip: why ?? false },
  async (t) => {
    const sshd = await startSshd()
    t.teardown(() => sshd.stop())
    const s = setup(t, sshd)

    // Night 1: no digest file; the copy does not exist yet (-c creates it).
    let r = await s.run()
    t.equal(r.status, 2, 'without -c a missing copy is not created: exit 2')
    t.match(r.stderr, /vm\.img does not exist: give its right path, or -c/)
    t.notOk(existsSync(s.img), 'no copy was created')
    t.notOk(existsSync(s.digests), 'no digest file was written')
    r = await s.run(['-c'])
    t.equal(r.status, 0, `night 1: ${r.stderr}`)
    sameFiles(t, s.img, s.src, 'night 1: copy = source')
    t.equal(bsumCalls(s), 1, 'night 1 digests the copy on the backup host')
    t.ok(existsSync(s.digests), 'the digest file is written')
    t.same(leftovers(s), [], 'no temporary file left beside the digest file')

    // Nights 2 and 3: changes; the copy is only written.
    for (const night of [2, 3]) {
      const before = join(s.dir, `before-${night}.img`)
      copyFileSync(s.img, before)
      const digestsBefore = readFileSync(s.digests)
      scribble(s.src, night * 300_000, 70_000, night) // spans chunk boundaries
      scribble(s.src, SIZE - 100, 100, night + 10) // the last chunk
      scribble(s.src, (1 << 20) + night * CHUNK, 10, night + 20) // into the zeroed region
      const undoBefore = undoFiles(s)
      r = await s.run()
      t.equal(r.status, 0, `night ${night}: ${r.stderr}`)
      sameFiles(t, s.img, s.src, `night ${night}: copy = source`)
      t.equal(bsumCalls(s), 1, `night ${night}: the copy was not digested again`)
      t.notSame(readFileSync(s.digests), digestsBefore, `night ${night}: the digest file now describes the new copy`)
      const added = undoFiles(s).filter((f) => !undoBefore.includes(f))
      t.equal(added.length, 1, `night ${night}: one undo file`)
      // The night's undo file rolls the copy back to the night before.
      const rolled = join(s.dir, 'rolled.img')
      copyFileSync(s.img, rolled)
      const u = await sh(`bpatch ${JSON.stringify(rolled)} < ${JSON.stringify(join(s.undo, added[0] ?? ''))}`)
      t.equal(u.status, 0, u.stderr)
      sameFiles(t, rolled, before, `night ${night}: its undo file gives the copy of the night before`)
    }

    // Proof that the copy is not read after night 1: a chunk changed behind
    // the script's back, which the source does not change, stays wrong...
    const tampered = 5 * CHUNK
    scribble(s.img, tampered + 7, 3, 99)
    scribble(s.src, 40 * CHUNK, 10, 98)
    r = await s.run()
    t.equal(r.status, 0, r.stderr)
    t.equal(bsumCalls(s), 1)
    const img = readFileSync(s.img)
    const src = readFileSync(s.src)
    t.notOk(img.equals(src), 'a chunk changed on the backup host behind the script is not seen')
    t.ok(
      img.subarray(0, tampered).equals(src.subarray(0, tampered)) &&
        img.subarray(tampered + CHUNK).equals(src.subarray(tampered + CHUNK)),
      '...and only that chunk differs',
    )
    // ...until -F digests the copy again.
    r = await s.run(['-F'])
    t.equal(r.status, 0, r.stderr)
    t.equal(bsumCalls(s), 2, '-F digests the copy again')
    sameFiles(t, s.img, s.src, 'after -F: copy = source')
  },
)

void t.test(
  'a copy that is not what the digests say: exit 3, nothing written, digests kept',
  { skip: why ?? false },
  async (t) => {
    const sshd = await startSshd()
    t.teardown(() => sshd.stop())
    const s = setup(t, sshd)
    let r = await s.run(['-c'])
    t.equal(r.status, 0, r.stderr)

    // The same chunk changed on both sides: bpatch finds neither the old data nor the new.
    scribble(s.img, 9 * CHUNK, 100, 50)
    scribble(s.src, 9 * CHUNK + 1000, 100, 51)
    scribble(s.src, 20 * CHUNK, 100, 52)
    const img = readFileSync(s.img)
    const digests = readFileSync(s.digests)
    const undo = undoFiles(s)
    r = await s.run()
    t.equal(r.status, 3, 'exit 3')
    t.match(r.stderr, /is not the image the digests describe.*-F/s)
    t.ok(readFileSync(s.img).equals(img), 'nothing was written to the copy (spool)')
    t.ok(readFileSync(s.digests).equals(digests), 'the digest file is unchanged')
    t.same(leftovers(s), [], 'no temporary file left')
    t.same(undoFiles(s), undo, 'no undo file was made')

    // Another image altogether (another size).
    const other = join(s.dir, 'remote', 'other.img')
    writeImage(other, SIZE / 2, 7)
    r = await s.run(['-i', other])
    t.equal(r.status, 3, `another image: exit 3: ${r.stderr}`)
    t.ok(readFileSync(s.digests).equals(digests), 'the digest file is unchanged')

    // The backup host cannot be reached: exit 1, digests kept.
    r = await s.run([], { SSH: 'ssh -p 1 -o BatchMode=yes -o ConnectTimeout=5' })
    t.equal(r.status, 1, 'unreachable host: exit 1')
    t.match(r.stderr, /255: ssh itself failed/)
    t.ok(readFileSync(s.digests).equals(digests), 'the digest file is unchanged')

    // Another run holds the lock: exit 4.
    r = await runCommand('flock', [`${s.digests}.lock`, 'bash', ...s.argv()], { env: s.env })
    t.equal(r.status, 4, 'another run holds the lock: exit 4')
    t.match(r.stderr, /another bsync-backup run holds/)

    // -F digests the copy again, and the sync goes through.
    r = await s.run(['-F'])
    t.equal(r.status, 0, r.stderr)
    sameFiles(t, s.img, s.src, 'after -F: copy = source')
  },
)
