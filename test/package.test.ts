import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import t from 'tap'
import { ROOT, have, runCommand } from './lib/run.js'

// The package as a host gets it: `npm pack`, then a global install of the
// tarball into a fresh prefix, offline, with an empty npm cache and no
// registry, from a directory outside the checkout. Every program and the man
// pages must work from the installed copy alone.

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string
  bin: Record<string, string>
  man: string[]
}
const dir = mkdtempSync(join(tmpdir(), 'blockpipe-package-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const prefix = join(dir, 'prefix')

// Nothing from this process's npm (npm_config_* of `npm test`, ~/.npmrc) leaks in.
const env = {
  PATH: `${dirname(process.execPath)}:/usr/bin:/bin`,
  HOME: join(dir, 'home'),
  npm_config_cache: join(dir, 'empty-cache'),
  npm_config_registry: 'http://127.0.0.1:9/',
  npm_config_offline: 'true',
  npm_config_audit: 'false',
  npm_config_fund: 'false',
  npm_config_update_notifier: 'false',
}

function npm(args: string[], cwd: string) {
  const r = spawnSync('npm', args, { cwd, env, encoding: 'utf8' })
  return { status: r.status, out: `${r.stdout}${r.stderr}` }
}

void t.test('npm pack, then an offline global install of the tarball into a fresh prefix', (t) => {
  const packed = npm(['pack', '--json', '--pack-destination', dir], ROOT)
  t.equal(packed.status, 0, packed.out)
  const json = packed.out.slice(packed.out.indexOf('['))
  const [info] = JSON.parse(json.slice(0, json.lastIndexOf(']') + 1)) as [
    { filename: string; files: { path: string }[] },
  ]
  const files = info.files.map((f) => f.path)
  t.ok(
    files.every((f) => /^(dist|man|examples)\/|^(LICENSE|README\.md|package\.json)$/.test(f)),
    `only what a host needs is shipped: ${files.join(' ')}`,
  )
  for (const name of Object.keys(pkg.bin)) t.ok(files.includes(`dist/${name}.js`), `dist/${name}.js is shipped`)
  t.ok(files.includes('dist/THIRD-PARTY-LICENSES'))

  const install = npm(['install', '-g', '--offline', '--prefix', prefix, join(dir, info.filename)], tmpdir())
  t.equal(install.status, 0, install.out)
  t.notMatch(install.out, /ERR|install-scripts/, 'no error, no install script to approve')
  t.same(readdirSync(join(prefix, 'lib', 'node_modules')), ['blockpipe'], 'one package, no dependencies fetched')
  t.same(readdirSync(join(prefix, 'bin')).sort(), Object.keys(pkg.bin).sort(), 'every program is installed')
  t.end()
})

void t.test('every installed program runs on its own: --version says PROGRAM VERSION', async (t) => {
  for (const name of Object.keys(pkg.bin)) {
    const r = await runCommand(join(prefix, 'bin', name), ['--version'], { fullEnv: env, cwd: tmpdir() })
    t.equal(r.status, 0, `${name}: ${r.stderr}`)
    t.equal(r.stdout.toString(), `${name} ${pkg.version}\n`)
  }
  const r = await runCommand(join(prefix, 'bin', 'bsum'), ['--block-sise', '4K', '-'], { fullEnv: env })
  t.equal(r.status, 2)
  t.match(r.stderr, /--block-sise.*did you mean --block-size\?/, 'the bundled yargs reports as the workspace one')
})

void t.test("the demo's round trip with the installed programs", async (t) => {
  const r = await runCommand(process.execPath, [join(ROOT, 'scripts', 'demo.js'), '--bin', join(prefix, 'bin')], {
    fullEnv: { ...env, PATH: `${env.PATH}:/usr/sbin:/sbin` },
  })
  t.equal(r.status, 0, r.stderr)
  t.match(r.stdout.toString(), /demo: all steps verified/)
  t.notMatch(r.stdout.toString(), /MISMATCH/)
})

void t.test(
  'the installed man pages',
  { skip: !have('man') && 'man is not installed (apt-get install man-db)' },
  async (t) => {
    for (const page of pkg.man) {
      const section = page.slice(-1)
      const installed = join(prefix, 'share', 'man', `man${section}`, page.slice('man/'.length))
      const r = await runCommand('man', ['-l', installed], { fullEnv: { ...env, MANPAGER: 'cat', COLUMNS: '80' } })
      t.equal(r.status, 0, `${installed}: ${r.stderr}`)
      t.match(r.stdout.toString(), /NAME/, installed)
    }
  },
)
