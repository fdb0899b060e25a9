import { chmodSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { BlockpipeError } from '../../packages/core/src/errors.js'
import {
  SystemError,
  describeOpenError,
  describeSystemError,
  isSystemError,
  systemPhrase,
  writeError,
} from '../../packages/core/src/system-errors.js'

const e = (code: string, message = `${code}: failed`, more: Partial<NodeJS.ErrnoException> = {}) =>
  Object.assign(new Error(message), { code }, more) as NodeJS.ErrnoException

const dir = mkdtempSync(join(tmpdir(), 'system-errors-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

void t.test('describeOpenError puts each failure in words', (t) => {
  t.equal(describeOpenError(e('ENOENT'), '/dev/sdz'), '/dev/sdz: no such file or device')
  t.equal(describeOpenError(e('EEXIST'), join(dir, 'nope')), `${join(dir, 'nope')}: already exists`)
  t.equal(
    describeOpenError(e('EBUSY'), '/dev/sdb1'),
    '/dev/sdb1: the device is in use (mounted, or open by another program); unmount it first',
  )
  t.equal(describeOpenError(e('EISDIR'), '/tmp'), '/tmp: is a directory')
  t.equal(describeOpenError(e('EROFS'), '/mnt/x'), '/mnt/x: read-only file system')
  t.equal(describeOpenError(e('ELOOP'), '/a'), '/a: too many levels of symbolic links (a loop of symbolic links?)')
  t.equal(describeOpenError(e('ENOSPC'), '/a'), '/a: no space left on the device (ENOSPC)')
  t.equal(
    describeOpenError(e('EXDEV', 'EXDEV: cross-device link not permitted, rename'), '/a'),
    '/a: cross-device link not permitted (EXDEV)',
  )
  t.equal(describeOpenError(e('EWHAT', 'odd'), '/a'), '/a: odd')
  t.end()
})

void t.test('a dangling symbolic link is named, with where it points', (t) => {
  const link = join(dir, 'dangling')
  symlinkSync(join(dir, 'gone', 'target.img'), link)
  const want = `${link}: dangling symbolic link to ${join(dir, 'gone', 'target.img')} (which does not exist)`
  t.equal(describeOpenError(e('ENOENT'), link), want, 'opened to read')
  t.equal(describeOpenError(e('EEXIST'), link), want, 'created with O_EXCL')
  const good = join(dir, 'good')
  writeFileSync(join(dir, 'file'), 'x')
  symlinkSync(join(dir, 'file'), good)
  t.equal(describeOpenError(e('EEXIST'), good), `${good}: already exists`, 'a link that leads somewhere')
  t.equal(describeOpenError(e('EEXIST'), join(dir, 'file')), `${join(dir, 'file')}: already exists`)
  t.end()
})

void t.test('permission denied says why for what the path is', (t) => {
  const file = join(dir, 'ro.img')
  writeFileSync(file, 'x')
  chmodSync(file, 0o444)
  t.match(describeOpenError(e('EACCES'), file), `${file}: permission denied (the file has mode 0444 and owner uid`)
  t.notMatch(describeOpenError(e('EACCES'), file), 'block devices')
  t.match(describeOpenError(e('EPERM'), dir), `${dir}: permission denied (the directory has mode`)
  t.match(describeOpenError(e('EACCES'), '/dev/null'), 'permission denied (the path has mode')
  t.equal(
    describeOpenError(e('EACCES'), join(dir, 'locked', 'x')),
    `${join(dir, 'locked', 'x')}: permission denied (a directory on the way is not accessible to this user)`,
  )
  t.end()
})

void t.test('block devices need root', { skip: process.getuid?.() !== 0 && 'needs root for mknod' }, async (t) => {
  const { execFileSync } = await import('node:child_process')
  const dev = join(dir, 'blk')
  execFileSync('mknod', [dev, 'b', '7', '200'])
  t.equal(describeOpenError(e('EACCES'), dev), `${dev}: permission denied (block devices need root)`)
})

void t.test('a system error no caller put in words', (t) => {
  t.ok(isSystemError(e('ENOSPC')))
  t.notOk(isSystemError(new Error('x')))
  t.notOk(isSystemError(null))
  t.notOk(isSystemError({ code: 'ERR_STREAM_WRITE_AFTER_END' }))
  t.equal(describeSystemError(e('EPIPE', 'write EPIPE', { syscall: 'write' })), systemPhrase(e('EPIPE')))
  t.equal(
    describeSystemError(e('ENOSPC', 'ENOSPC: no space', { syscall: 'write' })),
    'write: no space left on the device (ENOSPC)',
  )
  t.equal(
    describeSystemError(e('ENOSPC', 'x', { syscall: 'fsync', path: '/a' })),
    'fsync /a: no space left on the device (ENOSPC)',
  )
  t.equal(describeSystemError(e('ENOENT', 'x', { syscall: 'open', path: '/a' })), '/a: no such file or device')
  t.equal(describeSystemError(e('EIO')), 'input/output error (EIO): the device or its connection is failing')
  t.end()
})

void t.test('writeError names what was written', (t) => {
  const full = writeError(e('ENOSPC'), 'standard output') as SystemError
  t.type(full, SystemError)
  t.type(full, BlockpipeError)
  t.equal(full.errno, 'ENOSPC')
  t.equal(full.exitCode, 1)
  t.equal(full.message, 'cannot write standard output: no space left on the device (ENOSPC)')
  t.equal(writeError(e('EPIPE'), 'standard output').message, 'the reading end of the output went away (broken pipe)')
  const other = new TypeError('x')
  t.equal(writeError(other, 'standard output'), other)
  const ours = new BlockpipeError('EDEVICE', 'y')
  t.equal(writeError(ours, 'standard output'), ours)
  t.end()
})
