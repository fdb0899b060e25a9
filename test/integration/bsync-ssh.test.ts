import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { loopUnavailable, withLoop } from '../lib/loop.js'
import { binDir, sh } from '../lib/run.js'
import { sshdUnavailable, startSshd, type Sshd } from '../lib/sshd.js'
import { K64, changed, put, same } from './bsync-lib.js'

// The pipeline of the man page, through a real sshd on 127.0.0.1:
//   ssh backup bsum IMG | bdiff NEW | ssh backup bpatch IMG
// with gzip on both legs, between files and between loop devices.

const quote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** `ssh ... 'export PATH=...; command'`: every stage of the remote command finds the binaries. */
const remote = (sshd: Sshd, command: string): string =>
  `${sshd.ssh} ${quote(`export PATH=${binDir()}:$PATH; ${command}`)}`

const skip = sshdUnavailable()

void t.test('bsum | bdiff | bpatch through ssh', { skip: skip ?? false }, async (t) => {
  const sshd = await startSshd()
  t.teardown(() => sshd.stop())
  const dir = t.testdir()
  const old = randomBytes(40 * K64 + 1234, 1)
  const neu = changed(changed(Buffer.concat([old, randomBytes(3 * K64, 2)]), 0, 9, 3), 42 * K64, 1, 4)
  neu.fill(0, 20 * K64, 24 * K64)
  const target = put(join(dir, 'target.img'), old)
  const source = put(join(dir, 'source.img'), neu)

  await t.test('with gzip on both legs', async (t) => {
    const r = await sh(
      `${remote(sshd, `bsum -b 64K ${target} | gzip`)} | gunzip | bdiff ${source} | tee ${dir}/delta | gzip |` +
        ` ${remote(sshd, `gunzip | bpatch ${target}`)}`,
    )
    t.equal(r.status, 0, r.stderr)
    t.equal(r.stderr, '')
    t.ok(same(target, neu), 'the target equals the source byte for byte')
    t.ok(readFileSync(join(dir, 'delta')).length < 12 * K64, 'only the changed chunks went over the wire')
  })

  await t.test('as written, again: nothing to do', async (t) => {
    const r = await sh(
      `${remote(sshd, `bsum -b 64K ${target}`)} | bdiff --progress ${source} | ${remote(sshd, `bpatch --progress ${target}`)}`,
    )
    t.equal(r.status, 0, r.stderr)
    t.match(r.stderr, /bdiff: .*, 0 of 44 chunks differ/)
    t.match(r.stderr, /bpatch: .*, 0 B written/)
    t.ok(same(target, neu))
  })

  await t.test('a wrong target is refused at the far end: exit 3 through ssh', async (t) => {
    const sums = join(dir, 'yesterday.sum')
    let r = await sh(`${remote(sshd, `bsum -b 64K ${target}`)} > ${sums}`)
    t.equal(r.status, 0, r.stderr)
    const newer = changed(neu, 5 * K64, 1, 5)
    put(source, newer)
    const meddled = changed(neu, 5 * K64 + 100, 1, 6)
    put(target, meddled)
    r = await sh(`bdiff ${source} < ${sums} | gzip | ${remote(sshd, `gunzip | bpatch ${target}`)}`)
    t.equal(r.status, 3)
    t.match(r.stderr, `bpatch: conflict at byte ${5 * K64} (chunk 5)`)
    t.ok(same(target, meddled), 'untouched')
  })
})

const noLoop = skip ?? loopUnavailable()

void t.test('through ssh between two loop devices', { skip: noLoop ?? false }, async (t) => {
  const sshd = await startSshd()
  t.teardown(() => sshd.stop())
  const dir = t.testdir()
  const size = 64 * K64 + 3 * 512
  const old = randomBytes(size, 7)
  const neu = changed(changed(old, 0, 1, 8), size - 1, 1, 9)
  neu.fill(0, 10 * K64, 30 * K64)
  put(join(dir, 'target.img'), old)
  put(join(dir, 'source.img'), neu)
  await withLoop(join(dir, 'source.img'), (src) =>
    withLoop(join(dir, 'target.img'), async (tgt) => {
      const r = await sh(
        `${remote(sshd, `bsum -b 64K ${tgt} | gzip`)} | gunzip | bdiff ${src} | gzip | ${remote(sshd, `gunzip | bpatch ${tgt}`)}`,
      )
      t.equal(r.status, 0, r.stderr)
      t.equal(r.stderr, '')
      t.ok(same(tgt, neu), 'the target device equals the source device')
    }),
  )
  t.ok(same(join(dir, 'target.img'), neu), 'and so does its backing file')
})
