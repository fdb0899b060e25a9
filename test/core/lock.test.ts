import t from 'tap'
import { execFileSync, spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { majorMinor } from '../../packages/core/src/device.js'
import { BlockpipeError } from '../../packages/core/src/errors.js'
import {
  DEVICE_LOCK_DIR,
  bootId,
  formatLock,
  isStale,
  lockAll,
  lockPathOf,
  ownLock,
  parseLock,
  releaseAll,
  startTimeOf,
  takeLock,
  type LockOwner,
} from '../../packages/core/src/lock.js'

const dir = mkdtempSync(join(tmpdir(), 'blockpipe-lock-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
const fresh = (): string => join(dir, `t${n++}.img`)
const lockOf = (path: string): string => lockPathOf(path).file

/** The pid of a process that has exited. */
function deadPid(): number {
  const child = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'])
  return Number(child.stdout.toString())
}

class Sink {
  text = ''
  write(s: string): boolean {
    this.text += s
    return true
  }
}
const sink = (): Sink & NodeJS.WritableStream => new Sink() as unknown as Sink & NodeJS.WritableStream

void t.test('the lock file is beside a file, by its real name', (t) => {
  const target = fresh()
  t.same(lockPathOf(target), { file: join(dir, `.${target.split('/').pop()}.blockpipe-lock`), device: false })
  writeFileSync(target, 'x')
  const link = join(dir, 'link')
  symlinkSync(target, link)
  t.equal(lockOf(link), lockOf(target), 'a symbolic link locks what it points to')
  t.equal(lockOf(join(dir, 'no-dir', 'x')), join(dir, 'no-dir', '.x.blockpipe-lock'))
  t.end()
})

void t.test(
  'a block device is locked by its number, whatever path names it',
  { skip: !existsSync('/dev/loop0') },
  (t) => {
    const { major, minor } = majorMinor(statSync('/dev/loop0', { bigint: true }).rdev)
    t.same(lockPathOf('/dev/loop0'), { file: `${DEVICE_LOCK_DIR}/dev-${major}:${minor}.lock`, device: true })
    const devDir = join(dir, 'run', 'blockpipe')
    const [lock] = lockAll([{ path: '/dev/loop0', what: '/dev/loop0' }], { program: 'test', deviceLockDir: devDir })
    t.equal(lock?.path, join(devDir, `dev-${major}:${minor}.lock`), 'its directory is made')
    t.throws(() => lockAll([{ path: '/dev/loop0', what: '/dev/loop0' }], { program: 'x', deviceLockDir: devDir }), {
      code: 'ELOCKED',
    })
    releaseAll([lock!])
    t.notOk(existsSync(lock!.path))
    t.end()
  },
)

void t.test('the owner: pid, host, boot id, start time, program', (t) => {
  const me = ownLock('era-apply')
  t.equal(me.pid, process.pid)
  t.equal(me.host, hostname())
  t.match(me.bootId, /^[0-9a-f-]{36}$/)
  t.match(me.startTime, /^\d+$/)
  t.same(parseLock(formatLock(me)), me, 'what is written reads back')
  t.same(ownLock('x', join(dir, 'no-proc')), { ...me, bootId: '', startTime: '', program: 'x' }, 'without /proc')
  t.equal(bootId(join(dir, 'no-proc')), '')
  t.equal(startTimeOf(deadPid()), undefined)
  // A command name with spaces and parentheses.
  const proc = join(dir, 'proc')
  mkdirSync(join(proc, '77'), { recursive: true })
  const fields = Array.from({ length: 50 }, (_, i) => String(i + 3))
  writeFileSync(join(proc, '77', 'stat'), `77 (a (b) c) ${fields.join(' ')}`)
  t.equal(startTimeOf(77, proc), '22')
  t.end()
})

void t.test('parsing a lock file', (t) => {
  t.same(parseLock('pid=12\n'), { pid: 12, host: '', bootId: '', startTime: '', program: 'another process' })
  t.equal(parseLock(''), undefined, 'empty: being written')
  t.equal(parseLock('pid=x\n'), undefined)
  t.equal(parseLock('pid=-3\n=9\nnoise\n'), undefined)
  t.end()
})

void t.test('stale or alive', (t) => {
  const me = ownLock('t')
  const other: LockOwner = { ...me, program: 'bpatch' }
  t.notOk(isStale(other, me), 'this very process')
  t.ok(isStale({ ...other, pid: deadPid() }, me), 'pid gone')
  t.ok(isStale({ ...other, startTime: '1' }, me), 'pid reused by a process started at another time')
  t.notOk(isStale({ ...other, startTime: '' }, me), 'no start time: the pid decides')
  t.ok(isStale({ ...other, bootId: 'another-boot' }, me), 'written before a reboot')
  t.notOk(isStale({ ...other, bootId: '' }, me), 'no boot id: the pid decides')
  t.notOk(isStale({ ...other, pid: deadPid(), host: 'elsewhere' }, me), 'another host cannot tell')
  const noProc = join(dir, 'no-proc')
  t.notOk(isStale(other, me, noProc), 'without /proc: the pid lives')
  t.ok(isStale({ ...other, pid: deadPid() }, me, noProc), 'without /proc: the pid is gone')
  // pid 1 exists; as another user, kill(1, 0) says EPERM, as root it succeeds: alive either way.
  t.notOk(isStale({ ...other, pid: 1 }, me, noProc))
  t.end()
})

void t.test('a second lock fails at once, naming the holder; released, it can be taken', (t) => {
  const target = fresh()
  const first = lockAll([{ path: target, what: target }], { program: 'era-apply' })
  t.same(parseLock(readFileSync(lockOf(target), 'utf8')), ownLock('era-apply'))
  const err = t.throws(() => lockAll([{ path: target, what: target }], { program: 'bpatch' })) as BlockpipeError
  t.equal(err.exitCode, 1)
  t.match(
    err.message,
    new RegExp(
      `^${target} is locked by era-apply \\(pid ${process.pid} on ${hostname()}, since \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d UTC\\); ` +
        `wait for it or, if it is gone, remove ${lockOf(target)}$`,
    ),
  )
  releaseAll(first)
  t.notOk(existsSync(lockOf(target)))
  releaseAll(lockAll([{ path: target, what: target }], { program: 'bpatch' }))
  t.end()
})

void t.test('several paths: one lock file each; on a refusal, those taken are released', (t) => {
  const target = fresh()
  const journal = fresh()
  const held = lockAll([{ path: journal, what: 'the undo file' }], { program: 'a' })
  const paths = [
    { path: target, what: target },
    { path: target, what: 'the same again' },
    { path: journal, what: 'the undo file' },
  ]
  t.throws(() => lockAll(paths, { program: 'b' }), { message: /^the undo file is locked by a / })
  t.notOk(existsSync(lockOf(target)), 'the target lock was given back')
  releaseAll(held)
  const both = lockAll(paths, { program: 'b' })
  t.equal(both.length, 2)
  releaseAll(both)
  t.end()
})

void t.test('a stale lock is taken over with a notice; a live or foreign one is not', (t) => {
  const target = fresh()
  const me = ownLock('x')
  writeFileSync(lockOf(target), formatLock({ ...me, pid: deadPid(), program: 'bpatch' }))
  const stderr = sink()
  const held = lockAll([{ path: target, what: target }], { program: 'era-apply', stderr })
  t.match(
    stderr.text,
    /^era-apply: note: removed the stale lock .* of bpatch \(pid \d+, which is gone, since .* UTC\)\n$/,
  )
  t.equal(parseLock(readFileSync(lockOf(target), 'utf8'))?.program, 'era-apply')
  releaseAll(held)

  writeFileSync(lockOf(target), formatLock({ ...me, pid: deadPid(), host: 'nas2', program: 'bpatch' }))
  t.throws(() => lockAll([{ path: target, what: target }], { program: 'era-apply' }), {
    code: 'ELOCKED',
    message: / is locked by bpatch \(pid \d+ on nas2, since /,
  })
  t.ok(existsSync(lockOf(target)), 'a lock of another host is left alone')
  unlinkSync(lockOf(target))
  t.end()
})

void t.test('a lock file that names no owner: waited for while it may be being written, then refused', (t) => {
  const target = fresh()
  writeFileSync(lockOf(target), '')
  const started = Date.now()
  t.throws(() => takeLock(lockOf(target), target, { program: 'era-apply' }), {
    code: 'ELOCKED',
    message: new RegExp(
      `is locked by a lock file that names no owner \\(since .*\\); wait for it or, if it is gone, remove`,
    ),
  })
  t.ok(Date.now() - started >= 1900, 'waited for it to be written')
  unlinkSync(lockOf(target))
  t.end()
})

void t.test('a lock released while looked at; a lock file removed or replaced under its owner', (t) => {
  const target = fresh()
  const file = lockOf(target)
  const [held] = lockAll([{ path: target, what: target }], { program: 'a' })
  unlinkSync(file)
  held!.release() // already gone: nothing to do
  t.notOk(existsSync(file))
  const [again] = lockAll([{ path: target, what: target }], { program: 'a' })
  unlinkSync(file)
  writeFileSync(file, formatLock({ ...ownLock('b'), program: 'b' }))
  again!.release()
  t.equal(parseLock(readFileSync(file, 'utf8'))?.program, 'b', "another's lock is put back")
  unlinkSync(file)
  t.end()
})

void t.test('where no lock file can be made', (t) => {
  t.same(
    lockAll([{ path: join(dir, 'no-dir', 'x'), what: 'x' }], { program: 'a' }),
    [],
    'no directory: nothing to lock',
  )
  const file = join(dir, 'a-file')
  writeFileSync(file, '')
  t.same(lockAll([{ path: join(file, 'x'), what: 'x' }], { program: 'a' }), [], 'a path through a file: neither')
  // A device whose lock directory cannot be made is still opened exclusively.
  if (existsSync('/dev/loop0')) {
    t.same(lockAll([{ path: '/dev/loop0', what: 'd' }], { program: 'a', deviceLockDir: join(file, 'sub') }), [])
  }
  const long = join(dir, 'x'.repeat(250))
  writeFileSync(long, '')
  t.throws(() => lockAll([{ path: long, what: long }], { program: 'a' }), {
    code: 'EDEVICE',
    message: /^cannot create the lock file .*\.x{250}\.blockpipe-lock: .*; nothing was written$/,
  })
  t.end()
})

void t.test('a full disk: the lock is held empty, with a note', (t) => {
  const full = join(dir, 'full')
  mkdirSync(full)
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4k', 'tmpfs', full], { stdio: 'ignore' })
  } catch {
    t.comment('cannot mount a tmpfs here (needs root): skipped')
    t.end()
    return
  }
  t.teardown(() => execFileSync('umount', [full]))
  writeFileSync(join(full, 'image'), Buffer.alloc(4096, 1))
  t.throws(() => writeFileSync(join(full, 'more'), 'x'), { code: 'ENOSPC' }, 'the disk is full')
  unlinkSync(join(full, 'more'))
  const stderr = sink()
  const target = join(full, 'image')
  const held = lockAll([{ path: target, what: target }], { program: 'bpatch', stderr })
  t.match(stderr.text, /^bpatch: note: the lock file \S+ is held empty, its owner could not be written \(.*\): should/)
  t.equal(readFileSync(lockOf(target), 'utf8'), '')
  t.throws(() => lockAll([{ path: target, what: target }], { program: 'era-apply' }), { code: 'ELOCKED' })
  releaseAll(held)
  t.notOk(existsSync(lockOf(target)), 'released')
  t.end()
})
