#!/usr/bin/env node
// npm run demo: a nightly backup on generated data, end to end.
//   1. a full copy:    era-copy --all | gzip | gunzip | era-apply
//   2. an incremental: era_invalidate | era-copy | gzip | gunzip | era-apply,
//      with real dm-era metadata made by era_restore (or, where
//      thin-provisioning-tools is not installed, a bundled era_invalidate output)
//   3. a digest sync:  bsum | bdiff | gzip | gunzip | bpatch
// `node scripts/demo.js --bin DIR` runs the programs installed in DIR instead.
// Each step is verified byte for byte and shows the bytes sent against the
// size of the image.
// Coverage: not counted. The README's demo, run whole by test/package.test.ts,
// which checks its result; its other branches are for a host without
// thin-provisioning-tools and for a failed step.
/* c8 ignore start */
import { execFileSync, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync, closeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
// --bin DIR: run the programs installed in DIR (an installed package) instead of the workspaces' builds.
const at = process.argv.indexOf('--bin')
const installed = at < 0 ? undefined : process.argv[at + 1]
if (at >= 0 && !installed) {
  console.error('demo: --bin needs a directory, e.g. --bin /usr/local/bin')
  process.exit(2)
}
const bin = (name) =>
  installed === undefined
    ? `${JSON.stringify(process.execPath)} ${JSON.stringify(join(root, 'packages', name, 'dist', 'cli.js'))}`
    : JSON.stringify(join(installed, name))
const dir = mkdtempSync(join(tmpdir(), 'blockpipe-demo-'))
const BLOCK_SECTORS = 128
const BLOCK = BLOCK_SECTORS * 512
const BLOCKS = 1024 // 64 MiB
const SIZE = BLOCKS * BLOCK
const image = join(dir, 'vm.img')
const backup = join(dir, 'backup.img')
const wire = join(dir, 'wire.gz')

const mib = (n) => `${(n / 1024 / 1024).toFixed(2)} MiB`

function sh(script) {
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', script], { cwd: dir, stdio: ['ignore', 'inherit', 'inherit'] })
  if (r.status !== 0) {
    console.error(`demo: this step failed (exit ${r.status}):\n  ${script}`)
    process.exit(1)
  }
}

function same(a, b) {
  return spawnSync('cmp', ['-s', a, b]).status === 0
}

function step(title, script) {
  console.log(`\n== ${title}\n$ ${script.replaceAll(dir + '/', '')}`)
  sh(script.replaceAll(/\b(era-copy|era-apply|bsum|bdiff|bpatch)\b(?![./])/g, (m) => bin(m)))
  const sent = statSync(wire).size
  const ok = same(image, backup)
  console.log(
    `   ${ok ? 'verified: the backup equals the image byte for byte' : 'MISMATCH: the backup differs from the image'}`,
  )
  console.log(`   sent ${mib(sent)} (gzip) for a ${mib(SIZE)} image: ${((sent / SIZE) * 100).toFixed(2)} %`)
  if (!ok) process.exit(1)
}

/** Writes random data over the given era blocks of the image (and leaves some zeros). */
function scribble(blocks) {
  const fd = openSync(image, 'r+')
  for (const b of blocks) writeSync(fd, randomBytes(BLOCK / 2), 0, BLOCK / 2, b * BLOCK + 4096)
  closeSync(fd)
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

try {
  console.log(`blockpipe demo in ${dir}`)
  // A 64 MiB "VM disk": random data with a zeroed quarter, as disks are.
  const data = randomBytes(SIZE)
  data.fill(0, SIZE / 2, (SIZE * 3) / 4)
  writeFileSync(image, data)

  step(
    'night 1: a full copy',
    `era-copy --all -b ${BLOCK_SECTORS} vm.img | gzip | tee wire.gz | gunzip | era-apply backup.img`,
  )

  // The VM writes during the day; dm-era records the era of each block written.
  const written = [0, 3, 10, 11, 12, 400, 401, 700, BLOCKS - 1]
  scribble(written)
  let xml = join(dir, 'era_invalidate.xml')
  if (have('era_restore') && have('era_invalidate')) {
    const eras = Array.from({ length: BLOCKS }, (_, b) => (written.includes(b) ? 7 : b % 5))
    let dump = `<superblock uuid="" block_size="${BLOCK_SECTORS}" nr_blocks="${BLOCKS}" current_era="8">\n  <era_array>\n`
    eras.forEach((era, b) => (dump += `    <era block="${b}" era="${era}"/>\n`))
    dump += '  </era_array>\n</superblock>\n'
    writeFileSync(join(dir, 'era-dump.xml'), dump)
    execFileSync('truncate', ['-s', '4M', join(dir, 'meta.bin')])
    execFileSync('era_restore', ['-i', join(dir, 'era-dump.xml'), '-o', join(dir, 'meta.bin')])
    console.log('\nera metadata made with the real era_restore; era_invalidate lists the blocks written since era 7:')
    step(
      'night 2: an incremental from dm-era metadata',
      `era_invalidate --written-since 7 meta.bin | tee era_invalidate.xml | era-copy -b ${BLOCK_SECTORS} vm.img | gzip | tee wire.gz | gunzip | era-apply backup.img`,
    )
  } else {
    xml = join(root, 'scripts', 'demo-era-invalidate.xml')
    console.log('\nthin-provisioning-tools is not installed: using the bundled era_invalidate output', xml)
    step(
      'night 2: an incremental from a bundled era_invalidate output',
      `era-copy -b ${BLOCK_SECTORS} vm.img < ${xml} | gzip | tee wire.gz | gunzip | era-apply backup.img`,
    )
  }
  console.log(
    readFileSync(xml, 'utf8')
      .trim()
      .split('\n')
      .map((l) => `   | ${l}`)
      .join('\n'),
  )

  // No change tracking at all: digests of the backup against the image.
  scribble([5, 6, 900])
  step(
    'night 3: a digest sync, no change tracking',
    'bsum backup.img | bdiff vm.img | gzip | tee wire.gz | gunzip | bpatch backup.img',
  )
  console.log('\ndemo: all steps verified')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
/* c8 ignore stop */
