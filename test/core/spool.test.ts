import { closeSync, openSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { BlockpipeError, UsageError } from '../../packages/core/src/errors.js'
import { createSpool, fileChunks, tee } from '../../packages/core/src/spool.js'
import { FdSink } from '../../packages/core/src/write.js'
import { tempDir } from '../safety/lib.js'

void t.test('a spool in a directory is unlinked at once and holds what was written', async (t) => {
  const dir = tempDir(t, 'spool')
  const a = createSpool(dir, 'era-apply')
  const b = createSpool(dir, 'era-apply')
  t.not(a.path, b.path, 'two spools of one process in one directory')
  t.match(a.path, /\/\.era-apply-spool-\d+-/)
  t.same(readdirSync(dir), [], 'nothing left in the directory')
  const chunks = [Buffer.from('hello '), new Uint8Array(Buffer.from('spool')), Buffer.alloc(0)]
  const passed: Buffer[] = []
  for await (const chunk of tee(chunks, a.sink, a.path)) passed.push(Buffer.from(chunk))
  t.equal(Buffer.concat(passed).toString(), 'hello spool', 'tee passes every byte through')
  t.equal(a.sink.position, 11)
  t.same(
    [...fileChunks(a.fd, a.sink.position, 4)].map((c) => c.toString()),
    ['hell', 'o sp', 'ool'],
    'fileChunks reads the stored bytes back in pieces',
  )
  t.same([...fileChunks(a.fd, 0)], [], 'an empty spool has no chunks')
  t.equal(Buffer.concat([...fileChunks(a.fd, 11)]).toString(), 'hello spool', 'default piece size')
  a.close()
  b.close()
})

void t.test('a spool at a new file name is unlinked too; an existing one is refused', (t) => {
  const dir = tempDir(t, 'spool')
  let said = ''
  const stderr = new PassThrough().on('data', (d: Buffer) => (said += d.toString()))
  const spool = createSpool(join(dir, 'new'), 'bpatch', stderr)
  t.equal(spool.path, join(dir, 'new'))
  t.match(said, /^bpatch: --spool .*new is not a directory: spooling into that new file/, 'which one is said')
  t.same(readdirSync(dir), [])
  spool.close()
  writeFileSync(join(dir, 'exists'), 'precious')
  t.throws(() => createSpool(join(dir, 'exists'), 'bpatch'), UsageError)
  t.throws(() => createSpool(join(dir, 'exists'), 'bpatch'), { message: /the file exists; give a directory/ })
  t.end()
})

void t.test('a spool that cannot be created is an EDEVICE error naming the path', (t) => {
  const dir = tempDir(t, 'spool')
  writeFileSync(join(dir, 'file'), '')
  // A path through a regular file: stat fails with ENOTDIR.
  t.throws(() => createSpool(join(dir, 'file', 'x'), 'era-apply'), {
    code: 'EDEVICE',
    message: /^--spool .*file\/x/,
  })
  // A missing directory on the way, or a name meant as a directory: a usage error.
  t.throws(() => createSpool(join(dir, 'missing', 'spool'), 'era-apply'), {
    code: 'EUSAGE',
    message: /^--spool .*missing\/spool: neither a directory nor a new file in one \(.*missing does not exist\)/,
  })
  t.throws(() => createSpool(join(dir, 'missing') + '/', 'era-apply'), {
    code: 'EUSAGE',
    message: /^--spool .*missing\/: no such directory; create it first/,
  })
  t.throws(() => createSpool(join(dir, 'file') + '/', 'era-apply'), BlockpipeError, 'a file named as a directory')
  t.throws(() => createSpool('/proc/self', 'era-apply'), BlockpipeError, 'a directory that takes no files')
  t.end()
})

void t.test('a spool that cannot store the stream (ENOSPC, EFBIG) says so', async (t) => {
  const dir = tempDir(t, 'spool')
  writeFileSync(join(dir, 'ro'), '')
  const fd = openSync(join(dir, 'ro'), 'r')
  t.teardown(() => closeSync(fd))
  const passed: Uint8Array[] = []
  await t.rejects(
    (async () => {
      for await (const chunk of tee([Buffer.from('x')], new FdSink(fd))) passed.push(chunk)
    })(),
    { code: 'EDEVICE', message: /^--spool: cannot store the stream in the spool file: EBADF/ },
  )
  t.same(passed, [], 'nothing is passed on that was not stored')
})
