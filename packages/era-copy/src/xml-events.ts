import { StringDecoder } from 'node:string_decoder'
import { BlockpipeError } from '@blockpipe/core'
import { XMLParser } from 'fast-xml-parser'

// era_invalidate and thin_delta print shallow documents whose lists can run
// to hundreds of megabytes, so the XML is never parsed as one document. The
// text is cut after the last complete tag that has arrived; a light scan of
// the tags keeps the stack of elements still open; and each batch is parsed
// by fast-xml-parser as a document of its own, with the open elements
// re-opened before it and closed after it. Those stand-ins produce no events.

/** Most bytes held while waiting for a tag to end. */
const MAX_PENDING = 1024 * 1024

export type XmlEvent =
  | { type: 'open'; name: string; attributes: Record<string, string>; line: number }
  | { type: 'close'; name: string; line: number }

export class XmlInputError extends BlockpipeError {
  constructor(message: string) {
    super('EINPUT', message)
    this.name = 'XmlInputError'
  }
}

const parser = new XMLParser({
  ignoreAttributes: false,
  attributeNamePrefix: '',
  parseAttributeValue: false,
  parseTagValue: false,
  preserveOrder: true,
})

// One piece of the document, matched where the last one ended: a run of
// text; an element tag (close, open or self-closing); a processing
// instruction or <?xml?> declaration; a comment; another <!...> declaration.
// Quoted attribute values and comments are matched whole, so a '>' inside
// them does not end a piece. A piece not complete yet does not match.
const TOKEN =
  /([^<]+)|<(\/?)([A-Za-z_][\w.:-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>|<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<!(?!--)([^>]*)>/y

interface ScannedTag {
  kind: 'open' | 'close' | 'empty'
  name: string
  raw: string
  line: number
}

/** What the scan knows between batches. */
interface ScanState {
  /** Elements open, outermost first. */
  stack: ScannedTag[]
  /** Line of the first byte not scanned yet. */
  line: number
  sawRoot: boolean
}

type Node = Record<string, unknown> & { ':@'?: Record<string, string> }

/** Events of a document read from `source`, a batch at a time. */
export async function* xmlEvents(source: AsyncIterable<Buffer | string>): AsyncGenerator<XmlEvent[]> {
  const decoder = new StringDecoder('utf8')
  const state: ScanState = { stack: [], line: 1, sawRoot: false }
  let pending = ''

  // The complete pieces at the start of `pending`, parsed as one batch.
  const batch = (): XmlEvent[] => {
    const start = [...state.stack]
    const firstLine = state.line
    const { tags, cut } = scan(pending, state)
    const text = pending.slice(0, cut)
    pending = pending.slice(cut)
    if (pending.length > MAX_PENDING) {
      throw new XmlInputError(`line ${state.line}: no end to this XML markup within ${MAX_PENDING} bytes`)
    }
    if (tags.length === 0) return []
    const prefix = start.map((t) => t.raw).join('')
    const doc =
      prefix +
      text +
      [...state.stack]
        .reverse()
        .map((t) => `</${t.name}>`)
        .join('')
    let nodes: Node[]
    try {
      nodes = parser.parse(doc, true) as Node[]
    } catch (err) {
      const message = (err as Error).message
      const at = /:(\d+):(\w+)$/.exec(message)
      const where = at ? firstLine + Number(at[1]) - 1 - countLines(prefix) : (tags[0] as ScannedTag).line
      throw new XmlInputError(`line ${where}: malformed XML: ${message.replace(/:\d+:\w+$/, '')}`)
    }
    const events: XmlEvent[] = []
    const cursor = {
      opens: tags.filter((t) => t.kind !== 'close').map((t) => t.line),
      closes: tags.filter((t) => t.kind !== 'open').map((t) => t.line),
      open: 0,
      close: 0,
    }
    walk(nodes, 0, true, true, { before: start.length, after: state.stack.length }, events, cursor)
    return events
  }

  for await (const chunk of source) {
    pending += typeof chunk === 'string' ? chunk : decoder.write(chunk)
    const events = batch()
    if (events.length > 0) yield events
  }
  pending += decoder.end()
  batch() // Only U+FFFD can come from the decoder now: no tag ends, the scan refuses it as text.
  if (pending !== '') {
    throw new XmlInputError(
      `line ${state.line}: the input ends inside unfinished or malformed markup: ${JSON.stringify(pending.slice(0, 40))}`,
    )
  }
  if (!state.sawRoot) throw new XmlInputError('empty input: no XML at all')
  if (state.stack.length > 0) {
    throw new XmlInputError(
      `unexpected end of input: <${(state.stack[state.stack.length - 1] as ScannedTag).name}> is never closed (was the XML cut off?)`,
    )
  }
}

function countLines(text: string): number {
  let n = 0
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++
  return n
}

/**
 * The element tags among the complete pieces at the start of `text` and
 * where those pieces end; `state` moves past them. Text other than
 * whitespace, CDATA and a second root element are refused here: the events
 * carry no text, so nothing may be dropped quietly.
 */
function scan(text: string, state: ScanState): { tags: ScannedTag[]; cut: number } {
  const tags: ScannedTag[] = []
  const stack = state.stack
  TOKEN.lastIndex = 0
  let cut = 0
  for (let m = TOKEN.exec(text); m !== null; m = TOKEN.exec(text)) {
    const line = state.line
    state.line += countLines(m[0])
    cut = TOKEN.lastIndex
    const [raw, chars, slash, name, , selfClosing, declaration] = m
    if (chars !== undefined) {
      const at = chars.search(/\S/)
      if (at < 0) continue
      const where = `line ${line + countLines(chars.slice(0, at))}`
      const what = JSON.stringify(chars.trim().slice(0, 40))
      throw new XmlInputError(
        state.sawRoot && stack.length === 0
          ? `${where}: text after the end of the document: ${what}`
          : `${where}: unexpected text ${what}`,
      )
    }
    if (declaration?.startsWith('[CDATA[')) throw new XmlInputError(`line ${line}: unexpected CDATA text`)
    if (name === undefined) continue
    const kind = slash === '/' ? 'close' : selfClosing === '/' ? 'empty' : 'open'
    const tag: ScannedTag = { kind, name, raw, line }
    if (kind === 'close') {
      const open = stack.pop()
      if (open?.name !== name) {
        throw new XmlInputError(
          `line ${line}: </${name}> does not close ${open ? `<${open.name}> (line ${open.line})` : 'any open element'}`,
        )
      }
    } else {
      if (state.sawRoot && stack.length === 0) {
        throw new XmlInputError(`line ${line}: more XML after the end of the document: <${name}>`)
      }
      state.sawRoot = true
      if (kind === 'open') stack.push(tag)
    }
    tags.push(tag)
  }
  return { tags, cut }
}

interface LineCursor {
  opens: number[]
  closes: number[]
  open: number
  close: number
}

function walk(
  nodes: Node[],
  depth: number,
  leftEdge: boolean,
  rightEdge: boolean,
  open: { before: number; after: number },
  events: XmlEvent[],
  cursor: LineCursor,
): void {
  nodes.forEach((node, i) => {
    const name = Object.keys(node).find((k) => k !== ':@') as string
    if (name.startsWith('?')) return
    /* c8 ignore next 4 -- scan() refuses every piece of text but whitespace, which the parser drops */
    if (name === '#text') {
      const line = cursor.opens[cursor.open] ?? cursor.closes[cursor.close]
      throw new XmlInputError(`near line ${line}: unexpected text ${JSON.stringify(String(node[name]).slice(0, 40))}`)
    }
    const left = leftEdge && i === 0
    const right = rightEdge && i === nodes.length - 1
    if (!(left && depth < open.before)) {
      const line = cursor.opens[cursor.open++] as number
      events.push({ type: 'open', name, attributes: node[':@'] ?? {}, line })
    }
    walk(node[name] as Node[], depth + 1, left, right, open, events, cursor)
    if (!(right && depth < open.after)) {
      events.push({ type: 'close', name, line: cursor.closes[cursor.close++] as number })
    }
  })
}
