import { XmlInputError, xmlEvents } from './xml-events.js'

// era_invalidate prints the era blocks written since an era:
//
//   <blocks>
//     <range begin="0" end = "3"/>     (0.9; 1.x writes end="3")
//     <block block="8"/>
//   </blocks>
//
// `end` is exclusive; ranges come sorted and merged. Block numbers count era
// blocks, not sectors or bytes.

/** Era blocks [begin, end). */
export interface BlockRange {
  begin: number
  end: number
}

export function blockNumber(attributes: Record<string, string>, name: string, element: string, line: number): number {
  const text = attributes[name]
  if (text === undefined) throw new XmlInputError(`line ${line}: <${element}> lacks its ${name} attribute`)
  if (!/^\s*\d+\s*$/.test(text) || !Number.isSafeInteger(Number(text))) {
    throw new XmlInputError(`line ${line}: <${element} ${name}="${text}">: not a block number`)
  }
  return Number(text)
}

/** The ranges of an era_invalidate document, a batch at a time, in order. */
export async function* eraInvalidateRanges(source: AsyncIterable<Buffer | string>): AsyncGenerator<BlockRange[]> {
  let depth = 0
  let last = 0
  for await (const events of xmlEvents(source)) {
    const out: BlockRange[] = []
    for (const ev of events) {
      if (ev.type === 'close') {
        depth--
        continue
      }
      depth++
      if (depth === 1) {
        if (ev.name !== 'blocks')
          throw new XmlInputError(`line ${ev.line}: expected <blocks>, found <${ev.name}>: ${describe(ev.name)}`)
        continue
      }
      let range: BlockRange
      if (depth === 2 && ev.name === 'range') {
        range = {
          begin: blockNumber(ev.attributes, 'begin', 'range', ev.line),
          end: blockNumber(ev.attributes, 'end', 'range', ev.line),
        }
        if (range.end <= range.begin) {
          throw new XmlInputError(
            `line ${ev.line}: <range begin="${range.begin}" end="${range.end}">: end must be after begin`,
          )
        }
      } else if (depth === 2 && ev.name === 'block') {
        const b = blockNumber(ev.attributes, 'block', 'block', ev.line)
        range = { begin: b, end: b + 1 }
      } else {
        throw new XmlInputError(`line ${ev.line}: unexpected <${ev.name}> in era_invalidate output`)
      }
      if (range.begin < last) {
        throw new XmlInputError(
          `line ${ev.line}: block ${range.begin} comes after block ${last - 1}: era_invalidate lists blocks in ascending order, without overlaps`,
        )
      }
      last = range.end
      out.push(range)
    }
    if (out.length > 0) yield out
  }
}

function describe(root: string): string {
  if (root === 'superblock') {
    return 'this looks like era_dump or thin_delta output; era-copy reads era_invalidate output (use --thin-delta for thin_delta)'
  }
  return 'era-copy reads the output of era_invalidate'
}
