// An unknown option is reported as the user typed it, dashes included, with
// the closest known option: a typo in a nightly script should be obvious.

/** Edit distance: insertions, deletions, substitutions and swaps of neighbours. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  )
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1
      let best = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, d[i - 2]![j - 2]! + 1)
      d[i]![j] = best
    }
  }
  return d[a.length]![b.length]!
}

/** The known option closest to `name`, if one is close enough to be a typo of it. */
export function closestOption(name: string, known: readonly string[]): string | undefined {
  // One letter is one typo away from every other: only a wrong case is a likely typo.
  if (name.length === 1) return known.find((k) => k !== name && k.toLowerCase() === name.toLowerCase())
  let best: string | undefined
  let bestDistance = Infinity
  for (const candidate of known) {
    if (candidate.length === 1) continue
    const distance = candidate.startsWith(name) && name.length >= 3 ? 0.5 : editDistance(name, candidate)
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance]
  }
  return bestDistance <= Math.max(1, Math.floor(name.length / 3)) ? best : undefined
}

export const dashed = (name: string): string => (name.length === 1 ? `-${name}` : `--${name}`)

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

/**
 * yargs' "Unknown arguments: block-sise, blockSise" as "unknown option
 * --block-sise (did you mean --block-size?)"; any other message unchanged.
 */
export function unknownOptionMessage(message: string, known: readonly string[]): string {
  const match = /^Unknown arguments?: (.*)$/s.exec(message)
  if (match === null) return message
  const names = match[1]!.split(', ')
  // yargs adds the camelCase twin of every kebab-case name: report the name as typed.
  const typed = names.filter((n) => !/[A-Z]/.test(n) || !names.includes(kebab(n)))
  const parts = typed.map((n) => {
    const near = closestOption(n, known)
    return near === undefined ? dashed(n) : `${dashed(n)} (did you mean ${dashed(near)}?)`
  })
  return `unknown option${parts.length > 1 ? 's' : ''} ${parts.join(', ')}`
}
