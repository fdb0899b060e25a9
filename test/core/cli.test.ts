import t from 'tap'
import type { Argv } from 'yargs'
import { io } from '../lib/io.js'
import {
  commandLine,
  onePositional,
  refuseTerminalInput,
  refuseTerminalOutput,
  runMain,
  withApplyOptions,
} from '../../packages/core/src/cli.js'
import { BlockpipeError, ConflictError, TruncatedStreamError, UsageError } from '../../packages/core/src/errors.js'

t.afterEach(() => {
  // runMain sets the exit status of this process too.
  process.exitCode = 0
})

void t.test('runMain maps what main throws to a message and an exit status', async (t) => {
  const cases: [unknown, number, string | RegExp][] = [
    [new UsageError('missing device'), 2, "era-copy: missing device\nTry 'era-copy --help' for more information.\n"],
    [
      new BlockpipeError('EDEVICE', '/dev/sdz: no such file or device'),
      1,
      'era-copy: /dev/sdz: no such file or device\n',
    ],
    [
      new TruncatedStreamError('unexpected end of data', { record: 1, offset: 2 }),
      1,
      'era-copy: unexpected end of data\n',
    ],
    [new ConflictError('the target differs at byte 4096', 4096), 3, 'era-copy: the target differs at byte 4096\n'],
    [
      Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }),
      1,
      'era-copy: the reading end of the output went away (broken pipe)\n',
    ],
    [new TypeError('x is not a function'), 1, /^era-copy: internal error: TypeError: x is not a function\n {4}at /],
    ['a string', 1, 'era-copy: internal error: a string\n'],
    [null, 1, 'era-copy: internal error: null\n'],
    [undefined, 1, 'era-copy: internal error: undefined\n'],
    [{ code: 'EPIPE' }, 1, 'era-copy: the reading end of the output went away (broken pipe)\n'],
    // A system error no caller put in words: a message, never a trace.
    [
      Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' }),
      1,
      'era-copy: write: no space left on the device (ENOSPC)\n',
    ],
    [
      Object.assign(new Error('ELOOP: too many, open'), { code: 'ELOOP', syscall: 'open', path: '/x' }),
      1,
      'era-copy: /x: too many levels of symbolic links (a loop of symbolic links?)\n',
    ],
  ]
  for (const [thrown, status, message] of cases) {
    const fake = io()
    // Anything may be thrown: not only errors.
    const main = async (): Promise<void> => {
      await Promise.resolve()
      throw thrown
    }
    const got = await runMain('era-copy', main, fake.io)
    t.equal(got, status, String(thrown))
    t.equal(process.exitCode, status)
    if (typeof message === 'string') t.equal(fake.stderr(), message)
    else t.match(fake.stderr(), message)
  }
  const fake = io()
  t.equal(await runMain('bsum', async () => {}, fake.io), 0)
  t.equal(process.exitCode, 0)
  t.equal(fake.stderr(), '', 'silent on success')
  // The real stdio by default.
  t.equal(await runMain('bsum', async () => {}), 0)
})

/** The yargs a command line falls back to. */
const yargsOf = (y: Argv): Promise<Argv> => (y as unknown as { yargs(): Promise<Argv> }).yargs()
/** What the command line parses without yargs, if it does. */
const parsedOf = (y: Argv): unknown => (y as unknown as { parsed(): unknown }).parsed()

void t.test('commandLine: a bad option is a usage error', async (t) => {
  const argv = (args: string[]) =>
    commandLine('bsum', args, '$0 [options] <image>').option('size', { type: 'number' }).parseAsync()
  t.match(await argv(['--size', '10', 'img']), { size: 10, _: ['img'] })
  await t.rejects(argv(['--bogus']), { name: 'UsageError', code: 'EUSAGE', message: 'unknown option --bogus' })
  await t.rejects(argv(['--sise', '1']), { message: 'unknown option --sise (did you mean --size?)' })
  await t.rejects(argv(['--hlep', '-v', '-x']), {
    message: 'unknown options --hlep (did you mean --help?), -v (did you mean -V?), -x',
  })
  // yargs reports a rejected command handler as fail(null, err).
  const y = (await yargsOf(commandLine('bsum', [], 'u'))) as unknown as {
    getInternalMethods(): { getUsageInstance(): { fail(m: string | null, e: Error): void } }
  }
  t.throws(() => y.getInternalMethods().getUsageInstance().fail(null, new Error('boom')), {
    name: 'UsageError',
    message: 'boom',
  })
})

void t.test('commandLine parses what it can without yargs, exactly as yargs does', async (t) => {
  // The options of the commands: strings, booleans with defaults, a short alias, choices.
  const options = (args: string[]) =>
    commandLine('bdiff', args, 'u')
      .option('block-size', { alias: 'b', type: 'string', describe: 'chunk size' })
      .option('digests-out', { type: 'string', describe: 'file' })
      .option('progress', { type: 'boolean', default: false, describe: 'progress' })
      .option('force', { type: 'boolean', describe: 'no default' })
      .option('format', { choices: ['blockpipe', 'erarange'], default: 'blockpipe', describe: 'format' })
      .example('$0 x', '')
  const fast = [
    ['img'],
    [],
    ['-b', '4K', 'img'],
    ['--block-size=4K', '--block-size', '8K', 'a', 'b'],
    ['--digests-out', 'n.sum', '--progress', '--force', '/dev/sdb'],
    ['--digests-out=-x', 'img'],
    ['--format', 'erarange', 'img'],
    ['--format=blockpipe', '--', '-img'],
    ['img1', '007'],
  ]
  for (const args of fast) {
    const fromYargs = (await yargsOf(options(args))).parseSync()
    const got = parsedOf(options(args)) as Record<string, unknown>
    t.not(got, undefined, `${args.join(' ')}: parsed without yargs`)
    t.same(got, fromYargs, args.join(' '))
    t.same(await options(args).parseAsync(), fromYargs)
  }
  // Left to yargs, which reads these differently or has something to say.
  const slow = [
    ['--progress', 'true', 'img'],
    ['--force', 'false'],
    ['-b=4K', 'img'],
    ['-b4K', 'img'],
    ['--digests-out', '-', 'img'],
    ['--digests-out', '-x', 'img'],
    ['img', '42'],
    ['0x10'],
    ['--no-progress', 'img'],
    ['--blockSize', '4K'],
    ['--format', 'xml', 'img'],
    ['-b'],
  ]
  for (const args of slow) t.equal(parsedOf(options(args)), undefined, args.join(' '))
  t.match(await options(['--no-progress', 'img']).parseAsync(), { progress: false, _: ['img'] })
  await t.rejects(options(['--format', 'xml', 'img']).parseAsync(), { name: 'UsageError', message: /Invalid values/ })
  // An option of a kind this parser does not read: all goes to yargs.
  t.equal(parsedOf(commandLine('x', ['a'], 'u').option('n', { type: 'number' })), undefined)
  t.equal(parsedOf(commandLine('x', ['a'], 'u').option('n', { type: 'string', coerce: String })), undefined)
  t.equal(parsedOf(commandLine('x', ['a'], 'u').option('n', { type: 'string', alias: 'number' })), undefined)
  t.same(parsedOf(commandLine('x', ['--n', '1'], 'u').option('n', { type: 'string', alias: ['m'] })), {
    _: [],
    $0: 'x',
    n: '1',
    m: '1',
  })
})

void t.test('commandLine wraps help to the terminal width, at most 100', async (t) => {
  const stdout = process.stdout as { columns?: number }
  const saved = Object.getOwnPropertyDescriptor(stdout, 'columns')
  t.teardown(() => {
    if (saved) Object.defineProperty(stdout, 'columns', saved)
    else delete stdout.columns
  })
  const help = async () =>
    (await yargsOf(commandLine('bsum', [], 'usage: bsum').option('size', { describe: 'x '.repeat(60) }))).getHelp()
  stdout.columns = 60
  const narrow = await help()
  t.ok(Math.max(...narrow.split('\n').map((l) => l.length)) <= 60, 'a 60-column terminal')
  delete stdout.columns
  stdout.columns = undefined
  const wide = await help()
  t.ok(Math.max(...wide.split('\n').map((l) => l.length)) > 60)
  t.ok(Math.max(...wide.split('\n').map((l) => l.length)) <= 100, 'no terminal: 100')
  t.match(wide, /--version/)
})

void t.test('binary streams are refused to and from a terminal', (t) => {
  t.throws(() => refuseTerminalOutput({ isTTY: true }), {
    name: 'UsageError',
    message: 'refusing to write a binary stream to a terminal: redirect the output to a file or a pipe',
  })
  refuseTerminalOutput({ isTTY: false })
  refuseTerminalOutput({})
  t.throws(() => refuseTerminalInput({ isTTY: true }, 'a blockpipe stream'), {
    name: 'UsageError',
    message: 'expected a blockpipe stream on standard input, not a terminal: redirect a file or a pipe into it',
  })
  refuseTerminalInput({ isTTY: false }, 'x')
  refuseTerminalInput({}, 'x')
  t.end()
})

void t.test('onePositional', (t) => {
  t.equal(onePositional({ _: ['/dev/sdb'] }, 'device'), '/dev/sdb')
  t.equal(onePositional({ _: [42] }, 'device'), '42')
  t.throws(() => onePositional({ _: [] }, 'device'), { name: 'UsageError', message: 'missing device' })
  t.throws(() => onePositional({ _: ['a', 'b', 3] }, 'target'), {
    name: 'UsageError',
    message: 'one target only, got a b 3',
  })
  t.end()
})

void t.test('withApplyOptions adds --spool, --undo, --force and --progress', async (t) => {
  const what = { spool: 'spool file', undo: 'undo journal', force: 'apply anyway' }
  const parse = (args: string[]) => withApplyOptions(commandLine('bpatch', args, 'u'), what).parseAsync()
  t.match(await parse(['t']), { spool: undefined, undo: undefined, force: false, progress: false, _: ['t'] })
  t.match(await parse(['--spool', '/tmp/s', '--undo', '/tmp/u', '--force', '--progress', 't']), {
    spool: '/tmp/s',
    undo: '/tmp/u',
    force: true,
    progress: true,
  })
  await t.rejects(parse(['--forse']), { name: 'UsageError' })
})
