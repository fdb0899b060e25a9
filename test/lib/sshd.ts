import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir, userInfo } from 'node:os'
import { join } from 'node:path'
import { have } from './run.js'

// A real sshd on 127.0.0.1 with a throwaway host key and user key, for
// pipelines that go through ssh the way a backup does.

export interface Sshd {
  port: number
  /** `ssh` with the options to reach this sshd: prefix a remote command with it. */
  ssh: string
  stop(): Promise<void>
}

export function sshdUnavailable(): string | undefined {
  if (!have('/usr/sbin/sshd')) return 'sshd is not installed (apt-get install openssh-server)'
  if (!have('ssh')) return 'ssh is not installed'
  if (process.getuid?.() !== 0) return 'sshd needs root to run here'
  return undefined
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port
      srv.close(() => resolve(port))
    })
  })
}

export async function startSshd(): Promise<Sshd> {
  const dir = mkdtempSync(join(tmpdir(), 'blockpipe-sshd-'))
  const hostKey = join(dir, 'host_ed25519')
  const userKey = join(dir, 'user_ed25519')
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey])
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userKey])
  execFileSync('cp', [`${userKey}.pub`, join(dir, 'authorized_keys')])
  const port = await freePort()
  const config = join(dir, 'sshd_config')
  writeFileSync(
    config,
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      'UsePAM no',
      'PermitUserEnvironment no',
      '',
    ].join('\n'),
  )
  execFileSync('mkdir', ['-p', '/run/sshd'])
  const child: ChildProcess = spawn('/usr/sbin/sshd', ['-D', '-e', '-f', config], {
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let log = ''
  child.stderr?.on('data', (b: Buffer) => (log += b.toString()))
  const ssh =
    `ssh -p ${port} -i ${userKey} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null` +
    ` -o BatchMode=yes -o LogLevel=ERROR ${userInfo().username}@127.0.0.1`
  for (let i = 0; ; i++) {
    try {
      execFileSync('sh', ['-c', `${ssh} true`], { stdio: 'ignore' })
      break
    } catch {
      if (i === 50 || child.exitCode !== null) {
        child.kill()
        rmSync(dir, { recursive: true, force: true })
        throw new Error(`sshd did not come up on port ${port}: ${log}`)
      }
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  return {
    port,
    ssh,
    stop: () =>
      new Promise<void>((resolve) => {
        child.once('exit', () => {
          rmSync(dir, { recursive: true, force: true })
          resolve()
        })
        child.kill()
      }),
  }
}
