#!/usr/bin/env node
// npm run bench [-- --size 512M --runs 3 --only NAME --dir DIR --sparse 1T --sparse-dir DIR]
//
// blockpipe against the tools a user would pick instead, on the same data, run
// side by side: each run takes every command of a case in turn (interleaved),
// and the median of the runs is printed, with ratios to each baseline. The
// machine may be shared and its speed varies: only the ratios of one run mean
// something. Record results in BENCHMARKS.md with the command line.
//
// Baselines: blocksync-fast when BLOCKSYNC_FAST=PATH names its binary (build
// it outside this repository), `xxhsum -H64`, `rsync --inplace
// --no-whole-file`, `cat`. Each process of a pipeline is run under GNU time:
// CPU is the sum over the processes, RSS the peak of each. Every sync is
// checked byte for byte against the new image.
import { spawnSync } from 'node:child_process'
import { randomFillSync } from 'node:crypto'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 ? process.argv[i + 1] : fallback
}
const units = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 }
const bytes = (text) => Number.parseInt(text, 10) * (units[text.slice(-1).toUpperCase()] ?? 1)
const SIZE = bytes(arg('size', '512M'))
const RUNS = Number(arg('runs', '3'))
const ONLY = arg('only', '')
const SPARSE = arg('sparse', '')
// Holes of a file in tmpfs (/dev/shm) read without a page of memory each:
// a 1 TiB sparse file there is read in minutes, not the better part of an hour.
const SPARSE_DIR = arg('sparse-dir', '')
const BSF = process.env.BLOCKSYNC_FAST
const dir = mkdtempSync(join(arg('dir', tmpdir()), 'blockpipe-bench-'))
const STATS = join(dir, 'stats')

const have = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
if (!have('/usr/bin/time')) throw new Error('bench: needs GNU time (/usr/bin/time; Debian: apt-get install time)')
const bins = ['era-copy', 'era-apply', 'bsum', 'bdiff', 'bpatch']
const withBins = (script) =>
  script.replaceAll(
    new RegExp(`\\b(${bins.join('|')})\\b(?![.\\w])`, 'g'),
    (m) => `node ${join(root, 'packages', m, 'dist', 'cli.js')}`,
  )
// T runs one process under GNU time, appending "wall user sys maxrss-KiB" to STATS.
const prelude = `T() { /usr/bin/time -f '%e %U %S %M' -a -o ${STATS} "$@"; }; BSF=${BSF ?? 'false'}\n`

function sh(script, capture = false, what = '') {
  const r = spawnSync('bash', ['-o', 'pipefail', '-c', prelude + withBins(script)], {
    cwd: dir,
    stdio: ['ignore', capture ? 'pipe' : 'ignore', 'pipe'],
    maxBuffer: 1 << 20,
  })
  if (r.status !== 0) throw new Error(`bench: ${what} failed (${r.status}): ${script}\n${r.stderr}`)
  return capture ? r.stdout.toString().trim() : ''
}

/** One timed run: wall time of the whole script, CPU and peak RSS of each process run under T. */
function time(script) {
  rmSync(STATS, { force: true })
  const start = process.hrtime.bigint()
  sh(script)
  const wall = Number(process.hrtime.bigint() - start) / 1e9
  const procs = readFileSync(STATS, 'utf8')
    .trim()
    .split('\n')
    .filter((l) => /^[\d.]+ [\d.]+ [\d.]+ \d+$/.test(l))
    .map((l) => l.split(' ').map(Number))
  return { wall, cpu: procs.reduce((s, p) => s + p[1] + p[2], 0), rss: procs.map((p) => p[3] / 1024) }
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]

/** Random data throughout: no piece repeats, so no cache or dedup makes anything faster than a disk allows. */
function writeImage(path) {
  const fd = openSync(path, 'w')
  const piece = Buffer.allocUnsafe(4 * 2 ** 20)
  for (let at = 0; at < SIZE; at += piece.length) {
    randomFillSync(piece)
    writeSync(fd, piece, 0, Math.min(piece.length, SIZE - at), at)
  }
  closeSync(fd)
}

/** Rewrites `count` pieces of `piece` bytes at distinct piece-aligned places with new random data. */
function change(path, piece, fraction, seed) {
  const fd = openSync(path, 'r+')
  const slots = Math.floor(SIZE / piece)
  const count = Math.round(slots * fraction)
  const buf = Buffer.allocUnsafe(piece)
  const step = 2654435761 % slots || 1
  for (let i = 0, at = seed % slots; i < count; i++, at = (at + step) % slots) {
    randomFillSync(buf)
    writeSync(fd, buf, 0, piece, at * piece)
  }
  closeSync(fd)
  return count * piece
}

const reset = 'cp --sparse=never old.img tgt.img'
const check = 'cmp tgt.img NEW'

/** The sync cases of one change pattern: NEW is the new image, the target starts as old.img. */
function syncCases(pattern, newImage) {
  const fix = (s) => s.replaceAll('NEW', newImage)
  const tools = [
    {
      label: 'bsum -b 64K | bdiff | bpatch',
      ours: true,
      run: fix('T bsum -b 64K tgt.img | T bdiff NEW | T bpatch tgt.img'),
      sent: fix('bsum -b 64K tgt.img | bdiff NEW | wc -c'),
    },
    {
      label: 'bsum -b 4K | bdiff | bpatch',
      ours: true,
      run: fix('T bsum -b 4K tgt.img | T bdiff NEW | T bpatch tgt.img'),
      sent: fix('bsum -b 4K tgt.img | bdiff NEW | wc -c'),
    },
    {
      label: 'bdiff --digests-out | bpatch (4K)',
      ours: true,
      before: 'bsum -b 4K tgt.img > old.sum',
      run: fix('T bdiff --digests-out new.sum NEW < old.sum | T bpatch tgt.img; rm -f new.sum'),
      sent: fix('bdiff NEW < old.sum | wc -c'),
    },
    {
      label: 'bdiff --base -b 4K (local) | bpatch',
      ours: true,
      run: fix('T bdiff --base tgt.img -b 4K NEW | T bpatch tgt.img'),
      sent: fix('bdiff --base tgt.img -b 4K NEW | wc -c'),
    },
  ]
  if (BSF) {
    tools.push(
      {
        label: 'blocksync-fast digest, delta | apply',
        run: fix(
          'T $BSF --make-digest -s tgt.img -f bsf.dig && T $BSF --make-delta -s NEW -f bsf.dig | T $BSF --apply-delta -d tgt.img; rm -f bsf.dig',
        ),
        sent: fix(
          '$BSF --make-digest -s tgt.img -f bsf.dig > /dev/null && $BSF --make-delta -s NEW -f bsf.dig | wc -c; rm -f bsf.dig',
        ),
      },
      { label: 'blocksync-fast local', local: true, run: fix('T $BSF -s NEW -d tgt.img') },
    )
  }
  if (have('rsync')) {
    tools.push({
      label: 'rsync --inplace --no-whole-file',
      run: fix('T rsync --inplace --no-whole-file NEW tgt.img'),
      sent: fix("rsync --stats --inplace --no-whole-file NEW tgt.img | sed -n 's/^Total bytes sent: //p' | tr -d ,"),
    })
  }
  tools.push({ label: 'cat NEW > OLD', run: fix('T cat NEW > tgt.img'), sent: `echo ${SIZE}` })
  return { name: `sync, ${pattern}`, reset, check: fix(check), tools }
}

const cases = [
  {
    // What a process costs before any data: loading its modules, parsing its options.
    name: 'start-up (an empty image)',
    tools: [
      { label: 'bsum', ours: true, run: 'T bsum empty.img > /dev/null' },
      { label: 'bdiff --base', ours: true, run: 'T bdiff --base empty.img empty.img > /dev/null' },
      { label: 'bsum --help', ours: true, run: 'T bsum --help > /dev/null' },
      { label: 'node -e 0', run: 'T node -e 0' },
    ],
  },
  {
    name: 'digest',
    tools: [
      { label: 'bsum -b 64K', ours: true, run: 'T bsum -b 64K src.img > /dev/null' },
      { label: 'bsum -b 4K', ours: true, run: 'T bsum -b 4K src.img > /dev/null' },
      ...(have('xxhsum') ? [{ label: 'xxhsum -H64', run: 'T xxhsum -H64 src.img > /dev/null' }] : []),
      ...(BSF ? [{ label: 'blocksync-fast --make-digest', run: 'T $BSF --make-digest -s src.img > /dev/null' }] : []),
    ],
  },
  syncCases('1 % in 1 MiB aligned chunks', 'src.img'),
  syncCases('1 % of 4 KiB blocks scattered', 'scat.img'),
  {
    name: 'full copy',
    reset: 'rm -f dst.img',
    check: 'cmp dst.img src.img',
    tools: [
      {
        label: 'era-copy --all | era-apply',
        ours: true,
        run: 'T era-copy --all src.img | T era-apply --force dst.img',
      },
      { label: 'era-copy --all > /dev/null', ours: true, run: 'T era-copy --all src.img > /dev/null', nocheck: true },
      { label: 'cat SRC > NEW && sync NEW', run: 'T cat src.img > dst.img && T sync dst.img' },
    ],
  },
]

const mb = (x) => `${Math.round(x)}`
try {
  console.log(
    `bench: ${SIZE / 2 ** 20} MiB random image, ${RUNS} interleaved runs each, median; node ${process.version}` +
      `${BSF ? `; blocksync-fast ${sh('$BSF --version 2>&1 | head -1 | grep -o "[0-9][0-9.]*" | head -1', true)}` : ''}`,
  )
  writeImage(join(dir, 'old.img'))
  sh('cp old.img src.img && cp old.img scat.img && : > empty.img')
  const changed = change(join(dir, 'src.img'), 2 ** 20, 0.01, 3)
  const scattered = change(join(dir, 'scat.img'), 4096, 0.01, 5)
  console.log(`changed: ${changed} bytes as 1 MiB chunks; ${scattered} bytes as scattered 4 KiB blocks`)
  sh('cat old.img src.img scat.img > /dev/null') // warm the page cache
  for (const c of cases) {
    if (ONLY && !c.name.includes(ONLY)) continue
    const results = c.tools.map(() => [])
    for (let i = 0; i < RUNS; i++) {
      c.tools.forEach((tool, k) => {
        if (c.reset) sh(c.reset)
        if (tool.before) sh(tool.before)
        results[k].push(time(tool.run))
        if (c.check && !tool.nocheck) sh(c.check, false, tool.label)
      })
    }
    const rows = c.tools.map((tool, k) => {
      const rs = results[k]
      const wall = median(rs.map((r) => r.wall))
      const cpu = median(rs.map((r) => r.cpu))
      const rss = rs[0].rss.map((_, p) => median(rs.map((r) => r.rss[p])))
      if (c.reset && tool.sent) sh(c.reset)
      const sent = tool.sent ? Number(sh(tool.sent, true)) : undefined
      return { tool, wall, cpu, rss, sent }
    })
    console.log(`\n### ${c.name}\n`)
    const bases = rows.filter((r) => !r.tool.ours)
    console.log(
      `| command | wall s | CPU s | peak RSS MB (each process) | bytes sent | ${bases.map((b) => `wall / ${b.tool.label.replaceAll('|', '\\|')}`).join(' | ')} | result |`,
    )
    console.log(`| --- | --- | --- | --- | --- | ${bases.map(() => '---').join(' | ')} | --- |`)
    for (const r of rows) {
      const ratios = bases.map((b) => (r.tool.ours ? (r.wall / b.wall).toFixed(2) : '')).join(' | ')
      const verdict = c.check && !r.tool.nocheck ? 'identical' : '–'
      console.log(
        `| ${r.tool.label.replaceAll('|', '\\|')} | ${r.wall.toFixed(2)} | ${r.cpu.toFixed(2)} | ${r.rss.map(mb).join(' / ')} | ${r.sent ?? '–'} | ${ratios} | ${verdict} |`,
      )
    }
  }
  if (SPARSE) {
    // Memory flat in device size: a sparse file reads as zeros at page-cache speed.
    const at = mkdtempSync(join(SPARSE_DIR || dir, 'blockpipe-sparse-'))
    try {
      const img = join(at, 'sparse.img')
      const sum = join(at, 'sparse.sum')
      sh(`truncate -s ${SPARSE} ${img}`)
      const rows = [
        [`bsum sparse.img > sparse.sum`, time(`T bsum ${img} > ${sum}`)],
        [`bdiff sparse.img < sparse.sum`, time(`T bdiff ${img} < ${sum} > /dev/null`)],
        [`bsum sparse.img \\| bdiff sparse.img`, time(`T bsum ${img} | T bdiff ${img} > /dev/null`)],
      ]
      console.log(`\n### memory, ${SPARSE} sparse file${SPARSE_DIR ? ` in ${SPARSE_DIR}` : ''}\n`)
      console.log('| command | wall s | CPU s | peak RSS MB (each process) |\n| --- | --- | --- | --- |')
      for (const [label, r] of rows) {
        console.log(`| ${label} | ${r.wall.toFixed(1)} | ${r.cpu.toFixed(1)} | ${r.rss.map(mb).join(' / ')} |`)
      }
    } finally {
      rmSync(at, { recursive: true, force: true })
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true })
}
