#!/usr/bin/env node
// npm test / npm run test:quick: runs tap with the given arguments, keeps its
// whole TAP output in .tap/last-run.tap (overwritten each run), shows only the
// failures with their diagnostics, and ends with one line:
//   N passed, N failed; coverage 100 % (statements, branches, functions, lines)
// The coverage data tap leaves in .tap/ is removed afterwards: it grew by
// hundreds of MB a run.
import { spawn, spawnSync } from 'node:child_process'
import { createWriteStream, mkdirSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const tap = join(dirname(createRequire(import.meta.url).resolve('tap/package.json')), 'dist', 'esm', 'run.mjs')
const args = process.argv.slice(2)
const coverage = !args.includes('--disable-coverage')
mkdirSync(join(root, '.tap'), { recursive: true })
const log = createWriteStream(join(root, '.tap', 'last-run.tap'))
const started = Date.now()

const child = spawn(
  process.execPath,
  [tap, '--reporter=tap', ...(coverage ? ['--coverage-report=text-summary'] : []), ...args],
  { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
)
let pass = 0
let fail = 0
const totals = {}
const errors = []
// A failure: its "not ok" line and the indented diagnostics that follow it.
let failIndent = -1
const lines = createInterface({ input: child.stdout })
lines.on('line', (line) => {
  log.write(`${line}\n`)
  const indent = line.length - line.trimStart().length
  if (failIndent >= 0 && (indent > failIndent || line.trim() === '')) {
    console.log(line)
    return
  }
  failIndent = -1
  const notOk = /^(\s*)not ok \d+/.exec(line)
  if (notOk) {
    failIndent = notOk[1].length
    console.log(line)
  }
  if (/^# \{ total: \d+/.test(line)) {
    pass = Number(/pass: (\d+)/.exec(line)?.[1] ?? 0)
    fail = Number(/fail: (\d+)/.exec(line)?.[1] ?? 0)
  }
  const total = /^(Statements|Branches|Functions|Lines)\s*:\s*([\d.]+|Unknown)%/.exec(line)
  if (total) totals[total[1].toLowerCase()] = total[2]
})
createInterface({ input: child.stderr }).on('line', (line) => {
  log.write(`${line}\n`)
  errors.push(line)
})

const status = await new Promise((resolve) => child.on('close', (code, signal) => resolve(code ?? (signal ? 1 : 0))))
await new Promise((resolve) => log.end(resolve))
for (const line of errors) console.error(line)
const values = Object.values(totals)
const full = values.length === 4 && values.every((v) => v === '100')
// Below 100 %: name the files and lines not covered, before the data is removed.
if (coverage && values.length > 0 && !full) {
  const report = spawnSync(process.execPath, [tap, 'report', 'text'], { cwd: root, encoding: 'utf8' })
  for (const row of report.stdout.split('\n')) {
    const cells = row.split('|').map((c) => c.trim())
    if (cells.length >= 6 && cells.slice(1, 5).some((c) => /^[\d.]+$/.test(c) && c !== '100')) console.log(row)
  }
}
if (coverage) {
  rmSync(join(root, '.tap', 'coverage'), { recursive: true, force: true })
  rmSync(join(root, '.tap', 'processinfo'), { recursive: true, force: true })
}
// Every test passed but tap failed the run: coverage below 100 %, or a crash.
if (status !== 0 && fail === 0) fail = 1
const cover = !coverage
  ? 'coverage not measured'
  : values.length === 0
    ? 'coverage unknown'
    : `coverage ${
        full
          ? '100 %'
          : `BELOW 100 % (${Object.entries(totals)
              .map(([k, v]) => `${k} ${v} %`)
              .join(', ')})`
      }`
const seconds = Math.round((Date.now() - started) / 1000)
console.log(`${pass} passed, ${fail} failed; ${cover}; ${seconds} s (whole output: .tap/last-run.tap)`)
process.exitCode = status === 0 ? 0 : 1
