import { execFileSync } from 'node:child_process'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  rmSync,
  symlinkSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { writeImage } from '../lib/data.js'
import { binPath, have, isRoot, sh } from '../lib/run.js'

// Every system error a user can cause is a message naming the program, the
// problem and the fix: never "internal error" and a stack trace.

const dir = mkdtempSync(join(tmpdir(), 'messages-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const img = join(dir, 'src.img')
writeImage(img, 4 << 20, 1)
const stream = join(dir, 's.bps')
const sum = join(dir, 's.sum')

const noTrace = (t: Test, stderr: string): void => {
  t.notMatch(stderr, /internal error|^\s+at /m, 'no stack trace')
}

t.before(async () => {
  await sh(`era-copy --all ${img} > ${stream} && bsum -b 4K ${img} > ${sum}`)
})

void t.test('a producer whose stdout is a full disk says so', async (t) => {
  const producers: [string, string][] = [
    ['era-copy', `era-copy --all ${img}`],
    ['bsum', `bsum ${img}`],
    ['bdiff', `bdiff ${img} < ${sum}`],
  ]
  for (const [program, command] of producers) {
    const r = await sh(`${command} > /dev/full`)
    t.equal(r.status, 1, program)
    t.equal(r.stderr, `${program}: cannot write standard output: no space left on the device (ENOSPC)\n`)
    noTrace(t, r.stderr)
  }
})

const noRoot = !isRoot && 'needs root: a small tmpfs to fill up'
void t.test(
  'bdiff --digests-out on a full file system: a message, no temporary file left',
  { skip: noRoot },
  async (t) => {
    const mnt = join(dir, 'mnt')
    mkdirSync(mnt)
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', mnt])
    t.teardown(() => execFileSync('umount', [mnt]))
    // 64 MiB in 4 KiB chunks: 128 KiB of digests, more than the 16 KiB file system holds.
    const sparse = join(dir, 'sparse.img')
    writeFileSync(sparse, '')
    truncateSync(sparse, 64 << 20)
    const small = join(dir, 'sparse.sum')
    await sh(`bsum -b 4K ${sparse} > ${small}`)
    const r = await sh(`bdiff --digests-out ${join(mnt, 'new.sum')} ${sparse} < ${small} > /dev/null`)
    t.equal(r.status, 1)
    t.match(
      r.stderr,
      /^bdiff: cannot write the --digests-out file .*new\.sum \(as .*new\.sum\.tmp-\d+, now removed\): no space left on the device \(ENOSPC\)\n$/,
    )
    noTrace(t, r.stderr)
    t.same(readdirSync(mnt), [], 'neither the file nor its temporary')
  },
)

void t.test('dangling symbolic links are named with where they point', async (t) => {
  const link = join(dir, 'dangling.undo')
  symlinkSync(join(dir, 'nowhere', 'x.undo'), link)
  const undo = await sh(`era-apply --undo ${link} ${join(dir, 't1.img')} < ${stream}`)
  t.equal(undo.status, 1)
  t.match(undo.stderr, `${link}: dangling symbolic link to ${join(dir, 'nowhere', 'x.undo')} (which does not exist)`)
  noTrace(t, undo.stderr)
  const target = join(dir, 'dangling.img')
  symlinkSync(join(dir, 'nowhere', 'x.img'), target)
  const apply = await sh(`era-apply ${target} < ${stream}`)
  t.equal(apply.status, 1)
  t.match(apply.stderr, `${target}: dangling symbolic link to ${join(dir, 'nowhere', 'x.img')} (which does not exist)`)
  t.notMatch(apply.stderr, 'EEXIST')
  const loop = join(dir, 'loop')
  symlinkSync(loop, loop)
  const looped = await sh(`bsum ${loop} > /dev/null`)
  t.equal(looped.status, 1)
  t.match(looped.stderr, 'too many levels of symbolic links')
})

const noSetpriv = (!isRoot || !have('setpriv')) && 'needs root and setpriv to run as another user'
void t.test('a read-only regular file is not about block devices', { skip: noSetpriv }, async (t) => {
  const ro = join(dir, 'ro.img')
  writeImage(ro, 4 << 20, 2)
  chmodSync(ro, 0o444)
  // Writable for all, as /tmp: the lock file beside the image can be made, the image cannot be opened to write.
  chmodSync(dir, 0o1777)
  // Not through the wrappers of binDir(), which only root may read.
  const r = await sh(
    `setpriv --reuid=65534 --regid=65534 --clear-groups ${process.execPath} ${binPath('era-apply')} ${ro} < ${stream}`,
  )
  t.equal(r.status, 1)
  t.match(r.stderr, `${ro}: permission denied (the file has mode 0444`)
  t.notMatch(r.stderr, 'block devices')
})

void t.test('two streams joined: trailing data after the end record', async (t) => {
  const joined = join(dir, 'joined.bps')
  await sh(`cat ${stream} ${stream} > ${joined}`)
  for (const how of [`< ${joined}`, `< <(cat ${joined})`]) {
    const r = await sh(`era-apply --check ${how}`)
    t.equal(r.status, 1, how)
    t.match(r.stderr, /^era-apply: trailing data after the end record at byte \d+: the stream is whole up to there/)
    const listed = await sh(`bpdump ${how}`)
    t.equal(listed.status, 1, how)
    t.match(listed.stderr, 'trailing data after the end record')
  }
  const ok = await sh(`era-apply --check < ${stream}`)
  t.equal(ok.status, 0)
  t.match(ok.stdout.toString(), 'verified:')
  t.ok(existsSync(stream))
})
