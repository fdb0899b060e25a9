import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { ROOT, have, runCommand } from '../lib/run.js'

// The shell scripts users copy (examples/) and the dm-era harness stay
// shellcheck-clean; without shellcheck, bash -n still checks their syntax.

const scripts = [
  ...readdirSync(join(ROOT, 'examples'))
    .filter((f) => f.endsWith('.sh'))
    .map((f) => join(ROOT, 'examples', f)),
  ...readdirSync(join(ROOT, 'test', 'dm-era'))
    .filter((f) => f.endsWith('.sh') || f === 'guest-exec')
    .map((f) => join(ROOT, 'test', 'dm-era', f)),
]

void t.test('the scripts are found', (t) => {
  t.ok(scripts.some((f) => f.endsWith('examples/era-backup.sh')))
  t.ok(scripts.some((f) => f.endsWith('examples/bsync-backup.sh')))
  t.ok(scripts.some((f) => f.endsWith('dm-era/guest-exec')))
  t.end()
})

void t.test('bash -n: no syntax errors', async (t) => {
  for (const f of scripts) {
    const r = await runCommand('bash', ['-n', f])
    t.equal(r.status, 0, `${f}: ${r.stderr}`)
  }
})

void t.test(
  'shellcheck',
  { skip: !have('shellcheck') && 'shellcheck is not installed (apt-get install shellcheck)' },
  async (t) => {
    // -x follows sourced files; the guest scripts declare `# shellcheck shell=sh`.
    const r = await runCommand('shellcheck', ['-x', ...scripts])
    t.equal(r.status, 0, r.stdout.toString() || r.stderr)
  },
)
