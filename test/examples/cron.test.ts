import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { writeImage } from '../lib/data.js'
import { ROOT, binDir, runCommand } from '../lib/run.js'

// The example scripts as cron runs them: `env -i` with only the variables
// they document, cron's PATH, -q. ssh is replaced (SSH=...) by a script that
// runs the remote command here, so that no sshd is needed.

const BSYNC = join(ROOT, 'examples', 'bsync-backup.sh')
const ERA = join(ROOT, 'examples', 'era-backup.sh')
const CRON_PATH = '/usr/bin:/bin'

type Tap = Parameters<Parameters<typeof t.test>[0]>[0]

function setup(t: Tap) {
  const dir = mkdtempSync(join(tmpdir(), 'blockpipe-cron-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const ssh = join(dir, 'fake-ssh')
  // ssh HOST COMMAND: the remote shell runs COMMAND.
  writeFileSync(ssh, '#!/bin/sh\nshift\nexec /bin/sh -c "$*"\n')
  chmodSync(ssh, 0o755)
  const src = join(dir, 'src.img')
  writeImage(src, 1 << 20, 7, [[0, 256 * 1024]])
  return { dir, ssh, src, state: join(dir, 'state', 'bsync'), img: join(dir, 'vm.img') }
}

/** `env -i HOME=/nonexistent VARS... bash SCRIPT ARGS...` */
function cron(script: string, args: string[], env: Record<string, string>) {
  const vars = Object.entries({ HOME: '/nonexistent', ...env }).map(([k, v]) => `${k}=${v}`)
  return runCommand('env', ['-i', ...vars, 'bash', script, ...args])
}

void t.test('bsync-backup.sh: cron PATH without bdiff: one line naming it and the fix, no state', async (t) => {
  const s = setup(t)
  const r = await cron(BSYNC, ['-q', '-c', '-r', 'nas', '-i', s.img, '-s', join(s.state, 'vm.sum'), s.src], {
    PATH: CRON_PATH,
  })
  t.equal(r.status, 2)
  t.match(r.stderr, /^bsync-backup: error: bdiff not found in PATH=\/usr\/bin:\/bin: .*PATH=\/usr\/local\/bin/)
  t.equal(r.stderr.trimEnd().split('\n').length, 1, 'one line')
  t.notOk(existsSync(join(s.dir, 'state')), 'no state directory')
})

void t.test('bsync-backup.sh -q under env -i: silent on success; a failed run leaves no state', async (t) => {
  const s = setup(t)
  const env = { PATH: `${binDir()}:${CRON_PATH}`, SSH: s.ssh }
  const args = ['-q', '-r', 'nas', '-i', s.img, '-s', join(s.state, 'vm.sum'), s.src]
  let r = await cron(BSYNC, args, env)
  t.equal(r.status, 2, 'no image and no -c')
  t.match(r.stderr, /^bsync-backup: error: nas:.*vm\.img does not exist: give its right path, or -c/)
  t.equal(r.stderr.trimEnd().split('\n').length, 1, 'one line for one failure')
  t.notOk(existsSync(join(s.dir, 'state')), 'the failed run created no state directory')

  // bpatch fails on the backup host: bdiff's broken pipe is not reported, bpatch's message is.
  const bpatch = join(s.dir, 'failing-bpatch')
  writeFileSync(bpatch, '#!/bin/sh\ncat > /dev/null & echo "bpatch: no space left on the backup host" >&2\nexit 1\n')
  chmodSync(bpatch, 0o755)
  r = await cron(BSYNC, ['-c', ...args], { ...env, REMOTE_BPATCH: bpatch })
  t.equal(r.status, 1)
  t.match(
    r.stderr,
    /^bsync-backup: error: the sync failed \(.*bpatch exit 1\): bpatch: no space left on the backup host;/,
  )
  t.equal(r.stderr.trimEnd().split('\n').length, 1, `one line for one failure: ${r.stderr}`)
  t.notOk(existsSync(join(s.dir, 'state')), 'no state directory')

  r = await cron(BSYNC, ['-c', ...args], env)
  t.equal(r.status, 0, r.stderr)
  t.equal(r.stdout.toString(), '', 'nothing on stdout')
  t.equal(r.stderr, '', 'nothing on stderr')
  t.same(readdirSync(s.state).sort(), ['vm.sum', 'vm.sum.lock'])
  r = await cron(BSYNC, args, env)
  t.equal(r.status, 0, r.stderr)
  t.equal(`${r.stdout.toString()}${r.stderr}`, '', 'a second night: silent too')
  const undo = readdirSync(`${s.img}.undo`)
  t.equal(undo.length, 2, 'one undo file per night')
  for (const name of undo) t.match(name, /^vm\.img\.\d{8}T\d{6}\.\d{9}Z\.undo$/, 'the name examples/README.md gives')
})

void t.test('era-backup.sh: cron PATH: one line naming the missing tool, no state', async (t) => {
  const s = setup(t)
  const r = await cron(ERA, ['-q', '-n', 'era0', '-r', 'nas', '-i', s.img, '-s', join(s.state, 'era0.era')], {
    PATH: CRON_PATH,
    DMSETUP: '/bin/true',
    ERA_INVALIDATE: '/bin/true',
  })
  t.equal(r.status, 2)
  t.match(r.stderr, /^era-backup: error: era-copy not found in PATH=\/usr\/bin:\/bin: .*PATH=\/usr\/local\/bin/)
  t.equal(r.stderr.trimEnd().split('\n').length, 1, 'one line')
  t.notOk(existsSync(join(s.dir, 'state')), 'no state directory')
})

void t.test('the systemd units: a oneshot service with PATH set, run by a persistent timer', (t) => {
  for (const name of ['bsync-backup', 'era-backup']) {
    const service = readFileSync(join(ROOT, 'examples', 'systemd', `${name}.service`), 'utf8')
    const timer = readFileSync(join(ROOT, 'examples', 'systemd', `${name}.timer`), 'utf8')
    t.match(service, /^Type=oneshot$/m)
    t.match(service, /^Environment=PATH=\/usr\/local\/bin:/m, `${name}: npm's bin directory on PATH`)
    const exec = /^ExecStart=(\S+) (.*)$/m.exec(service)
    t.equal(exec?.[1], `/usr/local/lib/node_modules/blockpipe/examples/${name}.sh`, 'the installed script')
    t.match(exec?.[2], /^-q /, 'quiet on success')
    t.match(timer, /^OnCalendar=/m)
    t.match(timer, /^Persistent=true$/m)
    t.match(timer, /^WantedBy=timers\.target$/m)
  }
  t.end()
})
