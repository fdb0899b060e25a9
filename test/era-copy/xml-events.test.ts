import { XMLParser } from 'fast-xml-parser'
import t from 'tap'
import { XmlInputError, xmlEvents, type XmlEvent } from '../../packages/era-copy/src/xml-events.js'

// The XML arrives in pieces of any size (a pipe, gzip, ssh): wherever the
// pieces are cut, the events must be the same, with the same line numbers.

interface Outcome {
  events: XmlEvent[]
  batches: number
  error?: string
}

async function* pieces(parts: (string | Buffer)[]): AsyncGenerator<string | Buffer> {
  for (const p of parts) {
    await Promise.resolve() // as from a pipe: each piece in a turn of its own
    yield p
  }
}

async function read(parts: (string | Buffer)[]): Promise<Outcome> {
  const out: Outcome = { events: [], batches: 0 }
  try {
    for await (const batch of xmlEvents(pieces(parts))) {
      out.batches++
      out.events.push(...batch)
    }
  } catch (err) {
    if (!(err instanceof XmlInputError)) throw err
    out.error = err.message
  }
  return out
}

/** Cut into pieces of `size` bytes (a Buffer, so a UTF-8 character may be cut too). */
function bytePieces(text: string | Buffer, size: number): Buffer[] {
  const all = Buffer.from(text)
  const out: Buffer[] = []
  for (let at = 0; at < all.length; at += size) out.push(all.subarray(at, at + size))
  return out
}

const open = (name: string, line: number, attributes: Record<string, string> = {}): XmlEvent => ({
  type: 'open',
  name,
  attributes,
  line,
})
const close = (name: string, line: number): XmlEvent => ({ type: 'close', name, line })

// Everything that must survive a cut: a declaration, comments holding '>'
// and a tag, nested elements, a tag over several lines, '>' and quotes inside
// attribute values, a multi-byte character.
const DOC = `<?xml version="1.0" encoding="UTF-8"?>
<!-- era_invalidate > output, <blocks> -->
<root a="1">
  <outer x='it"s' y="a>b">
    <inner n="1"/>
    <!-- nested > comment -->
    <inner
      n="2"
      label="ünï"/>
    <deep><deeper/></deep>
  </outer>
  <empty></empty>
</root>
`

const DOC_EVENTS: XmlEvent[] = [
  open('root', 3, { a: '1' }),
  open('outer', 4, { x: 'it"s', y: 'a>b' }),
  open('inner', 5, { n: '1' }),
  close('inner', 5),
  open('inner', 7, { n: '2', label: 'ünï' }),
  close('inner', 7),
  open('deep', 10),
  open('deeper', 10),
  close('deeper', 10),
  close('deep', 10),
  close('outer', 11),
  open('empty', 12),
  close('empty', 12),
  close('root', 13),
]

void t.test('the whole document at once', async (t) => {
  const got = await read([DOC])
  t.same(got, { events: DOC_EVENTS, batches: 1 })
})

void t.test('cut in two at every character and every byte: the same events', async (t) => {
  for (let i = 0; i <= DOC.length; i++) {
    const got = await read([DOC.slice(0, i), DOC.slice(i)])
    if (!t.strictSame(got.events, DOC_EVENTS, `string cut at ${i}`) || got.error !== undefined) return
  }
  const bytes = Buffer.from(DOC)
  for (let i = 0; i <= bytes.length; i++) {
    const got = await read([bytes.subarray(0, i), bytes.subarray(i)])
    if (!t.strictSame(got.events, DOC_EVENTS, `byte cut at ${i}`) || got.error !== undefined) return
  }
})

void t.test('cut in three anywhere: the same events', async (t) => {
  const doc = `<a x="1>2">\n<!-- <b> > -->\n<c d='>'/></a>\n`
  const expected = [open('a', 1, { x: '1>2' }), open('c', 3, { d: '>' }), close('c', 3), close('a', 3)]
  for (let i = 0; i <= doc.length; i++) {
    for (let j = i; j <= doc.length; j++) {
      const got = await read([doc.slice(0, i), doc.slice(i, j), doc.slice(j)])
      if (!t.strictSame(got, { events: expected, batches: got.batches }, `cut at ${i} and ${j}`)) return
    }
  }
})

void t.test('one byte at a time', async (t) => {
  const got = await read(bytePieces(DOC, 1))
  t.strictSame(got.events, DOC_EVENTS)
  t.equal(got.error, undefined)
})

void t.test('events come in batches as the input arrives, not at its end', async (t) => {
  let sent = 0
  async function* slow(): AsyncGenerator<string> {
    await Promise.resolve()
    yield '<blocks>\n'
    for (let i = 0; i < 3; i++) {
      sent++
      yield `<range begin="${i * 10}" end="${i * 10 + 1}"/>\n`
    }
    yield '</blocks>\n'
  }
  const seen: number[] = []
  for await (const batch of xmlEvents(slow())) seen.push(sent, batch.length)
  // Each range's open and close arrive while its piece is the newest sent.
  t.strictSame(seen, [0, 1, 1, 2, 2, 2, 3, 2, 3, 1])
})

void t.test('declarations, comments and processing instructions give no events', async (t) => {
  const got = await read([
    '<?xml version="1.0"?>\n<!DOCTYPE blocks>\n<!-- x -->\n<?pi data?>\n<blocks/>\n<!-- after -->\n',
  ])
  t.strictSame(got, { events: [open('blocks', 5), close('blocks', 5)], batches: 1 })
})

void t.test('malformed input: an error naming the line', async (t) => {
  const cases: [string, (string | Buffer)[], RegExp][] = [
    ['mismatched close', ['<a>\n<b>\n</a>'], /^line 3: <\/a> does not close <b> \(line 2\)$/],
    ['close with nothing open', ['\n</a>'], /^line 2: <\/a> does not close any open element$/],
    ['unquoted attribute value', ['<a>\n\n<b x=1/>\n</a>'], /^line 3: malformed XML: Attribute 'x' is without value/],
    ['repeated attribute', ['<a>\n<b x="1" x="2"/></a>'], /^line 2: malformed XML: Attribute 'x' is repeated/],
    ['unclosed root', ['<blocks>\n<range begin="0" end="3"/>\n'], /^unexpected end of input: <blocks> is never closed/],
    ['unclosed nested', ['<a><b>'], /<b> is never closed/],
    ['text after the root', ['<a/>\n\n  trailing'], /^line 3: text after the end of the document: "t/],
    ['text inside', ['<a>\n  x <b/></a>'], /^line 2: unexpected text "x/],
    ['text before the root', ['junk\n<a/>'], /^line 1: unexpected text "j/],
    ['entity text', ['<a>&amp;</a>'], /^line 1: unexpected text "&/],
    ['CDATA', ['<a>\n<![CDATA[ 5 ]]></a>'], /^line 2: unexpected CDATA text$/],
    ['a second root', ['<a/>\n<a/>'], /^line 2: more XML after the end of the document: <a>$/],
    ['a second root, open', ['<a></a><b>'], /^line 1: more XML after the end of the document: <b>$/],
    ['empty input', [''], /^empty input: no XML at all$/],
    ['only whitespace and a comment', ['  \n<!-- c -->\n'], /^empty input: no XML at all$/],
    [
      'ends inside a tag',
      ['<a>\n<b x="1"'],
      /^line 2: the input ends inside unfinished or malformed markup: "<b x=\\"1\\""$/,
    ],
    ['ends inside a comment', ['<a/><!-- x'], /^line 1: the input ends inside unfinished/],
    ['a bare <', ['<a>\n< b/></a>'], /^line 2: the input ends inside unfinished or malformed markup/],
    ['cut UTF-8 at the end', [Buffer.from('<a/>'), Buffer.from([0xc3])], /^line 1: text after the end/],
  ]
  for (const [name, parts, message] of cases) {
    const whole = await read(parts)
    t.match(whole.error, message, name)
    // The same error wherever the input is cut.
    const text = Buffer.concat(parts.map((p) => Buffer.from(p)))
    const onebyte = await read(bytePieces(text, 1))
    t.match(onebyte.error, message, `${name}, one byte at a time`)
  }
})

void t.test('malformed XML after earlier batches: the line counts from the start of the input', async (t) => {
  const got = await read(['<blocks\n  a="1">\n', '\n', '<range begin="0" end="1"/>\n\n<range begin=0/>\n</blocks>\n'])
  t.equal(got.error, "line 6: malformed XML: Attribute 'begin' is without value.")
  // The batch with the error delivers none of its events.
  t.strictSame(got.events, [open('blocks', 1, { a: '1' })])
})

void t.test('a tag longer than the limit is refused, naming its line', async (t) => {
  const big = 'x'.repeat(64 * 1024)
  const parts = ['<blocks>\n<range begin="0" end="1"/>\n<range note="']
  for (let i = 0; i < 20; i++) parts.push(big)
  parts.push('"/></blocks>')
  const got = await read(parts)
  t.equal(got.error, 'line 3: no end to this XML markup within 1048576 bytes')
  t.equal(got.events.length, 3, 'the events before it were delivered')
  // Just under the limit is fine.
  const fits = await read(['<a note="', 'y'.repeat(1024 * 1024 - 20), '"/>'])
  t.equal(fits.error, undefined)
  t.equal(fits.events.length, 2)
})

void t.test('errors are XmlInputError, exit status 1', async (t) => {
  const err = await (async () => {
    for await (const _ of xmlEvents(pieces(['<a>']))) void _
  })().catch((e: unknown) => e)
  t.type(err, XmlInputError)
  t.equal((err as XmlInputError).name, 'XmlInputError')
  t.equal((err as XmlInputError).exitCode, 1)
  t.equal((err as XmlInputError).code, 'EINPUT')
})

void t.test('a parser error without a position names the line of the batch', async (t) => {
  // fast-xml-parser gives every error found so far a position; should one
  // come without, the line of the batch's first tag is named.
  t.capture(XMLParser.prototype, 'parse', () => {
    throw new Error('no position here')
  })
  const got = await read(['\n\n  <a/>'])
  t.equal(got.error, 'line 3: malformed XML: no position here')
})
