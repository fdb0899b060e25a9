import { spawn } from 'node:child_process'
import { closeSync, createReadStream, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { randomBytes } from '../lib/data.js'
import { binPath, sh } from '../lib/run.js'

// Memory is bounded whatever the size of the stream: one record at a time,
// whether stdin is a pipe or a regular file, with and without --spool. A
// 512 MiB stream goes through each path and the peak resident set size of the
// process, read from outside (VmHWM), must stay under the limit.

const LIMIT = 256 * 1024 * 1024
// 512 MiB: enough to fail the old queue (it kept up to 1024 pieces of 1 MiB), and the apply paths write and sync it in time.
const SIZE = 512 * 1024 * 1024

const dir = mkdtempSync(join(tmpdir(), 'memory-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))
const image = join(dir, 'src.img')
const stream = join(dir, 's.bps')

t.before(async () => {
  // Random data without zeros, so every record carries its payload: 16 MiB repeated.
  const piece = randomBytes(16 << 20, 7)
  const fd = openSync(image, 'w')
  for (let at = 0; at < SIZE; at += piece.length) writeSync(fd, piece)
  closeSync(fd)
  const r = await sh(`era-copy --all ${image} > ${stream}`)
  if (r.status !== 0) throw new Error(r.stderr)
  rmSync(image)
})

/** Runs a binary with stdin from the stream (a regular file, or a pipe) and gives its exit status and peak RSS. */
function peak(
  program: string,
  args: string[],
  stdin: 'file' | 'pipe',
): Promise<{ status: number | null; hwm: number; stderr: string }> {
  return new Promise((resolve, reject) => {
    const input = stdin === 'file' ? openSync(stream, 'r') : 'pipe'
    const child = spawn(process.execPath, [binPath(program), ...args], { stdio: [input, 'ignore', 'pipe'] })
    if (typeof input === 'number') closeSync(input)
    else
      createReadStream(stream)
        .pipe(child.stdin as NodeJS.WritableStream)
        .on('error', () => {})
    let hwm = 0
    let stderr = ''
    child.stderr?.on('data', (b: Buffer) => (stderr += b.toString()))
    const poll = setInterval(() => {
      try {
        const kb = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'latin1'))?.[1]
        if (kb !== undefined) hwm = Math.max(hwm, Number(kb) * 1024)
      } catch {
        // The process has just exited.
      }
    }, 20)
    child.on('error', reject)
    child.on('close', (status) => {
      clearInterval(poll)
      resolve({ status, hwm, stderr })
    })
  })
}

const cases: [string, string, string[], 'file' | 'pipe'][] = [
  ['era-apply --check, a pipe', 'era-apply', ['--check'], 'pipe'],
  ['era-apply --check, a regular file', 'era-apply', ['--check'], 'file'],
  ['era-apply TARGET, a regular file on stdin', 'era-apply', ['TARGET'], 'file'],
  ['era-apply TARGET, a pipe', 'era-apply', ['TARGET'], 'pipe'],
  ['era-apply --spool DIR TARGET', 'era-apply', ['--spool', 'SPOOL', 'TARGET'], 'pipe'],
  ['bpdump < file', 'bpdump', [], 'file'],
]

for (const [name, program, args, stdin] of cases) {
  void t.test(name, async (t) => {
    const target = join(dir, 'target.img')
    const spool = join(dir, 'spool')
    mkdirSync(spool, { recursive: true })
    t.teardown(() => rmSync(target, { force: true }))
    const r = await peak(
      program,
      args.map((a) => (a === 'TARGET' ? target : a === 'SPOOL' ? spool : a)),
      stdin,
    )
    t.equal(r.status, 0, r.stderr)
    t.ok(r.hwm > 0, 'measured')
    t.ok(r.hwm < LIMIT, `peak RSS ${(r.hwm / 2 ** 20).toFixed(0)} MiB, limit ${LIMIT / 2 ** 20} MiB`)
  })
}
