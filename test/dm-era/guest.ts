import { spawn } from 'node:child_process'
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { ROOT, runCommand, type RunResult } from '../lib/run.js'

// Drives the qemu guest of guest.sh from the tests: prepare it (or say why it
// cannot be), run host scripts with their process group and qemu killed on
// teardown, and keep one guest up with guest-agent.sh to run commands in it.

export const DMERA = join(ROOT, 'test', 'dm-era')
export const GUEST_SH = join(DMERA, 'guest.sh')
export const GUEST_EXEC = join(DMERA, 'guest-exec')

/** The cache of guest.sh: $DMERA_CACHE or its default, which CI machines start without (prepare downloads). */
export function dmEraCache(): string {
  return process.env.DMERA_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'blockpipe-dm-era')
}

/** A command in its own process group, which `kill` ends (with any qemu a guest.sh under `dir` started). */
export interface Detached {
  done: Promise<RunResult>
  kill(): void
}

export function runDetached(command: string, args: string[], dir: string, env: Record<string, string> = {}): Detached {
  const child = spawn(command, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
  })
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (b: Buffer) => out.push(b))
  child.stderr.on('data', (b: Buffer) => err.push(b))
  let exited = false
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (status, signal) => {
      exited = true
      resolve({ status, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() })
    })
  })
  const kill = (): void => {
    if (!exited && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    killQemus(dir)
  }
  process.once('exit', kill)
  return { done, kill }
}

/** Kills the qemu processes whose pid files (qemu.pid, written by guest.sh run) lie in `dir` or one level below. */
export function killQemus(dir: string): void {
  const files = [join(dir, 'qemu.pid')]
  if (existsSync(dir)) {
    for (const e of readdirSync(dir, { withFileTypes: true }))
      if (e.isDirectory()) files.push(join(dir, e.name, 'qemu.pid'))
  }
  for (const file of files) {
    let pid: number
    try {
      pid = Number(readFileSync(file, 'utf8').trim())
      // Only a qemu: the pid may have been reused since.
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('qemu-system')) continue
      process.kill(pid, 'SIGKILL')
      rmSync(file, { force: true })
    } catch {
      // no such file or process
    }
  }
}

/** Prepares the guest (installs qemu & co. when it can, downloads the kernel once). Returns why it cannot, or undefined. */
export async function prepareGuest(): Promise<string | undefined> {
  const r = await runCommand(GUEST_SH, ['prepare', dmEraCache()])
  if (r.status === 0) return undefined
  const why = r.stderr.trim().split('\n').slice(-3).join(' / ')
  return `the dm-era guest cannot be prepared here (guest.sh prepare exit ${r.status}): ${why}`
}

/** A guest that stays up running guest-agent.sh; `exec` runs a command in it through guest-exec. */
export interface Guest {
  /** Environment that makes guest-exec reach this guest. */
  env: Record<string, string>
  exec(...args: string[]): Promise<RunResult>
  /** Powers the guest off (kills it if it does not go); its log is then in WORKDIR/out/log. */
  stop(): Promise<RunResult>
}

/** Boots a guest over `work`/origin.img and `work`/meta.img (the caller makes them), ready to run commands. */
export async function startGuest(work: string): Promise<Guest> {
  const channel = join(work, 'agent')
  rmSync(`${channel}.in`, { force: true })
  rmSync(`${channel}.out`, { force: true })
  const mk = await runCommand('mkfifo', [`${channel}.in`, `${channel}.out`])
  if (mk.status !== 0) throw new Error(`mkfifo: ${mk.stderr}`)
  const env = { DMERA_AGENT_CHANNEL: channel }
  // DMERA_TIMEOUT bounds the guest's life even if nothing here gets to kill it.
  const run = runDetached(GUEST_SH, ['run', dmEraCache(), join(DMERA, 'guest-agent.sh'), work], work, {
    ...env,
    DMERA_TIMEOUT: '600',
  })
  const exec = (...args: string[]): Promise<RunResult> => runCommand(GUEST_EXEC, args, { env })
  const stop = async (): Promise<RunResult> => {
    const timer = setTimeout(() => run.kill(), 30_000)
    await runCommand(GUEST_EXEC, ['--quit'], { env })
    const r = await run.done
    clearTimeout(timer)
    run.kill()
    return r
  }
  // The first command waits for the boot; a guest that dies first ends the wait.
  const ready = await Promise.race([
    exec('true'),
    run.done.then((r) => ({ ...r, stderr: `the guest stopped during the boot:\n${r.stdout.toString()}${r.stderr}` })),
  ])
  if (ready.status !== 0) {
    run.kill()
    throw new Error(`the guest did not come up: ${ready.stderr}`)
  }
  return { env, exec, stop }
}
