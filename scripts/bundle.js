#!/usr/bin/env node
// npm run bundle (run by prepack): one self-contained file per program in dist/,
// so that the packed tarball installs without the workspaces or the network.
// The programs are the root package.json's `bin` map: `"NAME": "dist/NAME.js"`
// is bundled from packages/NAME/dist/cli.js (built by `tsc -b` first).
// The licenses of the bundled dependencies go to dist/THIRD-PARTY-LICENSES.
// Coverage: not counted. A build script (npm pack runs it in test/package.test.ts,
// which checks what it makes); its branches guard against a broken checkout.
/* c8 ignore start */
import { build } from 'esbuild'
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const out = join(root, 'dist')

function fail(message) {
  console.error(`bundle: ${message}`)
  process.exit(1)
}

const entries = Object.entries(pkg.bin ?? {}).map(([name, target]) => {
  if (target !== `dist/${name}.js`) fail(`bin "${name}" must be "dist/${name}.js" in package.json, not "${target}"`)
  const entry = join(root, 'packages', name, 'dist', 'cli.js')
  if (!existsSync(entry)) fail(`${relative(root, entry)} is missing: run \`npm run build\` first`)
  return { name, entry }
})
if (entries.length === 0) fail('package.json has no bin map')

// bsum and bdiff hash on worker threads, started from dist/hash-worker.js,
// and on the main thread; each thread instantiates xxhash's WebAssembly
// itself (stripe-hasher.js, bundled into both), and so does era-copy's
// HashMemory (hash-memory.js), from dist/xxhash.wasm in the package instead
// of from node_modules.
const worker = join(root, 'packages', 'core', 'dist', 'hash-worker.js')
const wasmFrom = "new URL('../workerd/xxhash.wasm', import.meta.resolve('xxhash-wasm'))"
const wasmBeside = {
  name: 'wasm-beside',
  setup(b) {
    b.onLoad({ filter: /(stripe-hasher|hash-memory)\.js$/ }, (args) => {
      const source = readFileSync(args.path, 'utf8')
      if (!source.includes(wasmFrom)) fail(`${relative(root, args.path)} no longer loads ${wasmFrom}: update bundle.js`)
      return { contents: source.replace(wasmFrom, "new URL('./xxhash.wasm', import.meta.url)"), loader: 'js' }
    })
  },
}

rmSync(out, { recursive: true, force: true })
mkdirSync(out)
copyFileSync(join(root, 'node_modules', 'xxhash-wasm', 'workerd', 'xxhash.wasm'), join(out, 'xxhash.wasm'))
const result = await build({
  entryPoints: {
    ...Object.fromEntries(entries.map(({ name, entry }) => [name, entry])),
    'hash-worker': worker,
  },
  plugins: [wasmBeside],
  outdir: out,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: `node${pkg.engines.node.replace(/^\D*/, '')}`,
  // Dependencies written as CommonJS call require(): give the ES module one.
  banner: {
    js: "import { createRequire as bundleRequire } from 'node:module';const require = bundleRequire(import.meta.url);",
  },
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
})

// Every package a bundled file came from, with its license text.
const packages = new Map()
for (const input of Object.keys(result.metafile.inputs)) {
  const parts = input.split(/[\\/]/)
  const at = parts.lastIndexOf('node_modules')
  if (at < 0) continue
  const depth = parts[at + 1].startsWith('@') ? 2 : 1
  const dir = join(root, ...parts.slice(0, at + 1 + depth))
  if (!packages.has(dir)) packages.set(dir, JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')))
}
const notices = [...packages]
  .sort(([, a], [, b]) => a.name.localeCompare(b.name))
  .map(([dir, p]) => {
    const file = readdirSync(dir).find((f) => /^(licen[cs]e|copying)(\.|$)/i.test(f))
    // Some packages ship no license file: their package.json's license is all there is.
    const text =
      file === undefined
        ? `No license file in the package; its package.json says: ${p.license}${p.author ? `, author ${JSON.stringify(p.author)}` : ''}.`
        : readFileSync(join(dir, file), 'utf8').trim()
    return `${p.name} ${p.version} (${p.license})\n${'-'.repeat(72)}\n${text}\n`
  })
writeFileSync(
  join(out, 'THIRD-PARTY-LICENSES'),
  `The programs in this directory bundle the following packages.\n\n${notices.join('\n\n')}`,
)
console.log(
  `bundle: ${entries.map((e) => `dist/${e.name}.js`).join(', ')}; ${packages.size} bundled packages:`,
  [...packages.values()].map((p) => p.name).join(', ') || 'none',
)
/* c8 ignore stop */
