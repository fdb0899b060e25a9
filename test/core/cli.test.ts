import t from 'tap'
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

void t.test('commandLine: a bad option is a usage error', (t) => {
  const argv = (args: string[]) =>
    commandLine('bsum', args, '$0 [options] <image>').option('size', { type: 'number' }).parseSync()
  t.match(argv(['--size', '10', 'img']), { size: 10, _: ['img'] })
  t.throws(() => argv(['--bogus']), { name: 'UsageError', code: 'EUSAGE', message: 'unknown option --bogus' })
  t.throws(() => argv(['--sise', '1']), { message: 'unknown option --sise (did you mean --size?)' })
  t.throws(() => argv(['--hlep', '-v', '-x']), {
    message: 'unknown options --hlep (did you mean --help?), -v (did you mean -V?), -x',
  })
  // yargs reports a rejected command handler as fail(null, err).
  const y = commandLine('bsum', [], 'u') as unknown as {
    getInternalMethods(): { getUsageInstance(): { fail(m: string | null, e: Error): void } }
  }
  t.throws(() => y.getInternalMethods().getUsageInstance().fail(null, new Error('boom')), {
    name: 'UsageError',
    message: 'boom',
  })
  t.end()
})

void t.test('commandLine wraps help to the terminal width, at most 100', async (t) => {
  const stdout = process.stdout as { columns?: number }
  const saved = Object.getOwnPropertyDescriptor(stdout, 'columns')
  t.teardown(() => {
    if (saved) Object.defineProperty(stdout, 'columns', saved)
    else delete stdout.columns
  })
  const help = async () =>
    commandLine('bsum', [], 'usage: bsum')
      .option('size', { describe: 'x '.repeat(60) })
      .getHelp()
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

void t.test('withApplyOptions adds --spool, --undo, --force and --progress', (t) => {
  const what = { spool: 'spool file', undo: 'undo journal', force: 'apply anyway' }
  const parse = (args: string[]) => withApplyOptions(commandLine('bpatch', args, 'u'), what).parseSync()
  t.match(parse(['t']), { spool: undefined, undo: undefined, force: false, progress: false, _: ['t'] })
  t.match(parse(['--spool', '/tmp/s', '--undo', '/tmp/u', '--force', '--progress', 't']), {
    spool: '/tmp/s',
    undo: '/tmp/u',
    force: true,
    progress: true,
  })
  t.throws(() => parse(['--forse']), { name: 'UsageError' })
  t.end()
})
