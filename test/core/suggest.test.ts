import t from 'tap'
import { closestOption, dashed, editDistance, unknownOptionMessage } from '../../packages/core/src/suggest.js'

const KNOWN = ['block-size', 'b', 'seed', 'size', 'progress', 'text', 'help', 'h', 'version', 'V']

void t.test('editDistance counts insertions, deletions, substitutions and swaps', (t) => {
  t.equal(editDistance('', ''), 0)
  t.equal(editDistance('', 'abc'), 3)
  t.equal(editDistance('abc', ''), 3)
  t.equal(editDistance('seed', 'seed'), 0)
  t.equal(editDistance('sed', 'seed'), 1)
  t.equal(editDistance('seeed', 'seed'), 1)
  t.equal(editDistance('sise', 'size'), 1)
  t.equal(editDistance('hlep', 'help'), 1, 'a swap of neighbours is one edit')
  t.equal(editDistance('kitten', 'sitting'), 3)
  t.end()
})

void t.test('closestOption: a likely typo only', (t) => {
  t.equal(closestOption('block-sise', KNOWN), 'block-size')
  t.equal(closestOption('blocksize', KNOWN), 'block-size')
  t.equal(closestOption('prog', KNOWN), 'progress', 'a prefix of three letters or more')
  t.equal(closestOption('txt', KNOWN), 'text')
  t.equal(closestOption('zzz', KNOWN), undefined, 'nothing close')
  t.equal(closestOption('si', KNOWN), undefined, 'too short to guess')
  t.equal(closestOption('bogus', KNOWN), undefined)
  t.equal(closestOption('v', KNOWN), 'V', 'a one-letter option: only its other case')
  t.equal(closestOption('B', KNOWN), 'b')
  t.equal(closestOption('x', KNOWN), undefined, 'never an unrelated letter')
  t.equal(closestOption('b', KNOWN), undefined, 'not itself')
  t.end()
})

void t.test('unknownOptionMessage keeps the dashes, drops the camelCase twins, suggests', (t) => {
  t.equal(dashed('b'), '-b')
  t.equal(dashed('seed'), '--seed')
  t.equal(unknownOptionMessage('Unknown argument: bogus', KNOWN), 'unknown option --bogus')
  t.equal(
    unknownOptionMessage('Unknown arguments: block-sise, blockSise, x, fooBar', KNOWN),
    'unknown options --block-sise (did you mean --block-size?), -x, --fooBar',
    'a camelCase name typed as such is kept',
  )
  t.equal(unknownOptionMessage('Not enough arguments', KNOWN), 'Not enough arguments', 'other messages unchanged')
  t.end()
})
