import t from 'tap'
import { Progress } from '../../packages/core/src/progress.js'

class FakeOut {
  text = ''
  constructor(readonly isTTY?: boolean) {}
  write(s: string): boolean {
    this.text += s
    return true
  }
}
const out = (isTTY?: boolean) => {
  const o = new FakeOut(isTTY)
  return { o, stream: o as unknown as NodeJS.WritableStream & { isTTY?: boolean } }
}
const MiB = 1 << 20

void t.test('on a terminal: one line redrawn every second, ended by finish or interrupt', (t) => {
  const { o, stream } = out(true)
  let now = 1000
  const p = new Progress('era-copy', 10 * MiB, { out: stream, now: () => now })
  now = 1500
  p.update(1 * MiB)
  t.equal(o.text, '', 'not before the interval')
  now = 2000
  p.update(2 * MiB)
  t.equal(o.text, '\r\x1b[Kera-copy: 2.00 MiB of 10.0 MiB (20%), 2.00 MiB/s, ETA 0:04')
  o.text = ''
  now = 2999
  p.update(3 * MiB)
  t.equal(o.text, '', 'the interval counts from the last line')
  now = 3000
  p.update(3 * MiB, '1.50 MiB sent')
  t.equal(o.text, '\r\x1b[Kera-copy: 3.00 MiB of 10.0 MiB (30%), 1.50 MiB/s, ETA 0:05, 1.50 MiB sent')
  o.text = ''
  p.interrupt()
  t.equal(o.text, '\n', 'a line drawn in place is ended before an error message')
  p.interrupt()
  t.equal(o.text, '\n', 'once')
  o.text = ''
  now = 6000
  p.finish(10 * MiB)
  t.equal(o.text, '\r\x1b[Kera-copy: 10.0 MiB of 10.0 MiB (100%), 2.00 MiB/s, 0:05 elapsed\n')
  o.text = ''
  p.interrupt()
  t.equal(o.text, '', 'finish ended the line already')
  t.end()
})

void t.test('into a log: a whole line every ten seconds', (t) => {
  for (const isTTY of [false, undefined]) {
    const { o, stream } = out(isTTY)
    let now = 0
    const p = new Progress('bsum', 0, { out: stream, now: () => now })
    now = 9999
    p.update(0)
    t.equal(o.text, '')
    now = 10_000
    p.update(0)
    t.equal(o.text, 'bsum: 0 B of 0 B (100%), 0 B/s, ETA ?\n', 'an empty image is 100 % done; no rate, no ETA')
    p.interrupt()
    t.equal(o.text, 'bsum: 0 B of 0 B (100%), 0 B/s, ETA ?\n', 'nothing to end in a log')
    p.finish(0, 'note')
    t.equal(o.text.split('\n')[1], 'bsum: 0 B of 0 B (100%), 0 B/s, 0:10 elapsed, note')
  }
  t.end()
})

void t.test('an explicit interval; a finish at once', (t) => {
  const { o, stream } = out(false)
  let now = 0
  const p = new Progress('x', 2000, { out: stream, now: () => now, interval: 5 })
  now = 5
  p.update(1000)
  t.equal(o.text, 'x: 1000 B of 1.95 KiB (50%), 195.3 KiB/s, ETA 0:00\n')
  o.text = ''
  const q = new Progress('y', 100, { out: stream, now: () => 7 })
  q.finish(100)
  t.equal(o.text, 'y: 100 B of 100 B (100%), 97.7 KiB/s, 0:00 elapsed\n', 'no division by zero')
  t.end()
})

void t.test('stderr and the system clock by default', (t) => {
  const written: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = (s: string) => written.push(s) > 0
  t.teardown(() => {
    process.stderr.write = write
  })
  let now = 0
  const p = new Progress('x', 100, { now: () => now })
  now = 9999
  p.update(1)
  t.same(written, [], 'stderr is not a terminal under tap: ten seconds between lines')
  now = 10_000
  p.update(1)
  t.same(written, ['x: 1 B of 100 B (1%), 0 B/s, ETA 16:30\n'])
  const { o, stream } = out(false)
  const q = new Progress('y', 100, { out: stream })
  q.update(50)
  t.equal(o.text, '', 'the system clock: not ten seconds yet')
  q.finish(100)
  t.match(o.text, /^y: 100 B of 100 B \(100%\), .*, 0:00 elapsed\n$/)
  t.equal(written.length, 1, 'an explicit stream is used')
  t.end()
})
