import { UsageError } from '@blockpipe/core'
import { blockNumber, type BlockRange } from './era-invalidate.js'
import { XmlInputError, xmlEvents } from './xml-events.js'

// thin_delta prints how two thin devices of a pool differ, in thin blocks of
// the pool's data_block_size (512-byte sectors):
//
//   <superblock uuid="" time="1" transaction="2" data_block_size="128" nr_data_blocks="100">
//     <diff left="1" right="2">
//       <same begin="0" length="2"/>
//       <different begin="2" length="2"/>
//       <left_only begin="11" length="1"/>
//       <right_only begin="30" length="2"/>
//     </diff>
//   </superblock>
//
// With --verbose each kind is an element holding <range begin=".."
// data_begin=".." length=".."/> elements. Ranges come sorted, without
// overlaps. For a backup of the right (newer) device: `different` and
// `right_only` blocks hold its data, `left_only` blocks are unmapped in it
// (they read as zeros), `same` blocks did not change.

export const THIN_KINDS = ['same', 'different', 'left_only', 'right_only'] as const
export type ThinKind = (typeof THIN_KINDS)[number]

/** Thin blocks [begin, end) of one kind. */
export interface ThinRange extends BlockRange {
  kind: ThinKind
}

export interface ThinDeltaInfo {
  /** The pool's data_block_size in 512-byte sectors, when the XML gives it. */
  blockSectors: number | undefined
  /** The device ids compared (`thin_delta --snap1 --snap2`). */
  left: string | undefined
  right: string | undefined
}

const isKind = (name: string): name is ThinKind => (THIN_KINDS as readonly string[]).includes(name)

/** Reads a thin_delta document; `each` gets its ranges in order. */
export async function readThinDelta(
  source: AsyncIterable<Buffer | string>,
  each: (range: ThinRange) => void,
): Promise<ThinDeltaInfo> {
  const info: ThinDeltaInfo = { blockSectors: undefined, left: undefined, right: undefined }
  let depth = 0
  let diffs = 0
  let last = 0
  /** The kind of the verbose element open at depth 3; null inside a plain (self-closing) one. */
  let open: ThinKind | null = null
  const add = (kind: ThinKind, attributes: Record<string, string>, element: string, line: number): void => {
    const begin = blockNumber(attributes, 'begin', element, line)
    const length = blockNumber(attributes, 'length', element, line)
    if (length === 0) throw new XmlInputError(`line ${line}: <${element} begin="${begin}" length="0">: an empty range`)
    if (begin < last) {
      throw new XmlInputError(
        `line ${line}: block ${begin} comes after block ${last - 1}: thin_delta lists ranges in ascending order,` +
          ' without overlaps',
      )
    }
    last = begin + length
    if (!Number.isSafeInteger(last)) throw new XmlInputError(`line ${line}: <${element}>: the range is too long`)
    each({ kind, begin, end: last })
  }
  for await (const events of xmlEvents(source)) {
    for (const ev of events) {
      if (ev.type === 'close') {
        depth--
        continue
      }
      depth++
      const { name, attributes, line } = ev
      if (depth === 1) {
        if (name !== 'superblock') {
          throw new XmlInputError(`line ${line}: expected <superblock>, found <${name}>: ${describeRoot(name)}`)
        }
        info.blockSectors = dataBlockSize(attributes, line)
      } else if (depth === 2) {
        if (name !== 'diff') {
          throw new XmlInputError(`line ${line}: unexpected <${name}> in thin_delta output${describeChild(name)}`)
        }
        if (++diffs > 1) throw new XmlInputError(`line ${line}: a second <diff>: thin_delta prints one`)
        info.left = attributes.left
        info.right = attributes.right
      } else if (depth === 3 && isKind(name)) {
        if ('begin' in attributes) {
          add(name, attributes, name, line)
          open = null
        } else {
          open = name
        }
      } else if (depth === 4 && name === 'range' && open !== null) {
        add(open, attributes, 'range', line)
      } else {
        throw new XmlInputError(`line ${line}: unexpected <${name}> in thin_delta output`)
      }
    }
  }
  if (diffs === 0) throw new XmlInputError('no <diff> in the thin_delta output: nothing says what changed')
  return info
}

function dataBlockSize(attributes: Record<string, string>, line: number): number | undefined {
  if (attributes.data_block_size === undefined) return undefined
  const sectors = blockNumber(attributes, 'data_block_size', 'superblock', line)
  // A thin pool's blocks are 64 KiB to 1 GiB; accept any multiple of 4 KiB up to 1 GiB.
  if (sectors === 0 || sectors % 8 !== 0 || sectors > 2 * 1024 * 1024) {
    throw new XmlInputError(
      `line ${line}: <superblock data_block_size="${sectors}">: not a thin pool block size` +
        ' (a multiple of 8 sectors, at most 1 GiB)',
    )
  }
  return sectors
}

function describeRoot(name: string): string {
  if (name === 'blocks') return 'this is era_invalidate output: leave out --thin-delta'
  return 'era-copy --thin-delta reads the output of thin_delta'
}

function describeChild(name: string): string {
  if (name === 'device') return ': this looks like thin_dump output; era-copy --thin-delta reads thin_delta output'
  if (name === 'writeset' || name === 'era_array') return ': this looks like era_dump output'
  return ''
}

/**
 * The block size, in bytes, of a thin_delta document: its data_block_size;
 * `-b` (already parsed, in bytes) only where the XML does not give it, and
 * if both are given they must agree.
 */
export function thinBlockSize(info: ThinDeltaInfo, given: number | undefined, option = '--block-size'): number {
  if (info.blockSectors === undefined) {
    if (given === undefined) {
      throw new UsageError(`this thin_delta output gives no data_block_size: give the pool's block size with ${option}`)
    }
    return given
  }
  const bytes = info.blockSectors * 512
  if (given !== undefined && given !== bytes) {
    throw new UsageError(
      `${option} of ${given} bytes differs from the pool's data_block_size of ${info.blockSectors} sectors` +
        ` (${bytes} bytes) in the thin_delta output: leave ${option} out`,
    )
  }
  return bytes
}

/**
 * Two lists of ranges, each in ascending order and the two without overlaps,
 * as one list in ascending order; `second` says which list a range came from.
 */
export function* mergeRanges(
  first: Iterable<BlockRange[]>,
  second: Iterable<BlockRange[]>,
): Generator<{ range: BlockRange; second: boolean }> {
  const a = flatten(first)
  const b = flatten(second)
  let x = a.next()
  let y = b.next()
  while (x.done !== true || y.done !== true) {
    if (y.done === true || (x.done !== true && x.value.begin < y.value.begin)) {
      yield { range: x.value as BlockRange, second: false }
      x = a.next()
    } else {
      yield { range: y.value, second: true }
      y = b.next()
    }
  }
}

function* flatten(batches: Iterable<BlockRange[]>): Generator<BlockRange, void> {
  for (const batch of batches) yield* batch
}
