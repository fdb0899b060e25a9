import { Readable } from 'node:stream'
import t from 'tap'
import { io } from '../lib/io.js'
import { CancelledError, abortable, checkCancelled } from '../../packages/core/src/cancel.js'
import { runMain } from '../../packages/core/src/cli.js'

t.afterEach(() => {
  process.exitCode = 0
})

void t.test('a cancellation exits as a shell reports the signal', (t) => {
  t.equal(new CancelledError('SIGINT').exitCode, 130)
  t.equal(new CancelledError('SIGTERM').exitCode, 143)
  const hup = new CancelledError('SIGHUP').extend(': t.img is untouched')
  t.equal(hup.exitCode, 129)
  t.equal(hup.code, 'ECANCELED')
  t.equal(hup.message, 'interrupted by SIGHUP: t.img is untouched')
  checkCancelled(undefined)
  checkCancelled(new AbortController().signal)
  const c = new AbortController()
  c.abort(hup)
  t.throws(() => checkCancelled(c.signal), hup)
  t.end()
})

void t.test('runMain, cancellable: a signal aborts main, a second one is only noted', async (t) => {
  for (const [signal, status] of [
    ['SIGINT', 130],
    ['SIGTERM', 143],
    ['SIGHUP', 129],
  ] as const) {
    const fake = io()
    const before = process.listenerCount(signal)
    const main = async (abort: AbortSignal): Promise<void> => {
      process.emit(signal)
      process.emit(signal)
      await Promise.resolve()
      checkCancelled(abort)
    }
    t.equal(await runMain('era-apply', main, { cancellable: true, io: fake.io }), status)
    t.equal(
      fake.stderr(),
      `era-apply: ${signal}: already stopping at a safe point, please wait\nera-apply: interrupted by ${signal}\n`,
    )
    t.equal(process.listenerCount(signal), before, 'the handlers are gone once main is done')
  }
  // Not cancellable (the default), and the real stdio by default.
  let aborted: boolean | undefined
  let during = -1
  const before = process.listenerCount('SIGINT')
  const main = async (abort: AbortSignal): Promise<void> => {
    aborted = abort.aborted
    during = process.listenerCount('SIGINT')
    await Promise.resolve()
  }
  t.equal(await runMain('bsum', main), 0)
  t.equal(aborted, false)
  t.equal(during, before, 'no handler: a signal ends the process')
})

async function drain(source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>): Promise<number> {
  let n = 0
  for await (const chunk of source) n += chunk.length
  return n
}

void t.test('abortable: a source that stops at a signal, even while it waits', async (t) => {
  const plain = [Buffer.alloc(3)]
  t.equal(abortable(plain, undefined), plain, 'no signal: the source itself')
  // A synchronous source of 40 MiB gives the event loop turns: a signal sent meanwhile is seen.
  const big = Array.from({ length: 40 }, () => Buffer.alloc(1 << 20))
  const c = new AbortController()
  t.equal(await drain(abortable(big, c.signal)), 40 << 20)
  let turns = 0
  const counting = (function* () {
    for (const chunk of big) {
      setImmediate(() => turns++)
      yield chunk
    }
  })()
  const later = new AbortController()
  setImmediate(() => later.abort(new CancelledError('SIGTERM')))
  await t.rejects(drain(abortable(counting, later.signal)), { code: 'ECANCELED' })
  t.ok(turns < 40, 'stopped before the end')
  // Already aborted: not one chunk.
  await t.rejects(drain(abortable(plain, later.signal)), { message: 'interrupted by SIGTERM' })
  // A pipe whose writer is idle: the pending read is abandoned and the stream destroyed.
  const idle = new Readable({ read() {} })
  idle.push(Buffer.alloc(5))
  const waiting = new AbortController()
  const got: number[] = []
  const pending = (async () => {
    for await (const chunk of abortable(idle, waiting.signal)) got.push(chunk.length)
  })()
  setTimeout(() => waiting.abort(new CancelledError('SIGINT')), 20)
  await t.rejects(pending, { message: 'interrupted by SIGINT' })
  t.same(got, [5])
  t.ok(idle.destroyed)
})
