import type { Io } from '../../packages/core/src/cli.js'

/** A fake stdio whose stderr is kept. */
export function io(): { io: Io; stderr: () => string } {
  let text = ''
  const stderr = { write: (s: string) => ((text += s), true) }
  return { io: { stdin: process.stdin, stdout: process.stdout, stderr } as unknown as Io, stderr: () => text }
}
