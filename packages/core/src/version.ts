import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'

export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version

/**
 * Metadata every producer puts in its stream header: who made it, from what,
 * when, and an id that tells two streams with otherwise equal headers apart
 * (an undo journal is continued only for the very stream it was started for).
 */
export function producerMetadata(program: string, source: string): Record<string, string> {
  return {
    producer: `${program} ${VERSION}`,
    source,
    created: new Date().toISOString(),
    id: randomBytes(8).toString('hex'),
  }
}
