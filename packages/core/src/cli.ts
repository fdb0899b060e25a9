import { createReadStream, fstatSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { isatty } from 'node:tty'
import { parseArgs } from 'node:util'
import type { Argv, Options } from 'yargs'
import { CANCEL_SIGNALS, CancelledError, type CancelSignal } from './cancel.js'
import { BlockpipeError, UsageError } from './errors.js'
import { describeSystemError, isSystemError } from './system-errors.js'
import { unknownOptionMessage } from './suggest.js'
import { VERSION } from './version.js'

// What every binary shares: option parsing that fails with exit 2, messages
// prefixed with the program name, and exit statuses that mean something.

/**
 * A command line, parsed by parseAsync(). yargs costs a process about 14 MB
 * and a tenth of a CPU-second to load, more than bsum needs for a gigabyte:
 * a command line of known options with their values is parsed here, and
 * yargs is loaded only for the rest (--help, --version, an error, any form
 * this parser does not read exactly as yargs does), which it then handles
 * as always. Typed as yargs' Argv: the commands declare options as for it.
 */
export function commandLine(program: string, argv: string[], usage: string): Argv {
  return new CommandLine(program, argv, usage) as unknown as Argv
}

type Args = { [key: string]: unknown; _: (string | number)[]; $0: string }

class CommandLine {
  readonly #options: [string, Options][] = []
  readonly #examples: [string, string][] = []

  constructor(
    readonly program: string,
    readonly argv: string[],
    readonly usage: string,
  ) {}

  option(name: string, options: Options): this {
    this.#options.push([name, options])
    return this
  }

  example(command: string, description: string): this {
    this.#examples.push([command, description])
    return this
  }

  async parseAsync(): Promise<Args> {
    return this.parsed() ?? (await this.yargs()).parseSync()
  }

  /** The arguments as yargs would give them, or undefined where yargs must have its say. */
  parsed(): Args | undefined {
    const specs: Record<string, { type: 'string' | 'boolean'; short?: string }> = {}
    for (const [name, o] of this.#options) {
      if (o.type !== 'string' && o.type !== 'boolean' && o.choices === undefined) return undefined
      // A setting this parser does not carry out (coerce, implies, ...) is yargs' to apply.
      if (Object.keys(o).some((key) => !PLAIN_SETTINGS.has(key))) return undefined
      const type = o.type === 'boolean' ? 'boolean' : 'string'
      const aliases = o.alias === undefined ? [] : [o.alias].flat()
      if (aliases.some((a) => a.length !== 1)) return undefined
      specs[name] = aliases[0] === undefined ? { type } : { type, short: aliases[0] }
    }
    // yargs reads a boolean's value from the next word, and `-b4K` as -b -4 -K.
    const end = this.argv.indexOf('--')
    const words = end < 0 ? this.argv : this.argv.slice(0, end)
    if (words.some((a) => a === 'true' || a === 'false' || /^-[^-]./.test(a))) return undefined
    let result
    try {
      result = parseArgs({ args: this.argv, options: specs, strict: true, allowPositionals: true, tokens: true })
    } catch {
      return undefined
    }
    // yargs takes no value starting with a dash from the next word (`--x -`),
    // and turns a word that looks like a number into one.
    const dashed = result.tokens.some((t) => t.kind === 'option' && t.inlineValue === false && t.value?.startsWith('-'))
    if (dashed || result.positionals.some(looksNumeric)) return undefined
    const args: Args = { _: result.positionals, $0: this.program }
    for (const [name, o] of this.#options) {
      const given = result.values[name]
      if (o.choices !== undefined && given !== undefined && !o.choices.includes(given as string)) return undefined
      const value: unknown = given ?? o.default
      if (value === undefined) continue
      const aliases = o.alias === undefined ? [] : [o.alias].flat()
      for (const key of new Set([name, camel(name), ...aliases])) args[key] = value
    }
    return args
  }

  /** The same command line for yargs. */
  async yargs(): Promise<Argv> {
    const { default: yargs } = await import('yargs')
    const y: Argv = yargs(this.argv)
    y.scriptName(this.program)
      .usage(this.usage)
      .strictOptions()
      .version(`${this.program} ${VERSION}`)
      .alias('V', 'version')
      .help()
      .alias('h', 'help')
      .wrap(Math.min(100, process.stdout.columns ?? 100))
      .parserConfiguration({ 'duplicate-arguments-array': false })
      .fail((message: string | undefined, err: Error | undefined) => {
        throw new UsageError(unknownOptionMessage(message ?? (err as Error).message, knownOptions(y)))
      })
    for (const [name, options] of this.#options) y.option(name, options)
    for (const [command, description] of this.#examples) y.example(command, description)
    return y
  }
}

const PLAIN_SETTINGS = new Set(['type', 'alias', 'default', 'describe', 'description', 'choices'])

const camel = (name: string): string => name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase())

/** Whether yargs would take the word for a number (its isNumber). */
function looksNumeric(word: string): boolean {
  return /^0x[0-9a-f]+$/i.test(word) || (!/^0[^.]/.test(word) && /^-?(?:\d+(?:\.\d*)?|\.\d+)(e[-+]?\d+)?$/.test(word))
}

/** Every option name a command line knows, aliases included. */
function knownOptions(y: Argv): string[] {
  // getOptions() is yargs' own, missing from @types/yargs.
  const options = y as unknown as { getOptions(): { key: Record<string, unknown>; alias: Record<string, string[]> } }
  const { key, alias } = options.getOptions()
  return [...new Set([...Object.keys(key), ...Object.keys(alias), ...Object.values(alias).flat()])]
}

export interface Io {
  stdin: NodeJS.ReadStream
  stdout: NodeJS.WriteStream
  stderr: NodeJS.WriteStream
}

export interface RunOptions {
  /**
   * SIGINT, SIGTERM and SIGHUP abort the signal given to main, which stops
   * at a safe point and throws the CancelledError; a second signal while it
   * stops is only noted. Without this, a signal ends the process at once.
   */
  cancellable?: boolean
  io?: Io
}

/**
 * Runs a command's main function and turns what it throws into a message and
 * an exit status: 2 usage, 1 failure, 3 conflict, 128 + signal when cancelled.
 */
export async function runMain(
  program: string,
  main: (signal: AbortSignal) => Promise<void>,
  options: RunOptions | Io = {},
): Promise<number> {
  const { io = process, cancellable = false } = 'stderr' in options ? { io: options } : options
  const controller = new AbortController()
  const onSignal = (signal: CancelSignal): void => {
    if (controller.signal.aborted) {
      io.stderr.write(`${program}: ${signal}: already stopping at a safe point, please wait\n`)
      return
    }
    controller.abort(new CancelledError(signal))
  }
  const handlers = CANCEL_SIGNALS.map((signal) => [signal, () => onSignal(signal)] as const)
  if (cancellable) for (const [signal, handler] of handlers) process.on(signal, handler)
  let status = 0
  try {
    await main(controller.signal)
  } catch (err) {
    status = report(program, err, io.stderr)
  } finally {
    for (const [signal, handler] of handlers) process.off(signal, handler)
  }
  process.exitCode = status
  return status
}

function report(program: string, err: unknown, stderr: NodeJS.WritableStream): number {
  if (err instanceof BlockpipeError) {
    const hint = err.code === 'EUSAGE' ? `\nTry '${program} --help' for more information.` : ''
    stderr.write(`${program}: ${err.message}${hint}\n`)
    return err.exitCode
  }
  if (isSystemError(err)) {
    stderr.write(`${program}: ${describeSystemError(err)}\n`)
    return 1
  }
  // Anything can be thrown, null and undefined included.
  const e = (err ?? {}) as Error
  stderr.write(`${program}: internal error: ${e.stack ?? String(err)}\n`)
  return 1
}

/** Binary streams go to pipes and files, never to a terminal. */
export function refuseTerminalOutput(stdout: { isTTY?: boolean }): void {
  if (stdout.isTTY === true) {
    throw new UsageError('refusing to write a binary stream to a terminal: redirect the output to a file or a pipe')
  }
}

export function refuseTerminalInput(stdin: { isTTY?: boolean }, what: string): void {
  if (stdin.isTTY === true) {
    throw new UsageError(`expected ${what} on standard input, not a terminal: redirect a file or a pipe into it`)
  }
}

/**
 * Standard input, to read `what` from; a terminal is refused. A regular file
 * is read 1 MiB at a time: process.stdin reads it in 64 KiB pieces, several
 * times slower. Pipes stay with process.stdin, which copes with O_NONBLOCK.
 */
export function standardInput(what: string): Readable {
  refuseTerminalInput({ isTTY: isatty(0) }, what)
  // Node opens /dev/null on a closed fd 0 at startup: fstat always has an answer.
  return fstatSync(0).isFile()
    ? createReadStream('', { fd: 0, highWaterMark: 1 << 20, autoClose: false })
    : process.stdin
}

/** The one positional argument a command takes, named `name` in messages. */
export function onePositional(args: { _: (string | number)[] }, name: string): string {
  const positional = args._.map(String)
  if (positional.length !== 1) {
    throw new UsageError(positional.length === 0 ? `missing ${name}` : `one ${name} only, got ${positional.join(' ')}`)
  }
  return positional[0] as string
}

/** The options era-apply and bpatch share: they drive the same apply engine. */
export function withApplyOptions<T>(y: Argv<T>, what: { spool: string; undo: string; force: string }) {
  return y
    .option('spool', { type: 'string', describe: what.spool })
    .option('undo', { type: 'string', describe: what.undo })
    .option('force', { type: 'boolean', default: false, describe: what.force })
    .option('progress', { type: 'boolean', default: false, describe: 'show progress on stderr' })
    .option('stats', {
      type: 'boolean',
      default: false,
      describe: 'at the end, one line on stderr: records, bytes written and skipped, time',
    })
    .option('json', {
      type: 'boolean',
      default: false,
      describe: 'at the end, the same as one JSON object on stdout',
    })
}
