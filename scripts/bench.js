#!/usr/bin/env node
// npm run bench [-- --size 2G --runs 3 --only NAME]: blockpipe against a
// baseline on the same data, run side by side (alternating, median of the
// runs), printed as ratios. The machine may be shared and its speed varies:
// only the ratios of one run mean something. Record results in BENCHMARKS.md
// with the command line.
import { spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const units = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 }
const sizeText = arg('size', '1G')
const SIZE = Number.parseInt(sizeText, 10) * (units[sizeText.slice(-1).toUpperCase()] ?? 1)
const RUNS = Number(arg('runs', '3'))
const ONLY = arg('only', '')
const dir = mkdtempSync(join(arg('dir', tmpdir()), 'blockpipe-bench-'))

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
const bins = ['era-copy', 'era-apply', 'bsum', 'bdiff', 'bpatch']
const withBins = (script) =>
  script.replaceAll(
    new RegExp(`\\b(${bins.join('|')})\\b`, 'g'),
    (m) => `node ${join(root, 'packages', m, 'dist', 'cli.js')}`,
  )

function time(script) {
  const start = process.hrtime.bigint()
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', withBins(script)], {
    cwd: dir,
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  if (r.status !== 0) throw new Error(`bench: failed: ${script}\n${r.stderr}`)
  return Number(process.hrtime.bigint() - start) / 1e9
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

function writeImage(path, seed) {
  const fd = openSync(path, 'w')
  const piece = randomBytes(4 * 2 ** 20)
  for (let at = 0; at < SIZE; at += piece.length) {
    piece.writeUInt32LE(seed + at, 0)
    // A quarter of a disk is typically zeros.
    writeSync(
      fd,
      at % (16 * 2 ** 20) < 4 * 2 ** 20 ? Buffer.alloc(piece.length) : piece,
      0,
      Math.min(piece.length, SIZE - at),
      at,
    )
  }
  closeSync(fd)
}

/** Changes `fraction` of the image's 1 MiB pieces. */
function change(path, fraction, seed) {
  const fd = openSync(path, 'r+')
  const n = Math.round((SIZE / 2 ** 20) * fraction)
  for (let i = 0; i < n; i++) {
    const at = Math.floor(((i * 7919 + seed) % (SIZE / 2 ** 20)) * 2 ** 20)
    writeSync(fd, randomBytes(2 ** 20), 0, 2 ** 20, at)
  }
  closeSync(fd)
}

// Each case: what blockpipe does, and the baseline it is compared with.
const cases = [
  {
    name: 'full copy',
    ours: 'era-copy --all -b 64K src.img | era-apply --force dst-ours.img',
    base: 'cat src.img > dst-base.img',
    baseName: 'cat',
    before: 'rm -f dst-ours.img dst-base.img',
  },
  {
    name: 'digest',
    ours: 'bsum --seed 0 src.img > /dev/null',
    base: have('xxhsum') ? 'xxhsum -H64 src.img > /dev/null' : 'cat src.img > /dev/null',
    baseName: have('xxhsum') ? 'xxhsum -H64' : 'cat',
  },
  {
    name: 'sync, 1 % changed',
    ours: 'bsum tgt-ours.img | bdiff src.img | bpatch tgt-ours.img',
    base: 'cat src.img > tgt-base.img',
    baseName: 'cat of the whole image',
    before: 'cp --sparse=always old.img tgt-ours.img && cp --sparse=always old.img tgt-base.img',
  },
]
if (have('rsync')) {
  cases.push({
    name: 'sync, 1 % changed, vs rsync',
    ours: 'bsum tgt-ours.img | bdiff src.img | bpatch tgt-ours.img',
    base: 'rsync --inplace --no-whole-file src.img tgt-base.img',
    baseName: 'rsync --inplace --no-whole-file',
    before: 'cp --sparse=always old.img tgt-ours.img && cp --sparse=always old.img tgt-base.img',
  })
}

try {
  console.log(`bench: ${SIZE / 2 ** 30} GiB image, ${RUNS} runs each, median; node ${process.version}`)
  writeImage(join(dir, 'old.img'), 1)
  spawnSync('cp', [join(dir, 'old.img'), join(dir, 'src.img')])
  change(join(dir, 'src.img'), 0.01, 3)
  time('cat old.img src.img > /dev/null') // warm the page cache
  const rows = []
  for (const c of cases) {
    if (ONLY && !c.name.includes(ONLY)) continue
    const ours = []
    const base = []
    for (let i = 0; i < RUNS; i++) {
      if (c.before) time(c.before)
      ours.push(time(c.ours))
      base.push(time(c.base))
    }
    const o = median(ours)
    const b = median(base)
    rows.push(
      `| ${c.name} | ${o.toFixed(2)} s | ${c.baseName}: ${b.toFixed(2)} s | ${(o / b).toFixed(2)} | ${(SIZE / 2 ** 30 / o).toFixed(2)} GiB/s |`,
    )
  }
  console.log('| case | blockpipe | baseline | ratio (ours / baseline) | blockpipe throughput |')
  console.log('| --- | --- | --- | --- | --- |')
  for (const r of rows) console.log(r)
} finally {
  rmSync(dir, { recursive: true, force: true })
}
