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
import { GUEST_EXEC, prepareGuest, startGuest } from '../dm-era/guest.js'
import { writeImage } from '../lib/data.js'
import { ROOT, binDir, runCommand, sh, type RunResult } from '../lib/run.js'
import { sshdUnavailable, startSshd } from '../lib/sshd.js'
import { sameFiles } from '../safety/lib.js'

// examples/era-backup.sh against a real dm-era device, night after night.
//
// The choice: the device side is real, not a stand-in. A qemu guest
// (test/dm-era/guest.sh) boots Debian's kernel with a dm-era device era0 over
// two virtio disks and stays up running guest-agent.sh; the script runs here,
// unchanged, with DMSETUP and ERA_INVALIDATE set to test/dm-era/guest-exec,
// which runs `dmsetup ...` / `era_invalidate ...` inside the guest: the
// messages, the status line, the eras and the block lists all come from the
// kernel and the real era_invalidate on the real metadata disk. The device
// era-copy reads (-d) is origin.img, the file behind the guest's origin disk:
// dm-era passes data through unchanged and the guest writes with fsync, so it
// holds what /dev/mapper/era0 holds (checked at the end). The receiving side
// is era-apply behind a real sshd on 127.0.0.1 (test/lib/sshd.ts).
// Metadata files with era_restore and a dmsetup stand-in were the other way:
// they would test the script against our idea of dm-era instead of dm-era.

const SCRIPT = join(ROOT, 'examples', 'era-backup.sh')
const BLOCK = 136 // sectors: not a power of two, and the device's last block is partial
const BLOCK_BYTES = BLOCK * 512
const SIZE = 16 << 20

void t.test('usage', async (t) => {
  let r = await runCommand('bash', [SCRIPT, '-h'])
  t.equal(r.status, 0)
  t.match(r.stdout.toString(), /^Usage: era-backup\.sh/)
  r = await runCommand('bash', [SCRIPT, '-n', 'era0', '-r', 'host'])
  t.equal(r.status, 2, 'no -i')
  t.match(r.stderr, /no image path/)
  r = await runCommand('bash', [SCRIPT, '-n', 'era0', '-r', 'host', '-i', '/x', '-b', '12x'])
  t.equal(r.status, 2, 'a bad -b')
  r = await runCommand('bash', [SCRIPT, '-n', 'era0', '-r', 'host', '-i', '/x'], {
    env: { DMSETUP: 'no-such-dmsetup' },
  })
  t.equal(r.status, 2, 'a missing tool')
  t.match(r.stderr, /no-such-dmsetup not found/)
})

const skip = sshdUnavailable() ?? (await prepareGuest()) ?? false

void t.test('nightly against a real dm-era device (qemu guest)', { skip }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blockpipe-era-backup-'))
  const work = join(dir, 'guest')
  mkdirSync(work)
  mkdirSync(join(dir, 'remote'))
  const origin = join(work, 'origin.img')
  writeImage(origin, SIZE, 5, [[4 << 20, 2 << 20]])
  writeFileSync(join(work, 'meta.img'), Buffer.alloc(4 << 20))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const g = await startGuest(work) // kills its qemu itself if the boot fails
  t.teardown(() => g.stop())
  const sshd = await startSshd()
  t.teardown(() => sshd.stop())

  const gsh = async (script: string): Promise<string> => {
    const r = await g.exec('sh', '-c', script)
    if (r.status !== 0) throw new Error(`guest: ${script}: exit ${r.status}: ${r.stderr}`)
    return r.stdout.toString().trim()
  }
  const meta = await gsh('echo $META_DEV')
  await gsh(`dmsetup create era0 --table "0 $(blockdev --getsz $ORIGIN_DEV) era $META_DEV $ORIGIN_DEV ${BLOCK}"`)
  /** Writes `count` random sectors at `sector` through the dm-era device. */
  const write = (sector: number, count: number): Promise<string> =>
    gsh(`dd if=/dev/urandom of=/dev/mapper/era0 bs=512 seek=${sector} count=${count} conv=notrunc,fsync 2>/dev/null`)
  const status = async (): Promise<{ era: number; held: string }> => {
    const f = (await gsh('dmsetup status era0')).split(/\s+/)
    return { era: Number(f[5]), held: f[6] ?? '?' }
  }

  const img = join(dir, 'remote', 'vm.img')
  const undo = `${img}.undo`
  const state = join(dir, 'state', 'era0.era')
  const words = sshd.ssh.split(' ')
  const env = {
    ...g.env,
    DMSETUP: `${GUEST_EXEC} dmsetup`,
    ERA_INVALIDATE: `${GUEST_EXEC} era_invalidate`,
    SSH: words.slice(0, -1).join(' '),
    REMOTE_ERA_APPLY: join(binDir(), 'era-apply'),
    PATH: `${binDir()}:${process.env.PATH ?? ''}`,
  }
  const argv = (args: string[]): string[] => [
    SCRIPT,
    ...['-n', 'era0', '-d', origin, '-m', meta, '-r', words[words.length - 1] ?? '', '-i', img, '-s', state],
    ...args,
  ]
  const run = (args: string[] = [], extra: Record<string, string> = {}): Promise<RunResult> =>
    runCommand('bash', argv(args), { env: { ...env, ...extra } })
  const script = (name: string, body: string): string => {
    const path = join(dir, name)
    writeFileSync(path, `#!/bin/sh\n${body}\n`)
    chmodSync(path, 0o755)
    return path
  }
  const readState = (): number => Number(readFileSync(state, 'utf8'))
  const undoFiles = (): string[] => (existsSync(undo) ? readdirSync(undo).sort() : [])
  const version = (await runCommand(GUEST_EXEC, ['era_invalidate', '--version'], { env: g.env })).stdout
    .toString()
    .trim()
  const oldTools = Number(version.split('.')[0]) < 1

  // Night 1: no state file: a full copy.
  await write(5, 3)
  let r = await run()
  t.equal(r.status, 0, `night 1: ${r.stderr}`)
  t.match(r.stdout.toString(), /copying the whole device/)
  sameFiles(t, img, origin, 'night 1: backup = device')
  let s = await status()
  t.equal(s.held, '-', 'no metadata snapshot left held')
  t.equal(readState(), s.era, 'the state holds the era read right after take_metadata_snap')
  t.same(undoFiles(), [], 'a full copy makes no undo file')
  if (oldTools)
    t.match(r.stderr, /era_invalidate 0\.[0-9.]+ .*ignores --metadata-snapshot and reads.*the live metadata/s)
  else t.notMatch(r.stderr, /ignores --metadata-snapshot/)

  // Night 2: a few writes: exactly their blocks are copied.
  const before2 = join(dir, 'before-2.img')
  copyFileSync(img, before2)
  const prev2 = readState()
  await write(3 * BLOCK, 8) // block 3
  await write(10 * BLOCK + 100, 2 * BLOCK) // blocks 10-12
  await write(SIZE / 512 - 1, 1) // the last, partial block (240)
  r = await run()
  t.equal(r.status, 0, `night 2: ${r.stderr}`)
  t.notMatch(r.stderr, /ignores --metadata-snapshot/, 'the tools-version warning is given once (cron mail)')
  t.match(r.stdout.toString(), new RegExp(`blocks written since era ${prev2}: 5 of ${BLOCK_BYTES} bytes`))
  sameFiles(t, img, origin, 'night 2: backup = device')
  s = await status()
  t.equal(s.held, '-')
  t.equal(readState(), s.era)
  t.ok(readState() > prev2, 'the era moved on')
  t.equal(undoFiles().length, 1, 'night 2: one undo file')
  const rolled = join(dir, 'rolled.img')
  copyFileSync(img, rolled)
  const u = await sh(`era-apply ${JSON.stringify(rolled)} < ${JSON.stringify(join(undo, undoFiles()[0] ?? ''))}`)
  t.equal(u.status, 0, u.stderr)
  sameFiles(t, rolled, before2, "night 2's undo file gives the backup of night 1")

  // Night 3: block 30 is written during the copy, after the snapshot: not in
  // tonight's list, so the backup misses it tonight... And then a checkpoint
  // moves the era on, as anything else might: a script that read the era
  // now rather than right after take_metadata_snap would record an era past
  // block 30's and never copy it.
  await write(20 * BLOCK, BLOCK)
  const during = script(
    'era-copy-during',
    [
      `${GUEST_EXEC} dd if=/dev/urandom of=/dev/mapper/era0 bs=512 seek=${30 * BLOCK} count=8 conv=notrunc,fsync 2>/dev/null || exit 1`,
      `${GUEST_EXEC} dmsetup message era0 0 checkpoint || exit 1`,
      'exec era-copy "$@"',
    ].join('\n'),
  )
  r = await run([], { ERA_COPY: during })
  t.equal(r.status, 0, `night 3: ${r.stderr}`)
  t.match(r.stdout.toString(), /: 1 of /, 'one block listed (20)')
  const a = readFileSync(img)
  const b = readFileSync(origin)
  const at = 30 * BLOCK_BYTES
  t.ok(
    a.subarray(0, at).equals(b.subarray(0, at)) && a.subarray(at + BLOCK_BYTES).equals(b.subarray(at + BLOCK_BYTES)),
    'night 3: backup = device outside block 30',
  )
  t.notOk(
    a.subarray(at, at + BLOCK_BYTES).equals(b.subarray(at, at + BLOCK_BYTES)),
    'block 30, written during the copy, is not in it',
  )
  t.ok((await status()).era > readState(), 'the era moved on past the one saved (the checkpoint)')

  // Night 4: ...and has it the next night. era_invalidate 1.x: no warning.
  const v1 = script(
    'era-invalidate-1.0',
    `[ "$1" = --version ] && { echo 1.0.4; exit 0; }\nexec ${GUEST_EXEC} era_invalidate "$@"`,
  )
  r = await run([], { ERA_INVALIDATE: v1 })
  t.equal(r.status, 0, `night 4: ${r.stderr}`)
  t.match(r.stdout.toString(), /: 1 of /, 'one block listed (30)')
  sameFiles(t, img, origin, 'night 4: backup = device, block 30 included')
  t.notMatch(r.stderr, /warning/, 'no warning with era_invalidate 1.0.4')

  // Failures: each leaves the state alone and no snapshot held; block 40,
  // written now, is copied by the first run that succeeds.
  await write(40 * BLOCK, 16)
  const kept = readState()
  const failing = script(
    'era-invalidate-fails',
    `[ "$1" = --version ] && exec ${GUEST_EXEC} era_invalidate --version\necho "era_invalidate: simulated failure" >&2\nexit 1`,
  )
  r = await run([], { ERA_INVALIDATE: failing })
  t.equal(r.status, 1, 'era_invalidate fails while the snapshot is held: exit 1')
  t.match(r.stderr, /era_invalidate --metadata-snapshot --written-since \d+ .* failed/)
  t.equal((await status()).held, '-', 'the trap dropped the snapshot')
  t.equal(readState(), kept, 'the state is unchanged')

  r = await run(['-i', join(dir, 'remote', 'missing.img')])
  t.equal(r.status, 3, `an incremental for a missing image: the backup host refuses it: exit 3`)
  t.match(r.stderr, /refused the stream/)
  t.notOk(existsSync(join(dir, 'remote', 'missing.img')), 'no image was created')
  t.equal((await status()).held, '-')
  t.equal(readState(), kept)

  r = await run([], { SSH: 'ssh -p 1 -o BatchMode=yes -o ConnectTimeout=5' })
  t.equal(r.status, 1, 'the backup host cannot be reached: exit 1')
  t.match(r.stderr, /255: ssh itself failed/)
  t.equal(readState(), kept)

  writeFileSync(state, '1000\n')
  r = await run()
  t.equal(r.status, 1, 'a state from the future (metadata recreated?): exit 1')
  t.match(r.stderr, /not after era 1000 of the state file/)
  t.equal((await status()).held, '-')
  t.equal(readFileSync(state, 'utf8'), '1000\n', 'the state is unchanged')
  writeFileSync(state, `${kept}\n`)

  r = await run(['-b', '128'])
  t.equal(r.status, 2, 'a wrong block size: exit 2')
  t.match(r.stderr, /era blocks are 136 sectors/)

  r = await runCommand('flock', [`${state}.lock`, 'bash', ...argv([])], { env })
  t.equal(r.status, 4, 'another run holds the lock: exit 4')
  t.equal(readState(), kept)
  t.notOk(readFileSync(img).equals(readFileSync(origin)), 'block 40 is not in the backup yet')

  // A snapshot left held by a killed run is dropped, and the run goes through.
  await gsh('dmsetup message era0 0 take_metadata_snap')
  t.not((await status()).held, '-', 'a snapshot is held')
  r = await run()
  t.equal(r.status, 0, r.stderr)
  t.match(r.stderr, /holds a metadata snapshot .* dropping it/)
  sameFiles(t, img, origin, 'after the failures: backup = device, block 40 included')
  s = await status()
  t.equal(s.held, '-')
  t.equal(readState(), s.era)

  // -F: a full copy again, onto the existing image.
  await write(200 * BLOCK, 8)
  r = await run(['-F'])
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout.toString(), /copying the whole device/)
  sameFiles(t, img, origin, '-F: backup = device')

  // What era-copy read (origin.img) is what the kernel's dm-era device holds.
  const inGuest = (await gsh('sha256sum /dev/mapper/era0')).split(' ')[0]
  const onHost = (await sh(`sha256sum ${JSON.stringify(origin)}`)).stdout.toString().split(' ')[0]
  t.equal(inGuest, onHost, 'origin.img = /dev/mapper/era0 in the guest')
})
