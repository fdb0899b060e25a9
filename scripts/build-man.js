#!/usr/bin/env node
// Turns the markdown sources man/*.md into the roff pages beside them
// (man/era-copy.1.md -> man/era-copy.1). The roff pages are committed, so a
// checkout renders with `man -l man/era-copy.1` without a build.
// `--check` only compares, and fails when a page is out of date.
// `--dir DIR` works on another directory of pages than man/.
import { execFileSync } from 'node:child_process'
import { readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const { version } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const check = process.argv.includes('--check')
const dirAt = process.argv.indexOf('--dir')
const manDir = dirAt >= 0 ? process.argv[dirAt + 1] : join(root, 'man')
// A fixed date keeps the pages reproducible; move it on at each release.
const DATE = '2026-11-22'

let stale = 0
for (const file of readdirSync(manDir)
  .filter((f) => /\.\d\.md$/.test(f))
  .sort()) {
  const section = file.slice(-4, -3)
  const roff = execFileSync(
    process.execPath,
    [
      join(root, 'node_modules', 'marked-man', 'bin', 'marked-man.js'),
      '--version',
      `blockpipe ${version}`,
      '--manual',
      'blockpipe manual',
      '--section',
      section,
      '--date',
      DATE,
      '--no-breaks',
      join(manDir, file),
    ],
    { encoding: 'utf8' },
  )
  const out = join(manDir, file.slice(0, -3))
  let old = ''
  try {
    old = readFileSync(out, 'utf8')
  } catch {
    // not built yet
  }
  if (old === roff) continue
  if (check) {
    console.error(`build-man: ${out} is out of date: run npm run man`)
    stale++
  } else {
    writeFileSync(out, roff)
    console.log(`build-man: wrote ${out}`)
  }
}
process.exit(stale > 0 ? 1 : 0)
