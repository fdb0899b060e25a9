// Shared by the safety, fuzz and apply tests: streams built in process with
// the real writer, a seed that reproduces a run, temporary directories, and
// the binaries spawned many at a time.

import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Test } from 'tap'
import { StreamKind } from '../../packages/core/src/format.js'
import { StreamParser } from '../../packages/core/src/parse.js'
import { isZero } from '../../packages/core/src/zero.js'
import { binPath, runCommand, type RunResult } from '../lib/run.js'
import { build as buildStream, hash } from '../core/streams.js'

export { buildStream, hash }

/** The seed of a seeded test: BLOCKPIPE_TEST_SEED reproduces a run; printed either way. */
export function testSeed(what: string): number {
  const given = process.env.BLOCKPIPE_TEST_SEED
  const seed = given !== undefined && given !== '' ? Number(given) >>> 0 : (Math.random() * 2 ** 32) >>> 0
  console.log(`# ${what}: seed ${seed} (reproduce with BLOCKPIPE_TEST_SEED=${seed})`)
  return seed
}

/** A temporary directory removed when the test ends. */
export function tempDir(t: { teardown(fn: () => void): void }, name = 'safety'): string {
  const dir = mkdtempSync(join(tmpdir(), `blockpipe-${name}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A block stream of `image`: one record per [offset, length) region, ZERO where the region is all zeros. */
export function blockStream(
  image: Buffer,
  regions: [number, number][],
  options: { full?: boolean; metadata?: Record<string, string>; blockSize?: number } = {},
): Promise<Buffer> {
  return buildStream(
    {
      kind: StreamKind.BLOCK,
      flags: options.full === true ? 1 : 0,
      size: image.length,
      blockSize: options.blockSize ?? 4096,
      metadata: options.metadata ?? {},
    },
    async (w) => {
      for (const [offset, length] of regions) {
        const part = image.subarray(offset, offset + length)
        if (isZero(part)) await w.zero(offset, length)
        else await w.data(offset, Buffer.from(part))
      }
    },
  )
}

/** A full block stream of `image` in records of at most `piece` bytes. */
export function fullStream(image: Buffer, piece = 4096): Promise<Buffer> {
  const regions: [number, number][] = []
  for (let at = 0; at < image.length; at += piece) regions.push([at, Math.min(piece, image.length - at)])
  return blockStream(image, regions, { full: true })
}

/** What bdiff makes of an old and a new image: a delta with base digests. */
export function deltaStream(oldImage: Buffer, newImage: Buffer, chunk: number, seed = 0x5eedn): Promise<Buffer> {
  const image = hash.create(seed)
  const raw = Buffer.alloc(8)
  for (let at = 0; at < newImage.length; at += chunk) {
    raw.writeBigUInt64LE(hash.digest(newImage.subarray(at, at + chunk), seed))
    image.update(raw)
  }
  const init = { kind: StreamKind.DELTA, size: newImage.length, baseSize: oldImage.length, blockSize: chunk, seed }
  return buildStream(
    init,
    async (w) => {
      for (let at = 0; at < newImage.length; at += chunk) {
        const now = newImage.subarray(at, at + chunk)
        const was = oldImage.subarray(at, at + chunk)
        if (was.equals(now)) continue
        const base = at < oldImage.length ? { length: was.length, digest: hash.digest(was, seed) } : undefined
        if (isZero(now)) await w.zero(at, now.length, base)
        else await w.data(at, Buffer.from(now), base)
      }
    },
    image.digest(),
  )
}

/** What bsum makes of an image: one digest per chunk. */
export async function digestStream(image: Buffer, chunk: number, seed = 0x5eedn): Promise<Buffer> {
  const all = hash.create(seed)
  const digests = Buffer.alloc(Math.ceil(image.length / chunk) * 8)
  for (let i = 0; i * chunk < image.length; i++) {
    digests.writeBigUInt64LE(hash.digest(image.subarray(i * chunk, (i + 1) * chunk), seed), i * 8)
  }
  all.update(digests)
  return buildStream(
    { kind: StreamKind.DIGEST, flags: 1, size: image.length, blockSize: chunk, seed },
    async (w) => {
      if (image.length > 0) await w.sums(0, image.length, digests)
    },
    all.digest(),
  )
}

export interface SpawnOptions {
  input?: Buffer
  /** Collect this child's coverage (costs 0.5 MB and some time per process). */
  cover?: boolean
  env?: Record<string, string>
  cwd?: string
  /** ulimit -f: files the child writes stop growing at this many KiB (EFBIG). */
  fileSizeLimit?: number
}

/**
 * The environment of a child without tap's coverage hooks: the tests that
 * spawn hundreds of processes collect coverage from a sample of them only.
 */
export function childEnv(cover: boolean, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, ...extra }
  if (!cover) {
    delete env.NODE_OPTIONS
    delete env.NODE_V8_COVERAGE
    for (const key of Object.keys(env)) if (key.startsWith('_TAPJS_PROCESSINFO')) delete env[key]
  }
  return env
}

/** Runs a blockpipe binary to completion with `input` on stdin. */
export function runTool(program: string, args: string[], options: SpawnOptions = {}): Promise<RunResult> {
  const argv = [process.execPath, binPath(program), ...args]
  const [command, ...rest] =
    options.fileSizeLimit === undefined
      ? argv
      : ['bash', '-c', `ulimit -f ${options.fileSizeLimit}; exec "$@"`, 'bash', ...argv]
  return runCommand(command as string, rest, {
    input: options.input,
    cwd: options.cwd,
    fullEnv: childEnv(options.cover !== false, options.env),
  })
}

/** Runs `fn` over `items`, `concurrency` at a time, in order of start. */
export async function pool<T, R>(
  items: T[],
  concurrency: number,
  fn: (item: T, i: number) => Promise<R>,
): Promise<R[]> {
  const results: R[] = new Array<R>(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++
      results[i] = await fn(items[i] as T, i)
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker))
  return results
}

/** Bytes and modification time of a file, or null when it does not exist. */
export function snapshot(path: string): { bytes: Buffer; mtimeNs: bigint; size: number } | null {
  try {
    const st = statSync(path, { bigint: true })
    return { bytes: readFileSync(path), mtimeNs: st.mtimeNs, size: Number(st.size) }
  } catch {
    return null
  }
}

/** Compares two byte strings; on a difference says where, not a diff of megabytes. */
export function sameBytes(t: Test, actual: Buffer | undefined, expected: Buffer, message = 'same bytes'): boolean {
  const same = actual !== undefined && actual.equals(expected)
  let at = -1
  if (!same && actual !== undefined) {
    at = 0
    while (at < actual.length && at < expected.length && actual[at] === expected[at]) at++
  }
  t.ok(
    same,
    message,
    same ? {} : { actualLength: actual?.length, expectedLength: expected.length, firstDifference: at },
  )
  return same
}

/** Compares two files byte for byte; says where they first differ. */
export function sameFiles(t: Test, actual: string, expected: string, message: string): boolean {
  return sameBytes(t, readFileSync(actual), readFileSync(expected), message)
}

/** Compares two snapshots of a file (bytes and mtime), or asserts both are missing. */
export function sameFile(t: Test, actual: Snapshot | null, expected: Snapshot | null, message = 'unchanged'): void {
  const same =
    actual === expected ||
    (actual !== null && expected !== null && actual.bytes.equals(expected.bytes) && actual.mtimeNs === expected.mtimeNs)
  t.ok(same, message, same ? {} : { actual: describe(actual), expected: describe(expected) })
}

type Snapshot = NonNullable<ReturnType<typeof snapshot>>

function describe(s: Snapshot | null): string {
  return s === null ? 'missing' : `${s.size} bytes, mtime ${s.mtimeNs}`
}

/** Byte offsets where each item of a stream ends (the header first). */
export function recordEnds(stream: Buffer): number[] {
  const parser = new StreamParser(hash)
  parser.push(stream)
  const out: number[] = []
  while (parser.next() !== null) out.push(parser.position)
  return out
}

/** A stand-in for stderr that keeps what is written to it. */
export function textSink(): { stream: NodeJS.WritableStream; text: () => string } {
  let text = ''
  const stream = {
    write: (s: string) => {
      text += s
      return true
    },
  } as unknown as NodeJS.WritableStream
  return { stream, text: () => text }
}
