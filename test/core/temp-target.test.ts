import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { close, discardTarget, openTarget, placeTarget, writeAt } from '../../packages/core/src/device.js'
import { createTemporary, placeTemporary, temporaryName } from '../../packages/core/src/temp-target.js'

function dir(t: { teardown(fn: () => void): void }): string {
  const d = mkdtempSync(join(tmpdir(), 'blockpipe-temp-'))
  t.teardown(() => rmSync(d, { recursive: true, force: true }))
  return d
}

void t.test('a created target is written under a temporary name, then linked into place', (t) => {
  const d = dir(t)
  const path = join(d, 'new.img')
  t.match(temporaryName(path), new RegExp(`^${d}/\\.new\\.img\\.blockpipe-[A-Za-z0-9]{6}$`))
  const target = openTarget(path, { create: true })
  t.equal(target.existed, false)
  t.equal(target.path, path)
  writeAt(target, Buffer.from('image'), 0)
  t.notOk(existsSync(path), 'nothing at the name before it is placed')
  placeTarget(target)
  close(target)
  t.same(readdirSync(d), ['new.img'])
  // An existing target has no temporary name: placing and discarding do nothing.
  const again = openTarget(path, { create: true })
  t.equal(again.temporary, undefined)
  placeTarget(again)
  discardTarget(again)
  close(again)
  t.ok(existsSync(path))
  // A create that does not finish leaves nothing.
  const other = openTarget(join(d, 'other.img'), { create: true })
  discardTarget(other)
  close(other)
  t.same(readdirSync(d), ['new.img'])
  t.end()
})

void t.test('a file that appeared at the name meanwhile is kept, and the apply fails', (t) => {
  const d = dir(t)
  const path = join(d, 'new.img')
  const target = openTarget(path, { create: true })
  writeFileSync(path, 'theirs')
  t.throws(() => placeTarget(target), { code: 'EDEVICE', message: /new\.img appeared while it was being created/ })
  close(target)
  t.same(readdirSync(d), ['new.img'], 'the temporary file is removed')
  // Another failure to link (the temporary file is gone) says so.
  t.throws(() => placeTemporary(join(d, '.gone.blockpipe-xxxxxx'), join(d, 'gone.img')), {
    code: 'EDEVICE',
    message: /gone\.img: cannot give the new image its name: .*; the image was removed/,
  })
  t.end()
})

void t.test('temporary names: a taken one is tried again, a directory that is not there is an error', async (t) => {
  const d = dir(t)
  const path = join(d, 'x.img')
  const { createTemporary: create } = await t.mockImport<typeof import('../../packages/core/src/temp-target.js')>(
    '../../packages/core/src/temp-target.js',
    {
      'node:crypto': {
        // The first name twice, then another.
        randomBytes: (() => {
          let calls = 0
          return (n: number) => Buffer.alloc(n, calls++ < 2 ? 0 : 1)
        })(),
      },
    },
  )
  const first = create(path)
  const second = create(path)
  t.not(first.temporary, second.temporary)
  t.throws(() => createTemporary(join(d, 'missing', 'x.img')), { code: 'EDEVICE', message: /missing\/x\.img/ })
  // A dangling symbolic link at the name is named, not replaced.
  const link = join(d, 'link.img')
  symlinkSync(join(d, 'nowhere'), link)
  t.throws(() => openTarget(link, { create: true }), { message: /dangling symbolic link/ })
})
