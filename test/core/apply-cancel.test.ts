import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { applyStream, type ApplyOptions } from '../../packages/core/src/apply.js'
import { CancelledError } from '../../packages/core/src/cancel.js'
import { randomBytes } from '../lib/data.js'
import { BASIC, record } from '../erarange/lib.js'
import { fullStream, tempDir } from '../safety/lib.js'

// A signal that came before the first record: what each apply path says it
// left. (test/safety/signals.test.ts sends real signals to the real binaries.)

/** The stream's first `at` bytes, then SIGTERM, as runMain would abort on it. */
function apply(stream: Buffer, target: string, options: Partial<ApplyOptions> = {}, at = 100) {
  const c = new AbortController()
  const input = (function* () {
    yield stream.subarray(0, at)
    c.abort(new CancelledError('SIGTERM'))
    yield stream.subarray(at)
  })()
  return applyStream(input, { program: 'era-apply', target, signal: c.signal, ...options })
}

void t.test('cancelled before the first write: the target is not created, or untouched', async (t) => {
  const dir = tempDir(t, 'apply-cancel')
  const image = randomBytes(64 * 1024, 1)
  const stream = await fullStream(image)
  const fresh = join(dir, 'new.img')
  await t.rejects(apply(stream, fresh), {
    code: 'ECANCELED',
    exitCode: 143,
    message: `interrupted by SIGTERM: ${fresh} was not created (nothing is left at that name); run the same command again`,
  })
  t.notOk(existsSync(fresh))
  const old = join(dir, 'old.img')
  const before = randomBytes(64 * 1024, 2)
  writeFileSync(old, before)
  await t.rejects(apply(stream, old), {
    message: `interrupted by SIGTERM: ${old} is untouched (nothing was written to it)`,
  })
  t.same(readFileSync(old), before)
  // --spool: stopped while the stream is stored, before the target is opened.
  const spools = join(dir, 'spools')
  mkdirSync(spools)
  await t.rejects(apply(stream, old, { spool: spools }), {
    code: 'ECANCELED',
    message: new RegExp(`^interrupted by SIGTERM: nothing was written to ${old}`),
  })
  t.same(readFileSync(old), before)
})

void t.test('cancelled before the first write of a stream of the original era_copy', async (t) => {
  const dir = tempDir(t, 'apply-cancel')
  const old = join(dir, 'old.img')
  const before = randomBytes(4096, 3)
  writeFileSync(old, before)
  const stream = Buffer.concat(BASIC.map(([offset, data]) => record(offset, data)))
  const spools = join(dir, 'spools')
  mkdirSync(spools)
  for (const options of [{}, { spool: spools }]) {
    await t.rejects(apply(stream, old, options, 20), { code: 'ECANCELED', message: /^interrupted by SIGTERM: / })
    t.same(readFileSync(old), before)
  }
})

void t.test('cancelled after a write, without --undo: continue with the same command', async (t) => {
  const dir = tempDir(t, 'apply-cancel')
  const old = join(dir, 'old.img')
  writeFileSync(old, randomBytes(256 * 1024, 4))
  const stream = await fullStream(randomBytes(256 * 1024, 5), 64 * 1024)
  await t.rejects(apply(stream, old, {}, stream.length / 2), {
    code: 'ECANCELED',
    message: new RegExp(
      `^interrupted by SIGTERM: ${old} is partly updated \\(\\d+ records applied, part new, part old\\): ` +
        'run the same command again with the whole stream to continue$',
    ),
  })
})
