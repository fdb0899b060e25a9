import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import t from 'tap'
import { applyAndReport } from '../../packages/core/src/apply-report.js'
import { tempDir } from '../safety/lib.js'
import { sampleStream } from './streams.js'

function capture(): { stream: PassThrough; text: () => string } {
  let said = ''
  const stream = new PassThrough().on('data', (d: Buffer) => (said += d.toString()))
  return { stream, text: () => said }
}

void t.test('--stats and --json say what the apply did', async (t) => {
  const target = join(tempDir(t, 'report'), 'target')
  const stream = await sampleStream()
  const stderr = capture()
  const stdout = capture()
  const options = { program: 'era-apply' as const, target, stderr: stderr.stream, stats: true, json: true, force: true }
  const result = await applyAndReport([stream], options, stdout.stream)
  t.equal(result.records, 3)
  t.match(
    stderr.text(),
    /^era-apply: .*target: 3 records, [\d.]+ (B|KiB) written, [\d.]+ (B|KiB) skipped, 4.00 KiB in all, [\d.]+ s\n$/,
  )
  const report = JSON.parse(stdout.text()) as Record<string, unknown>
  t.match(report, { program: 'era-apply', target, records: 3, written: result.written, skipped: result.skipped })
  t.match(report, { size: 4096, created: true, complete: true })
  t.type(report.seconds, 'number')
})

void t.test('without them nothing more is said', async (t) => {
  const target = join(tempDir(t, 'report'), 'target')
  const stderr = capture()
  const stdout = capture()
  await applyAndReport(
    [await sampleStream()],
    { program: 'bpatch', target, stderr: stderr.stream, force: true },
    stdout.stream,
  )
  t.equal(stdout.text(), '')
  t.notMatch(stderr.text(), /records/)
})

void t.test('--stats without a stderr of its own goes to the process stderr', async (t) => {
  const target = join(tempDir(t, 'report'), 'target')
  const said: string[] = []
  const write = process.stderr.write.bind(process.stderr)
  process.stderr.write = (chunk: string) => said.push(chunk) > 0
  t.teardown(() => {
    process.stderr.write = write
  })
  await applyAndReport([await sampleStream()], { program: 'bpatch', target, force: true, stats: true })
  process.stderr.write = write
  t.match(said.join(''), /^bpatch: .*target: 3 records/)
})
