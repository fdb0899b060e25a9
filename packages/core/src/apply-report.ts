import { applyStream, type ApplyOptions, type ApplyResult } from './apply.js'
import type { ByteSource } from './read.js'
import { formatBytes } from './size.js'

// --stats and --json: what an apply did, for a nightly script to log. The
// line goes to stderr with the other messages; the JSON object to stdout,
// which an apply does not otherwise use.

export interface ReportOptions {
  stats?: boolean
  json?: boolean
}

export async function applyAndReport(
  input: ByteSource,
  options: ApplyOptions & ReportOptions,
  stdout: NodeJS.WritableStream = process.stdout,
): Promise<ApplyResult> {
  const started = process.hrtime.bigint()
  const result = await applyStream(input, options)
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  if (options.stats === true) {
    const stderr = options.stderr ?? process.stderr
    stderr.write(
      `${options.program}: ${options.target}: ${result.records} records, ${formatBytes(result.written)} written, ` +
        `${formatBytes(result.skipped)} skipped, ${formatBytes(result.header.size)} in all, ${seconds.toFixed(2)} s\n`,
    )
  }
  if (options.json === true) {
    const report = {
      program: options.program,
      target: options.target,
      records: result.records,
      written: result.written,
      skipped: result.skipped,
      size: result.header.size,
      created: result.created,
      complete: result.end !== undefined,
      seconds: Number(seconds.toFixed(3)),
    }
    stdout.write(`${JSON.stringify(report)}\n`)
  }
  return result
}
