import { spawn, spawnSync } from 'node:child_process'
import { chmodSync, createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

// Runs the built binaries the way a user does: a separate node process with
// pipes for stdin and stdout.

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..')

export type Program = 'era-copy' | 'era-apply' | 'bsum' | 'bdiff' | 'bpatch' | 'bpdump' | 'brestore'

export function binPath(program: string): string {
  return join(ROOT, 'packages', program, 'dist', 'cli.js')
}

export interface RunResult {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: Buffer
  stderr: string
}

export interface RunOptions {
  /** Bytes for stdin, or a path to a file whose contents go to stdin. */
  input?: Buffer | string
  inputFile?: string
  cwd?: string
  env?: Record<string, string>
  /** The child's whole environment, instead of this process's with `env` over it. */
  fullEnv?: NodeJS.ProcessEnv
}

/** Runs a blockpipe binary to completion. */
export function run(program: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return runCommand(process.execPath, [binPath(program), ...args], options)
}

/** Runs any command to completion. */
export function runCommand(command: string, args: string[], options: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.fullEnv ?? { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (b: Buffer) => out.push(b))
    child.stderr.on('data', (b: Buffer) => err.push(b))
    child.on('error', reject)
    child.stdin.on('error', () => {
      // The program may exit before reading all its input; its status tells.
    })
    if (options.inputFile !== undefined) createReadStream(options.inputFile).pipe(child.stdin)
    else child.stdin.end(options.input)
    child.on('close', (status, signal) =>
      resolve({ status, signal, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString() }),
    )
  })
}

/** Runs a shell pipeline with bash; the blockpipe binaries are on PATH. */
export function sh(script: string, options: RunOptions = {}): Promise<RunResult> {
  return runCommand('bash', ['-o', 'pipefail', '-c', script], {
    ...options,
    env: { PATH: `${binDir()}:${process.env.PATH ?? ''}`, ...options.env },
  })
}

export const PROGRAMS: Program[] = ['era-copy', 'era-apply', 'bsum', 'bdiff', 'bpatch', 'bpdump', 'brestore']

let bins: string | undefined

/** A directory of wrapper scripts named like the commands, for shell pipelines and ssh. */
export function binDir(): string {
  if (bins !== undefined) return bins
  const dir = mkdtempSync(join(tmpdir(), 'blockpipe-bin-'))
  for (const program of PROGRAMS) {
    const path = join(dir, program)
    writeFileSync(
      path,
      `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(binPath(program))} "$@"\n`,
    )
    chmodSync(path, 0o755)
  }
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }))
  bins = dir
  return dir
}

export function have(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0
}

export const isRoot = process.getuid?.() === 0
