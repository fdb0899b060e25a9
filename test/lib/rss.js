// Test instrumentation, not product code: preloaded into a child with
//   node --import ./test/lib/rss.js program.js
// it writes the child's peak resident set size in bytes to the file named by
// BLOCKPIPE_RSS_FILE when the process exits.
import { writeFileSync } from 'node:fs'

const file = process.env.BLOCKPIPE_RSS_FILE
if (file) {
  process.on('exit', () => writeFileSync(file, String(process.resourceUsage().maxRSS * 1024)))
}
