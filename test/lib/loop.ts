import { execFileSync } from 'node:child_process'
import { isRoot } from './run.js'

// Real block devices: loop devices over image files (root only).

/** Why loop devices cannot be used here, or undefined when they can. */
export function loopUnavailable(): string | undefined {
  if (!isRoot) return 'loop devices need root'
  try {
    execFileSync('losetup', ['--version'], { stdio: 'ignore' })
  } catch {
    return 'losetup is not installed'
  }
  return undefined
}

/** Attaches `file` to a free loop device, runs `fn` with its path, and detaches it. */
export async function withLoop<T>(file: string, fn: (dev: string) => Promise<T>): Promise<T> {
  const dev = execFileSync('losetup', ['-f', '--show', file]).toString().trim()
  try {
    return await fn(dev)
  } finally {
    execFileSync('losetup', ['-d', dev])
  }
}
