#!/usr/bin/env node
// npm run fuzz [-- CASES [SEED]]: the fuzz test of the stream readers
// (test/fuzz/streams.test.ts) for many more cases than `npm test` runs:
// 20000 by default, through the binaries 200. A failure prints its seed;
// `npm run fuzz -- CASES SEED` runs that sequence again.
import { spawnSync } from 'node:child_process'

const [cases = '20000', seed] = process.argv.slice(2)
const env = {
  ...process.env,
  BLOCKPIPE_FUZZ_CASES: cases,
  BLOCKPIPE_FUZZ_BINARY_CASES: String(Math.max(12, Math.round(Number(cases) / 100))),
}
if (seed !== undefined) env.BLOCKPIPE_TEST_SEED = seed
const result = spawnSync('npx', ['tap', '--disable-coverage', '--timeout=0', 'test/fuzz/streams.test.ts'], {
  stdio: 'inherit',
  env,
})
process.exit(result.status ?? 1)
