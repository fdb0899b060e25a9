import { parentPort, workerData } from 'node:worker_threads'
import { stripeHasher } from './stripe-hasher.js'
import type { StripeJob } from './stripe-digests.js'

// One hashing thread of stripeDigests: it hashes its share of the stripes
// and posts each, at most `ahead` stripes before the main thread takes them.
// The digests go to `ahead` + 1 slots of shared memory in turn: the main
// thread is done with a slot once it has taken the `ahead` stripes after it.

const job = workerData as StripeJob
const port = parentPort as NonNullable<typeof parentPort>
const control = new Int32Array(job.control)
const hash = stripeHasher(job, job.results)

/** Waits until the main thread has taken enough of this worker's stripes; false once told to stop. */
function mayGoOn(produced: number): boolean {
  for (;;) {
    if (Atomics.load(control, 0) !== 0) return false
    const taken = Atomics.load(control, 1 + job.worker)
    if (produced - taken < job.ahead) return true
    Atomics.wait(control, 1 + job.worker, taken)
  }
}

function run(): void {
  let produced = 0
  for (let stripe = job.worker; stripe < job.stripes; stripe += job.workers) {
    if (!mayGoOn(produced)) return
    const slot = produced % (job.ahead + 1)
    const result = hash(stripe, slot)
    if ('error' in result) {
      port.postMessage({ stripe, error: result.error })
      return
    }
    port.postMessage({ stripe, slot, counts: result.counts })
    produced++
  }
}

run()
