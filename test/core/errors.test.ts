import t from 'tap'
import {
  BlockpipeError,
  ConflictError,
  CorruptStreamError,
  EXIT_CONFLICT,
  EXIT_FAILURE,
  EXIT_USAGE,
  TrailingDataError,
  TruncatedStreamError,
  UsageError,
  extendStreamError,
  isBlockpipeError,
  isStreamError,
  type ErrorCode,
} from '../../packages/core/src/errors.js'

void t.test('each code has its exit status: 2 usage, 3 conflict, 1 the rest', (t) => {
  t.equal(EXIT_FAILURE, 1)
  t.equal(EXIT_USAGE, 2)
  t.equal(EXIT_CONFLICT, 3)
  const statuses: [ErrorCode, number][] = [
    ['EUSAGE', 2],
    ['ETRUNCATED', 1],
    ['ECORRUPT', 1],
    ['EBADSTREAM', 1],
    ['ECONFLICT', 3],
    ['EDEVICE', 1],
    ['EINPUT', 1],
  ]
  for (const [code, status] of statuses) {
    const e = new BlockpipeError(code, `failed with ${code}`)
    t.equal(e.exitCode, status, code)
    t.equal(e.code, code)
    t.equal(e.name, 'BlockpipeError')
    t.equal(e.message, `failed with ${code}`)
    t.type(e, Error)
  }
  t.end()
})

void t.test('the error classes carry what their catcher needs', (t) => {
  const u = new UsageError('bad flag')
  t.match(u, { name: 'UsageError', code: 'EUSAGE', exitCode: 2, message: 'bad flag' })
  t.type(u, BlockpipeError)

  const c = new ConflictError('the target is not the base', 4096)
  t.match(c, { name: 'ConflictError', code: 'ECONFLICT', exitCode: 3, offset: 4096 })
  t.equal(new ConflictError('no offset').offset, undefined)

  const tr = new TruncatedStreamError('cut', { record: 3, offset: 1000 })
  t.match(tr, { name: 'TruncatedStreamError', code: 'ETRUNCATED', exitCode: 1, position: { record: 3, offset: 1000 } })

  const co = new CorruptStreamError('ECORRUPT', 'bad sum', { record: 1, offset: 80 })
  t.match(co, { name: 'CorruptStreamError', code: 'ECORRUPT', exitCode: 1, position: { record: 1, offset: 80 } })
  t.equal(new CorruptStreamError('EBADSTREAM', 'rule', { record: 0, offset: 0 }).code, 'EBADSTREAM')

  for (const e of [u, c, tr, co]) t.equal(isBlockpipeError(e), true)
  for (const e of [new Error('x'), Object.assign(new Error('x'), { code: 'EUSAGE' }), null, undefined, 'EUSAGE']) {
    t.equal(isBlockpipeError(e), false)
  }
  t.end()
})

void t.test('trailing data keeps its kind when a message is added', (t) => {
  const e = new TrailingDataError({ record: 3, offset: 500 })
  t.equal(e.code, 'EBADSTREAM')
  t.equal(e.exitCode, 1)
  t.type(e, CorruptStreamError)
  t.ok(isStreamError(e))
  t.match(e.message, /^trailing data after the end record at byte 500: the stream is whole up to there/)
  const more = extendStreamError(e, ': what the target holds')
  t.type(more, TrailingDataError)
  t.same(more.position, { record: 3, offset: 500 })
  t.equal(more.message, `${e.message}: what the target holds`)
  t.end()
})
