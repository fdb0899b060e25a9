import { createReadStream, fstatSync } from 'node:fs'
import type { Readable } from 'node:stream'
import { isatty } from 'node:tty'
import yargs, { type Argv } from 'yargs'
import { CANCEL_SIGNALS, CancelledError, type CancelSignal } from './cancel.js'
import { BlockpipeError, UsageError } from './errors.js'
import { describeSystemError, isSystemError } from './system-errors.js'
import { unknownOptionMessage } from './suggest.js'
import { VERSION } from './version.js'

// What every binary shares: option parsing that fails with exit 2, messages
// prefixed with the program name, and exit statuses that mean something.

export function commandLine(program: string, argv: string[], usage: string): Argv {
  const y: Argv = yargs(argv)
  return y
    .scriptName(program)
    .usage(usage)
    .strictOptions()
    .version(`${program} ${VERSION}`)
    .alias('V', 'version')
    .help()
    .alias('h', 'help')
    .wrap(Math.min(100, process.stdout.columns ?? 100))
    .parserConfiguration({ 'duplicate-arguments-array': false })
    .fail((message: string | undefined, err: Error | undefined) => {
      throw new UsageError(unknownOptionMessage(message ?? (err as Error).message, knownOptions(y)))
    })
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
