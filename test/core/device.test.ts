import t from 'tap'
import {
  closeSync,
  fstatSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  blockDeviceSize,
  close,
  openSource,
  openTarget,
  placeTarget,
  readAt,
  readChunks,
  readExactly,
  resize,
  sizeByReading,
  sync,
  writeAt,
  type Device,
} from '../../packages/core/src/device.js'
import { randomBytes } from '../lib/data.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'

const dir = mkdtempSync(join(tmpdir(), 'blockpipe-device-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
let n = 0
const file = (content: Buffer): string => {
  const path = join(dir, `f${n++}`)
  writeFileSync(path, content)
  return path
}
/** glibc's makedev: the dev_t Node reports as rdev. */
const makedev = (major: bigint, minor: bigint): bigint =>
  ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) | ((minor & ~0xffn) << 12n)
const BAD_FD = 2 ** 30

void t.test('openSource reads the size of a regular file; refuses what is not a file or device', (t) => {
  const data = randomBytes(10000, 1)
  const path = file(data)
  const dev = openSource(path)
  t.match(dev, { path, size: 10000, blockDevice: false })
  close(dev)
  const empty = openSource(file(Buffer.alloc(0)))
  t.equal(empty.size, 0)
  close(empty)
  const err = (fn: () => unknown, message: string): void => {
    t.throws(fn, { name: 'BlockpipeError', code: 'EDEVICE', exitCode: 1, message })
  }
  err(() => openSource(join(dir, 'missing')), `${join(dir, 'missing')}: no such file or device`)
  err(() => openSource(dir), `${dir}: not a regular file or block device`)
  err(() => openSource('/dev/null'), '/dev/null: not a regular file or block device')
  t.end()
})

void t.test('openTarget opens, creates, or refuses', (t) => {
  const existing = file(Buffer.alloc(5000, 1))
  const a = openTarget(existing, { create: false })
  t.match(a, { path: existing, size: 5000, blockDevice: false, existed: true })
  close(a)
  const b = openTarget(existing, { create: true })
  t.match(b, { size: 5000, existed: true }, 'an existing file is opened, not recreated')
  close(b)
  t.equal(readFileSync(existing).length, 5000)

  const fresh = join(dir, 'fresh')
  const c = openTarget(fresh, { create: true })
  t.match(c, { path: fresh, size: 0, blockDevice: false, existed: false })
  writeAt(c, Buffer.from('abc'), 0)
  placeTarget(c)
  close(c)
  t.equal(statSync(fresh).mode & 0o777, 0o600, 'created private')
  t.equal(readFileSync(fresh).toString(), 'abc')

  const err = (fn: () => unknown, message: string): void => {
    t.throws(fn, { name: 'BlockpipeError', code: 'EDEVICE', message })
  }
  const missing = join(dir, 'missing-target')
  err(() => openTarget(missing, { create: false }), `${missing}: no such file or device`)
  const deep = join(dir, 'no-such-dir', 'x')
  err(() => openTarget(deep, { create: true }), `${deep}: no such file or device`)
  err(() => openTarget(dir, { create: true }), `${dir}: is a directory`)
  err(() => openTarget('/dev/null', { create: false }), '/dev/null: not a regular file or block device')
  t.end()
})

void t.test('readAt reads what is there; readExactly insists', (t) => {
  const data = randomBytes(3000, 2)
  const dev = openSource(file(data))
  t.teardown(() => close(dev))
  const buf = Buffer.alloc(4000, 0xee)
  t.equal(readAt(dev, buf, 1000, 500), 1000)
  t.ok(buf.subarray(0, 1000).equals(data.subarray(500, 1500)))
  t.equal(readAt(dev, buf, 1000, 2500, 100), 500, 'short only at the end of the file')
  t.ok(buf.subarray(100, 600).equals(data.subarray(2500)))
  t.equal(buf[600], data[1100], 'nothing written past what was read')
  t.equal(readAt(dev, buf, 10, 5000), 0)
  t.equal(readAt(dev, buf, 0, 0), 0)
  readExactly(dev, buf, 3000, 0, 1000)
  t.ok(buf.subarray(1000, 4000).equals(data))
  t.throws(
    () => readExactly(dev, buf, 101, 2900),
    {
      code: 'EDEVICE',
      message: `${dev.path}: ended at byte 3000 while reading (did it shrink?)`,
    },
    'one byte short',
  )
  t.throws(() => readExactly(dev, buf, 1000, 2500), {
    code: 'EDEVICE',
    message: `${dev.path}: ended at byte 3000 while reading (did it shrink?)`,
  })
  const d = openSync(dir, 'r')
  t.teardown(() => closeSync(d))
  t.throws(() => readAt({ fd: d, path: dir }, buf, 10, 7), {
    code: 'EDEVICE',
    message: new RegExp(`^${dir}: read error at byte 7: EISDIR`),
  })
  t.end()
})

void t.test('readChunks yields every chunk in order, the last one short', (t) => {
  const data = randomBytes(10000, 3)
  const dev = openSource(file(data))
  t.teardown(() => close(dev))
  const chunks: { offset: number; data: Buffer }[] = []
  for (const c of readChunks(dev, 4096)) chunks.push({ offset: c.offset, data: Buffer.from(c.data) })
  t.same(
    chunks.map((c) => [c.offset, c.data.length]),
    [
      [0, 4096],
      [4096, 4096],
      [8192, 1808],
    ],
  )
  t.ok(Buffer.concat(chunks.map((c) => c.data)).equals(data))
  // One buffer, reused.
  const it = readChunks(dev, 4096)
  const first = it.next().value as { data: Buffer }
  const second = it.next().value as { data: Buffer }
  t.equal(first.data.buffer, second.data.buffer)
  t.same([...readChunks({ ...dev, size: 0 }, 4096)], [])
  t.equal([...readChunks({ ...dev, size: 4096 }, 4096)].length, 1)
  // A source that shrank under the reader, by one byte or more.
  t.throws(() => [...readChunks({ ...dev, size: 10001 }, 4096)], {
    code: 'EDEVICE',
    message: `${dev.path}: ended at byte 10000 while reading (did it shrink?)`,
  })
  t.throws(() => [...readChunks({ ...dev, size: 20000 }, 4096)], {
    code: 'EDEVICE',
    message: `${dev.path}: ended at byte 10000 while reading (did it shrink?)`,
  })
  t.end()
})

void t.test('writeAt, resize and sync on a file; their errors', (t) => {
  const path = file(Buffer.alloc(100))
  const dev = openTarget(path, { create: false })
  writeAt(dev, Buffer.from('xyz'), 10)
  writeAt(dev, new Uint8Array(0), 50)
  writeAt(dev, Buffer.alloc(2 << 20, 0x42), 200)
  t.equal(fstatSync(dev.fd).size, 200 + (2 << 20), 'a write past the end grows the file')
  resize(dev, 1000)
  t.equal(dev.size, 1000)
  t.equal(fstatSync(dev.fd).size, 1000)
  resize(dev, 13)
  t.equal(dev.size, 13)
  sync(dev)
  close(dev)
  const content = readFileSync(path)
  t.equal(content.length, 13)
  t.equal(content.subarray(10).toString(), 'xyz')

  const ro: Device = { ...openSource(path) }
  t.teardown(() => close(ro))
  t.throws(() => writeAt(ro, Buffer.from('a'), 5), {
    code: 'EDEVICE',
    message: new RegExp(`^${path}: write error at byte 5: EBADF`),
  })
  t.throws(() => resize(ro, 0), { code: 'EDEVICE', message: new RegExp(`^${path}: cannot resize to 0 bytes: `) })
  t.equal(ro.size, 13, 'the size is kept when the resize failed')
  t.throws(() => sync({ ...ro, fd: BAD_FD }), {
    code: 'EDEVICE',
    message: `${path}: fsync failed: EBADF: bad file descriptor, fsync`,
  })
  t.end()
})

void t.test('sizeByReading finds the end of what a descriptor reads', (t) => {
  for (const size of [0, 1, 511, 512, 513, 1000, 4096 * 3 + 7, 1 << 20, (1 << 20) + 512]) {
    const fd = openSync(file(Buffer.alloc(size, 1)), 'r')
    t.equal(sizeByReading(fd, 'x'), size, `${size} bytes`)
    closeSync(fd)
  }
  const d = openSync(dir, 'r')
  t.teardown(() => closeSync(d))
  t.throws(() => sizeByReading(d, dir), { name: 'BlockpipeError', code: 'EDEVICE', message: `${dir}: is a directory` })
  t.end()
})

void t.test('blockDeviceSize reads sysfs by major:minor, or falls back to reading', (t) => {
  const sysfs = join(dir, 'sysfs')
  const entry = (name: string, content: string): void => {
    mkdirSync(join(sysfs, name), { recursive: true })
    writeFileSync(join(sysfs, name, 'size'), content)
  }
  entry('8:16', '2048\n')
  entry('259:300', '16\n') // a minor beyond 8 bits (an NVMe partition, say)
  entry('4097:1048575', '8\n') // major and minor at glibc's limits
  entry('7:3', 'not a number\n')
  entry('7:4', '')
  const fd = openSync(file(Buffer.alloc(5000)), 'r')
  t.teardown(() => closeSync(fd))
  t.equal(blockDeviceSize(fd, makedev(8n, 16n), 'sdb', sysfs), 1 << 20)
  t.equal(blockDeviceSize(fd, makedev(259n, 300n), 'nvme0n1p300', sysfs), 8192)
  t.equal(blockDeviceSize(fd, makedev(4097n, 1048575n), 'x', sysfs), 4096)
  t.equal(blockDeviceSize(fd, makedev(8n, 17n), 'sdb1', sysfs), 5000, 'no sysfs entry: read')
  t.equal(blockDeviceSize(fd, makedev(7n, 3n), 'loop3', sysfs), 5000, 'garbage in sysfs: read')
  t.equal(blockDeviceSize(fd, makedev(7n, 4n), 'loop4', sysfs), 5000)
  t.equal(blockDeviceSize(fd, makedev(8n, 16n), 'sdb', join(dir, 'no-sysfs')), 5000)
  t.end()
})

void t.test('a real block device: a loop device', { skip: loopUnavailable() }, async (t) => {
  const size = (1 << 20) + 3 * 512
  const data = randomBytes(size, 4)
  const path = file(data)
  await withLoop(path, (loop) => {
    const src = openSource(loop)
    t.match(src, { path: loop, size, blockDevice: true })
    const st = fstatSync(src.fd, { bigint: true })
    t.ok(st.isBlockDevice())
    t.equal(sizeByReading(src.fd, loop), size, 'by reading')
    t.equal(blockDeviceSize(src.fd, st.rdev, loop), size, 'by sysfs')
    t.equal(blockDeviceSize(src.fd, st.rdev, loop, join(dir, 'no-sysfs')), size, 'no sysfs')
    const buf = Buffer.alloc(size)
    readExactly(src, buf, size, 0)
    t.ok(buf.equals(data))
    close(src)

    const target = openTarget(loop, { create: true })
    t.match(target, { path: loop, size, blockDevice: true, existed: true })
    // Opened exclusively: a second writer is refused, as a mounted device would be.
    t.throws(() => openTarget(loop, { create: false }), {
      code: 'EDEVICE',
      message: `${loop}: the device is in use (mounted, or open by another program); unmount it first`,
    })
    writeAt(target, Buffer.from('written through the loop device'), 4096)
    sync(target)
    close(target)
    return Promise.resolve()
  })
  t.equal(
    readFileSync(path)
      .subarray(4096, 4096 + 31)
      .toString(),
    'written through the loop device',
  )
})
