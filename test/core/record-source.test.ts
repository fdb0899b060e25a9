import { closeSync, openSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { checkStream } from '../../packages/core/src/inspect.js'
import { FileSource } from '../../packages/core/src/read.js'
import { EMPTY_WARNING, ERARANGE_WARNING, openRecordSource, sniffInput } from '../../packages/core/src/record-source.js'
import { fixture } from '../erarange/lib.js'
import { hash, sampleStream } from './streams.js'

// One look at the input decides its format; the reader of that format then
// gets it from its first byte, whatever kind of source it is.

function fileSource(dir: string, name: string, bytes: Buffer): FileSource {
  const path = join(dir, name)
  writeFileSync(path, bytes)
  const fd = openSync(path, 'r')
  t.teardown(() => closeSync(fd))
  return new FileSource(fd)
}

async function all(source: Iterable<Uint8Array> | AsyncIterable<Uint8Array>): Promise<Buffer> {
  const out: Uint8Array[] = []
  for await (const chunk of source) out.push(chunk)
  return Buffer.concat(out)
}

void t.test('sniffing: blockpipe, ERARANGE, empty, a scrap of the magic; nothing is lost', async (t) => {
  const dir = t.testdir()
  const stream = await sampleStream()
  const legacy = fixture('basic')
  const cases: [string, Buffer, string][] = [
    ['blockpipe', stream, 'blockpipe'],
    ['erarange', legacy, 'erarange'],
    ['empty', Buffer.alloc(0), 'empty'],
    ['a scrap of the magic', Buffer.from('ERAR'), 'blockpipe'],
  ]
  for (const [what, bytes, format] of cases) {
    // In pieces of 3 bytes, and as a file read with exactly the reads asked for.
    const pieces = Array.from({ length: Math.ceil(bytes.length / 3) }, (_, i) => bytes.subarray(i * 3, i * 3 + 3))
    for (const input of [pieces, fileSource(dir, what, bytes)]) {
      const sniffed = await sniffInput(input)
      t.equal(sniffed.format, format, what)
      t.ok((await all(sniffed.source)).equals(bytes), `${what}: every byte again`)
    }
  }
})

void t.test('a file put back: reads across and within the bytes looked at', (t) => {
  const dir = t.testdir()
  const source = fileSource(dir, 'f', Buffer.from('0123456789'))
  const head = source.read(4)
  source.unread(head)
  t.equal(source.read(2).toString(), '01')
  t.equal(source.read(5).toString(), '23456')
  t.equal(source.read(10).toString(), '789')
  t.end()
})

void t.test('record sources: the reader of each format, empty only when accepted', async (t) => {
  const stream = await sampleStream()
  const blockpipe = await openRecordSource([stream], hash)
  t.equal(blockpipe.format, 'blockpipe')
  t.same(blockpipe.warnings, [])
  const legacy = await openRecordSource([fixture('basic')], hash)
  t.equal(legacy.format, 'erarange')
  t.same(legacy.warnings, [ERARANGE_WARNING])
  const empty = await openRecordSource([], hash, { acceptEmpty: true })
  t.same(empty.warnings, [EMPTY_WARNING])
  if (empty.format !== 'erarange') throw new Error('not erarange')
  for await (const item of empty.items()) t.fail(`no items: ${item.type}`)
  t.equal(empty.parser.summary.records, 0)
  await t.rejects(openRecordSource([], hash), { code: 'ETRUNCATED', message: 'empty input: no stream at all' })
})

void t.test('checkStream: what era-apply applies, described; warnings first', async (t) => {
  const warned: string[] = []
  const warn = (text: string): number => warned.push(text)
  const block = await checkStream([await sampleStream()], { warn })
  t.match(block.join('\n'), /^kind: .*\n[^]*verified: +every record checksum/)
  t.same(warned, [])
  const legacy = await checkStream([fixture('basic')], { warn })
  t.match(legacy, [/^format: +ERARANGE/, /^records: +3$/])
  t.same(warned, [ERARANGE_WARNING])
  const empty = await checkStream([], { acceptEmpty: true })
  t.match(empty, [/^format: +ERARANGE/, /^records: +0$/, /^data: +0 bytes/])
  await t.rejects(checkStream([]), { code: 'ETRUNCATED' })
  await t.rejects(checkStream([fixture('cut-data')]), { code: 'ETRUNCATED' })
})
