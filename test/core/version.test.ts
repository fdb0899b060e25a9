import t from 'tap'
import { readFileSync } from 'node:fs'
import { VERSION } from '../../packages/core/src/version.js'

void t.test('VERSION is the version of the core package', (t) => {
  const pkg = JSON.parse(readFileSync(new URL('../../packages/core/package.json', import.meta.url), 'utf8')) as {
    version: string
  }
  t.equal(VERSION, pkg.version)
  t.match(VERSION, /^\d+\.\d+\.\d+/)
  t.end()
})
