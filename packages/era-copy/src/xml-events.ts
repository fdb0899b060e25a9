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

// A tag: close, open or self-closing element; or a declaration, comment or
// processing instruction, which carry no structure.
const TAG = /<(\/?)([A-Za-z_][\w.:-]*)((?:[^>"']|"[^"]*"|'[^']*')*?)(\/?)>|<\?[\s\S]*?\?>|<!--[\s\S]*?-->|<![^>]*>/g

interface ScannedTag {
  kind: 'open' | 'close' | 'empty'
  name: string
  raw: string
  line: number
}

type Node = Record<string, unknown> & { ':@'?: Record<string, string> }

/** Events of a document read from `source`, a batch at a time. */
export async function* xmlEvents(source: AsyncIterable<Buffer | string>): AsyncGenerator<XmlEvent[]> {
  const decoder = new StringDecoder('utf8')
  const stack: ScannedTag[] = []
  let pending = ''
  let line = 1
  let rootClosed = false
  let sawRoot = false

  const batch = (text: string): XmlEvent[] => {
    const start = [...stack]
    const tags = scan(text, line, stack)
    if (tags.length > 0 && rootClosed) {
      throw new XmlInputError(`line ${(tags[0] as ScannedTag).line}: more XML after the end of the document`)
    }
    sawRoot ||= tags.some((t) => t.kind !== 'close')
    rootClosed = sawRoot && stack.length === 0
    line += countLines(text)
    if (tags.length === 0) return []
    const doc =
      start.map((t) => t.raw).join('') +
      text +
      [...stack]
        .reverse()
        .map((t) => `</${t.name}>`)
        .join('')
    let nodes: Node[]
    try {
      nodes = parser.parse(doc, true) as Node[]
    } catch (err) {
      const message = (err as Error).message
      const at = /:(\d+):(\w+)$/.exec(message)
      const where = at ? (tags[0] as ScannedTag).line + Number(at[1]) - 1 : (tags[0] as ScannedTag).line
      throw new XmlInputError(`line ${where}: malformed XML: ${message.replace(/:\d+:\w+$/, '')}`)
    }
    const events: XmlEvent[] = []
    const cursor = {
      opens: tags.filter((t) => t.kind !== 'close').map((t) => t.line),
      closes: tags.filter((t) => t.kind !== 'open').map((t) => t.line),
      open: 0,
      close: 0,
    }
    walk(nodes, 0, true, true, { before: start.length, after: stack.length }, events, cursor)
    return events
  }

  for await (const chunk of source) {
    pending += typeof chunk === 'string' ? chunk : decoder.write(chunk)
    const cut = pending.lastIndexOf('>') + 1
    if (cut === 0) {
      if (pending.length > MAX_PENDING) {
        throw new XmlInputError(`line ${line}: no complete XML tag in the first ${MAX_PENDING} bytes`)
      }
      continue
    }
    const text = pending.slice(0, cut)
    pending = pending.slice(cut)
    const events = batch(text)
    if (events.length > 0) yield events
  }
  pending += decoder.end()
  if (pending.trim() !== '') {
    throw new XmlInputError(`line ${line}: text after the last tag: ${JSON.stringify(pending.trim().slice(0, 40))}`)
  }
  if (!sawRoot) throw new XmlInputError('empty input: no XML at all')
  if (stack.length > 0) {
    throw new XmlInputError(
      `unexpected end of input: <${(stack[stack.length - 1] as ScannedTag).name}> is never closed (was the XML cut off?)`,
    )
  }
}

function countLines(text: string): number {
  let n = 0
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) n++
  return n
}

/** The element tags of `text`, keeping `stack` as the elements open after it. */
function scan(text: string, firstLine: number, stack: ScannedTag[]): ScannedTag[] {
  const tags: ScannedTag[] = []
  let line = firstLine
  let last = 0
  TAG.lastIndex = 0
  for (let m = TAG.exec(text); m !== null; m = TAG.exec(text)) {
    line += countLines(text.slice(last, m.index))
    last = m.index
    const name = m[2]
    if (name === undefined) continue
    const kind = m[1] === '/' ? 'close' : m[4] === '/' ? 'empty' : 'open'
    const tag: ScannedTag = { kind, name, raw: m[0], line }
    if (kind === 'open') stack.push(tag)
    else if (kind === 'close') {
      const open = stack.pop()
      if (open?.name !== name) {
        throw new XmlInputError(
          `line ${line}: </${name}> does not close ${open ? `<${open.name}> (line ${open.line})` : 'any open element'}`,
        )
      }
    }
    tags.push(tag)
  }
  return tags
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
