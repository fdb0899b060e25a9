import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { DMERA, prepareGuest, runDetached } from './dm-era/guest.js'
import { parseStream } from './integration/bsync-lib.js'
import { sh } from './lib/run.js'
import { sameFiles } from './safety/lib.js'

// A real dm-era device end to end. test/dm-era/scenario.sh boots Debian's
// kernel under qemu (TCG) once per "night": each night writes blocks through
// a real dm-era device and runs the real safe incremental procedure
// (take_metadata_snap, read the era, era_invalidate --metadata-snapshot
// --written-since PREV, drop_metadata_snap), and leaves the device image after
// the night (state-N.img) and era_invalidate's answer (since-N.xml). Here, on
// the host, era-copy and era-apply keep a backup image: a full copy after
// night 1, then each night's blocks; after every step the backup must equal
// the device byte for byte.
// Night 1's boot of the 128-sector run also makes an old-style LVM
// (dm-snapshot) snapshot (test/dm-era/dm-snapshot.sh): era-copy
// --snapshot-cow reads its real exception store.
// Skips, saying why, when the guest cannot be prepared (no qemu and no way to
// install it, no network to download the kernel once); CI installs qemu.

/** A subtest's `t` (the parameter of a test callback). */
type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

const skip = (await prepareGuest()) ?? false

interface Scenario {
  work: string
  block: number
  nights: number
  /** The whole scenario.sh output, for failure messages. */
  log: string
}

/** Runs scenario.sh with `block` sectors; kills it (and its qemu) if the test ends first. */
async function scenario(t: Tap, block: number, snaptest: boolean): Promise<Scenario | undefined> {
  const work = mkdtempSync(join(tmpdir(), `blockpipe-dmera-${block}-`))
  const run = runDetached(join(DMERA, 'scenario.sh'), [work, String(block)], work, {
    DMERA_SNAPTEST: snaptest ? '1' : '0',
    DMERA_DMSNAP: snaptest ? '1' : '0',
  })
  t.teardown(() => {
    run.kill()
    rmSync(work, { recursive: true, force: true })
  })
  const r = await run.done
  const log = `${r.stdout.toString()}${r.stderr}`
  if (r.status === 3) {
    t.plan(0, `scenario.sh cannot prepare the guest: ${r.stderr.trim().split('\n').slice(-2).join(' / ')}`)
    return undefined
  }
  t.equal(r.status, 0, 'scenario.sh: the guest nights ran and their XML checks passed', { log: log.slice(-4000) })
  if (r.status !== 0) return undefined
  t.comment(log.match(/^scenario\.sh: boots \(s\).*$/m)?.[0] ?? 'no timings')
  const env = Object.fromEntries(
    readFileSync(join(work, 'scenario.env'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => l.split('=')),
  ) as Record<string, string>
  t.equal(Number(env.BLOCK_SECTORS), block)
  return { work, block, nights: Number(env.NIGHTS), log }
}

const prevOf = (s: Scenario, n: number): string => readFileSync(join(s.work, `prev-${n}`), 'utf8').trim()

/** `extras`: also the checks that do not depend on the block size (run once). */
async function backupChain(t: Tap, s: Scenario, extras: boolean): Promise<void> {
  const { work, block } = s
  const w = (f: string): string => JSON.stringify(join(work, f))
  t.ok(s.nights >= 2, 'at least one incremental night')
  t.equal(prevOf(s, 1), '0', "night 1's list is --written-since 0: every block")

  // Night 1: the first backup is a full copy.
  let r = await sh(`era-copy --all -b ${block} ${w('state-1.img')} | era-apply ${w('backup.img')}`)
  t.equal(r.status, 0, `full copy: ${r.stderr}`)
  sameFiles(
    t,
    join(work, 'backup.img'),
    join(work, 'state-1.img'),
    'after the full copy, backup = device after night 1',
  )
  copyFileSync(join(work, 'backup.img'), join(work, 'night-1.img'))

  // Night 1's list (--written-since 0) names every block: era-copy marks that
  // stream full, so it can start a backup too. A later night's cannot.
  if (extras) {
    r = await sh(
      `era-copy -b ${block} --written-since 0 ${w('state-1.img')} < ${w('since-1.xml')} | era-apply ${w('b0.img')}`,
    )
    t.equal(r.status, 0, `night 1's list onto a new image: ${r.stderr}`)
    sameFiles(t, join(work, 'b0.img'), join(work, 'state-1.img'), "night 1's list gives the device too")
    rmSync(join(work, 'b0.img'))
    r = await sh(`era-copy -b ${block} ${w('state-2.img')} < ${w('since-2.xml')} | era-apply ${w('b0.img')}`)
    t.equal(r.status, 3, "night 2's blocks alone onto a new image are refused (exit 3)")
    t.match(r.stderr, /not a full copy/)
  }

  // Nights 2..N: only the blocks era_invalidate listed, read from the device as it was that night.
  for (let n = 2; n <= s.nights; n++) {
    copyFileSync(join(work, 'backup.img'), join(work, 'before.img'))
    r = await sh(
      `era-copy -b ${block} --written-since ${prevOf(s, n)} ${w(`state-${n}.img`)} < ${w(`since-${n}.xml`)}` +
        ` | era-apply --spool ${w('')} --undo ${w(`undo-${n}`)} ${w('backup.img')}`,
    )
    t.equal(r.status, 0, `night ${n}: incremental since era ${prevOf(s, n)}: ${r.stderr}`)
    sameFiles(t, join(work, 'backup.img'), join(work, `state-${n}.img`), `after night ${n}, backup = device`)
    // The undo file of the night is the reverse increment.
    copyFileSync(join(work, 'backup.img'), join(work, 'rolled.img'))
    r = await sh(`era-apply ${w('rolled.img')} < ${w(`undo-${n}`)}`)
    t.equal(r.status, 0, `night ${n}: roll back: ${r.stderr}`)
    sameFiles(t, join(work, 'rolled.img'), join(work, 'before.img'), `night ${n}'s undo gives the backup before it`)
  }

  // The comparison can fail: night N's blocks alone, onto night 1's state, miss night 2's.
  const last = s.nights
  r = await sh(
    `era-copy -b ${block} ${w(`state-${last}.img`)} < ${w(`since-${last}.xml`)} | era-apply ${w('night-1.img')}`,
  )
  t.equal(r.status, 0, r.stderr)
  t.notOk(
    readFileSync(join(work, 'night-1.img')).equals(readFileSync(join(work, `state-${last}.img`))),
    `skipping night 2 does not give the device after night ${last}`,
  )
}

/** The dm-snapshot of night 1: the backup taken from the snapshot is brought up to the origin. */
async function dmSnapshot(t: Tap, s: Scenario): Promise<void> {
  const dir = join(s.work, 'dm-snapshot')
  const f = (name: string): string => JSON.stringify(join(dir, name))
  t.notOk(
    readFileSync(join(dir, 'backup.img')).equals(readFileSync(join(dir, 'origin.img'))),
    'the origin changed after the snapshot',
  )
  const r = await sh(
    `era-copy --snapshot-cow ${f('cow.img')} ${f('origin.img')} > ${f('incr.bps')} && era-apply ${f('backup.img')} < ${f('incr.bps')}`,
  )
  t.equal(r.status, 0, `era-copy --snapshot-cow | era-apply: ${r.stderr}`)
  sameFiles(t, join(dir, 'backup.img'), join(dir, 'origin.img'), 'the backup of the snapshot = the origin now')
  const { header, records } = await parseStream(readFileSync(join(dir, 'incr.bps')))
  t.match(header.metadata, { input: 'snapshot_cow', exceptions: '303' }, 'every exception of the two metadata areas')
  t.equal(
    records.reduce((n, r) => n + r.length, 0),
    302 * 4096 + 3072,
    'the 303 changed chunks (the last one partial), nothing else',
  )
}

for (const [block, snaptest] of [
  [128, true],
  [136, false],
] as const) {
  void t.test(
    `dm-era, ${block}-sector blocks: era-copy | era-apply keeps a backup equal to the device`,
    { skip },
    async (t) => {
      const s = await scenario(t, block, snaptest)
      if (s === undefined) return
      await backupChain(t, s, snaptest)
      if (snaptest) {
        await dmSnapshot(t, s)
        // era-backup.sh warns that thin-provisioning-tools before 1.0 read the live
        // metadata: the guest's era_invalidate (the host's) must behave as its version says.
        const version = (await sh('era_invalidate --version')).stdout.toString().trim()
        const old = Number(version.split('.')[0]) < 1
        t.match(
          s.log,
          old ? /IGNORES --metadata-snapshot/ : /honours --metadata-snapshot/,
          `era_invalidate ${version} ${old ? 'ignores' : 'honours'} --metadata-snapshot, as its version says`,
        )
      }
    },
  )
}
