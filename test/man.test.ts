import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, have, run } from './lib/run.js'

// The man pages tell the truth: built from their sources, rendered by man,
// and naming every option the program's --help lists.

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  bin: Record<string, string>
  man: string[]
}

void t.test('the roff pages are built from the current markdown', (t) => {
  const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-man.js'), '--check'], { encoding: 'utf8' })
  t.equal(r.status, 0, r.stderr)
  t.end()
})

void t.test('build-man writes a page that is missing or out of date; --check only says so', (t) => {
  const dir = t.testdir({ 'x.1.md': '# x(1) -- a test page\n\n## NAME\n\nx\n', 'README.md': 'not a page\n' })
  const build = (...args: string[]) =>
    spawnSync(process.execPath, [join(ROOT, 'scripts', 'build-man.js'), '--dir', dir, ...args], { encoding: 'utf8' })
  let r = build('--check')
  t.equal(r.status, 1, 'a page not built yet is out of date')
  t.match(r.stderr, /x\.1 is out of date: run npm run man/)
  t.notOk(existsSync(join(dir, 'x.1')), '--check writes nothing')
  r = build()
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout, /wrote .*x\.1/)
  t.match(readFileSync(join(dir, 'x.1'), 'utf8'), /\.TH "X" "1"/)
  t.notOk(existsSync(join(dir, 'README')), 'only NAME.SECTION.md files are pages')
  r = build('--check')
  t.equal(r.status, 0, 'up to date')
  writeFileSync(join(dir, 'x.1.md'), '# x(1) -- a test page\n\n## NAME\n\nx, changed\n')
  r = build('--check')
  t.equal(r.status, 1, 'a changed source makes the page out of date')
  t.end()
})

void t.test('every program has a page, installed by package.json', (t) => {
  for (const program of Object.keys(pkg.bin)) {
    t.ok(pkg.man.includes(`man/${program}.1`), `${program}.1 is in package.json "man"`)
  }
  t.ok(pkg.man.includes('man/blockpipe-stream.5'))
  for (const page of pkg.man) t.ok(existsSync(join(ROOT, page)), `${page} exists`)
  t.end()
})

void t.test('man renders every page without complaint', { skip: !have('man') && 'man is not installed' }, (t) => {
  for (const page of pkg.man) {
    const env: NodeJS.ProcessEnv = { ...process.env, MANWIDTH: '80', LANG: 'C.UTF-8' }
    delete env.MAN_KEEP_FORMATTING
    const r = spawnSync('man', ['-l', join(ROOT, page)], { encoding: 'utf8', env })
    t.equal(r.status, 0, `${page}: ${r.stderr}`)
    t.equal(r.stderr, '', `${page} renders without warnings`)
    t.match(r.stdout, /NAME/, page)
    t.notMatch(r.stdout, /&quot;|&amp;|&lt;|&gt;/, `${page} has no HTML entities`)
  }
  t.end()
})

void t.test('each page names every option of --help', async (t) => {
  for (const program of Object.keys(pkg.bin)) {
    const help = await run(program, ['--help'])
    t.equal(help.status, 0, `${program} --help exits 0`)
    const page = readFileSync(join(ROOT, 'man', `${program}.1.md`), 'utf8')
    const options = [...help.stdout.toString().matchAll(/^\s+(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1] as string)
    t.ok(options.length > 2, `${program} --help lists options`)
    for (const option of options) t.match(page, option, `${program}.1 documents ${option}`)
  }
})

void t.test('--version prints the program and the package version', async (t) => {
  const version = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version
  for (const program of Object.keys(pkg.bin)) {
    const r = await run(program, ['--version'])
    t.equal(r.stdout.toString(), `${program} ${version}\n`, program)
  }
  t.equal(execFileSync(process.execPath, ['--version']).toString().startsWith('v'), true)
})
