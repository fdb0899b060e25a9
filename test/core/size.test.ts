import t from 'tap'
import { UsageError } from '../../packages/core/src/errors.js'
import { formatBytes, formatDuration, parseBlockSize } from '../../packages/core/src/size.js'

void t.test('a plain number counts 512-byte sectors; K, M and G count bytes', (t) => {
  const cases: [string, number][] = [
    ['8', 4096],
    ['128', 65536],
    [' 2048 ', 1 << 20],
    ['4K', 4096],
    ['4k', 4096],
    ['64K', 65536],
    ['64KiB', 65536],
    ['64KB', 65536],
    ['64 K', 65536],
    ['1M', 1 << 20],
    ['1MiB', 1 << 20],
    ['16m', 16 << 20],
    ['1G', 1 << 30],
    ['1GiB', 1 << 30],
    ['1g', 1 << 30],
    ['2097152', 1 << 30],
    ['0008', 4096],
  ]
  for (const [text, bytes] of cases) t.equal(parseBlockSize(text), bytes, text)
  t.end()
})

void t.test('a bad block size is a usage error that says why', (t) => {
  const cases: [string, string][] = [
    ['', '--block-size "" is not a size: give sectors (128) or bytes with a suffix (64K, 1M)'],
    ['NaN', '--block-size "NaN" is not a size: give sectors (128) or bytes with a suffix (64K, 1M)'],
    ['-8', '--block-size "-8" is not a size: give sectors (128) or bytes with a suffix (64K, 1M)'],
    ['1.5M', '--block-size "1.5M" is not a size: give sectors (128) or bytes with a suffix (64K, 1M)'],
    ['4T', '--block-size "4T" is not a size: give sectors (128) or bytes with a suffix (64K, 1M)'],
    ['64Kb', '--block-size "64Kb" is not a size: give sectors (128) or bytes with a suffix (64K, 1M)'],
    ['0x10', '--block-size "0x10" is not a size: give sectors (128) or bytes with a suffix (64K, 1M)'],
    ['0', '--block-size must not be zero'],
    ['0K', '--block-size must not be zero'],
    ['7', '--block-size 7 is not a multiple of 4 KiB (7 sectors = 3584 bytes; sectors must be a multiple of 8)'],
    ['1', '--block-size 1 is not a multiple of 4 KiB (1 sectors = 512 bytes; sectors must be a multiple of 8)'],
    ['6K', '--block-size 6K is not a multiple of 4 KiB'],
    ['2G', '--block-size 2G is too large (at most 1G)'],
    ['1025M', '--block-size 1025M is too large (at most 1G)'],
    ['2097160', '--block-size 2097160 is too large (at most 1G)'],
    ['99999999999999999999', '--block-size 99999999999999999999 is too large (at most 1G)'],
    ['9'.repeat(400), `--block-size ${'9'.repeat(400)} is too large (at most 1G)`],
  ]
  for (const [text, message] of cases) {
    t.throws(() => parseBlockSize(text), { name: 'UsageError', code: 'EUSAGE', exitCode: 2, message }, text)
  }
  t.throws(() => parseBlockSize('3', '--chunk-size'), {
    message: '--chunk-size 3 is not a multiple of 4 KiB (3 sectors = 1536 bytes; sectors must be a multiple of 8)',
  })
  t.type(
    (() => {
      try {
        parseBlockSize('x')
      } catch (e) {
        return e
      }
    })(),
    UsageError,
  )
  t.end()
})

void t.test('formatBytes', (t) => {
  const cases: [number, string][] = [
    [0, '0 B'],
    [1023, '1023 B'],
    [1024, '1.00 KiB'],
    [1536, '1.50 KiB'],
    [10 * 1024, '10.0 KiB'],
    [1024 * 1024 - 1, '1024.0 KiB'],
    [1 << 20, '1.00 MiB'],
    [5.5 * 2 ** 30, '5.50 GiB'],
    [2 ** 40, '1.00 TiB'],
    [2 ** 50, '1.00 PiB'],
    [2 ** 60, '1024.0 PiB'],
  ]
  for (const [n, s] of cases) t.equal(formatBytes(n), s, String(n))
  t.end()
})

void t.test('formatDuration', (t) => {
  const cases: [number, string][] = [
    [-5, '0:00'],
    [0, '0:00'],
    [0.4, '0:00'],
    [0.5, '0:01'],
    [59, '0:59'],
    [60, '1:00'],
    [3599, '59:59'],
    [3600, '1:00:00'],
    [3661, '1:01:01'],
    [100 * 3600 + 5, '100:00:05'],
  ]
  for (const [s, text] of cases) t.equal(formatDuration(s), text, String(s))
  t.end()
})
