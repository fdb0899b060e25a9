import { formatBytes, formatDuration } from './size.js'

export interface ProgressOptions {
  /** Where to print; stderr by default. */
  out?: NodeJS.WritableStream & { isTTY?: boolean }
  /** Milliseconds between lines; a terminal gets 1 s, a log 10 s. */
  interval?: number
  now?: () => number
}

/**
 * `--progress`: position, rate and time left on stderr. On a terminal one
 * line is rewritten in place; into a log (cron) a line every few seconds.
 */
export class Progress {
  readonly #program: string
  readonly #total: number
  readonly #out: NodeJS.WritableStream & { isTTY?: boolean }
  readonly #interval: number
  readonly #now: () => number
  readonly #start: number
  #last: number
  #drawn = false

  constructor(program: string, total: number, options: ProgressOptions = {}) {
    this.#program = program
    this.#total = total
    this.#out = options.out ?? process.stderr
    this.#interval = options.interval ?? (this.#out.isTTY === true ? 1000 : 10_000)
    this.#now = options.now ?? Date.now
    this.#start = this.#now()
    this.#last = this.#start
  }

  /** `done` of `total` bytes processed; `note` is appended (bytes sent, say). */
  update(done: number, note = ''): void {
    const now = this.#now()
    if (now - this.#last < this.#interval) return
    this.#last = now
    this.#print(this.#line(done, now, note), false)
  }

  finish(done: number, note = ''): void {
    this.#print(this.#line(done, this.#now(), note, true), true)
  }

  #line(done: number, now: number, note: string, final = false): string {
    const secs = Math.max((now - this.#start) / 1000, 1e-3)
    const rate = done / secs
    const pct = this.#total > 0 ? Math.floor((done / this.#total) * 100) : 100
    let line = `${this.#program}: ${formatBytes(done)} of ${formatBytes(this.#total)} (${pct}%)`
    line += `, ${formatBytes(Math.round(rate))}/s`
    line += final
      ? `, ${formatDuration(secs)} elapsed`
      : `, ETA ${rate > 0 ? formatDuration((this.#total - done) / rate) : '?'}`
    return note ? `${line}, ${note}` : line
  }

  #print(line: string, final: boolean): void {
    if (this.#out.isTTY === true) {
      this.#out.write(`\r\x1b[K${line}${final ? '\n' : ''}`)
      this.#drawn = !final
    } else {
      this.#out.write(`${line}\n`)
    }
  }

  /** Ends a line drawn in place, so an error message starts on its own line. */
  interrupt(): void {
    if (this.#drawn) this.#out.write('\n')
    this.#drawn = false
  }
}
