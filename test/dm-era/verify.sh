#!/usr/bin/env bash
# verify.sh - check one night of era_invalidate output without blockpipe.
#
#   verify.sh BLOCK_SECTORS STATE_PREV STATE_NEXT XML [WRITES]
#
# 1. Applies the blocks XML lists, taken from STATE_NEXT, onto a copy of
#    STATE_PREV (dd, block size BLOCK_SECTORS*512) and checks the result equals
#    STATE_NEXT byte for byte.
# 2. With WRITES ("sector count" per line, as the guest recorded them): checks
#    XML lists exactly the era blocks those writes touched. Without WRITES:
#    checks XML lists every block (a --written-since 0 answer).
# Prints what it found; exits 1 on a mismatch, 2 on bad usage.
set -euo pipefail
ME=verify.sh
die() { echo "$ME: error: $*" >&2; exit 2; }
[[ $# -eq 4 || $# -eq 5 ]] || die "usage: $ME BLOCK_SECTORS STATE_PREV STATE_NEXT XML [WRITES]"
bs=$1 prev=$2 next=$3 xml=$4 writes=${5:-}
if ! [[ $bs =~ ^[0-9]+$ ]] || ((bs == 0)); then die "bad block size '$bs'"; fi
for f in "$prev" "$next" "$xml" ${writes:+"$writes"}; do [[ -f $f ]] || die "$f not found"; done
size=$(stat -c %s "$next")
[[ $(stat -c %s "$prev") == "$size" ]] || die "$prev and $next differ in size"
bytes=$((bs * 512))
nblocks=$(( (size + bytes - 1) / bytes ))

# XML -> "begin end" (end exclusive), for 0.9.0 (`end = "3"`) and 1.x output.
xml_ranges() {
  awk '
    /<range/ {
      b = $0; sub(/.*begin *= *"/, "", b); sub(/".*/, "", b)
      e = $0; sub(/.*end *= *"/, "", e); sub(/".*/, "", e)
      print b, e; next }
    /<block / {
      b = $0; sub(/.*block *= *"/, "", b); sub(/".*/, "", b)
      print b, b + 1 }' "$1"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/dmera-verify.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

xml_ranges "$xml" > "$tmp/ranges"
awk '{ for (i = $1; i < $2; i++) print i }' "$tmp/ranges" > "$tmp/listed"
fail=0

# 1. apply the listed blocks and compare
cp --sparse=always "$prev" "$tmp/applied"
while read -r b e; do
  dd if="$next" of="$tmp/applied" bs="$bytes" skip="$b" seek="$b" count=$((e - b)) conv=notrunc status=none
done < "$tmp/ranges"
if cmp -s "$tmp/applied" "$next"; then
  echo "$ME: apply: OK ($(wc -l < "$tmp/listed") blocks of $bytes bytes applied onto $(basename "$prev") give $(basename "$next"))"
else
  echo "$ME: apply: MISMATCH: $(basename "$prev") + listed blocks != $(basename "$next")"
  fail=1
fi

# blocks that really changed (random data: nearly every byte of a written block)
cmp -l "$prev" "$next" 2>/dev/null | awk -v B="$bytes" '{ print int(($1 - 1) / B) }' | uniq | sort -n -u > "$tmp/changed" || true
echo "$ME: blocks whose content changed: $(wc -l < "$tmp/changed")"

# 2. the listed set against the expected one
if [[ -n $writes ]]; then
  awk -v S="$bs" 'NF == 2 { f = int($1 / S); l = int(($1 + $2 - 1) / S); for (i = f; i <= l; i++) print i }' "$writes" | sort -n -u > "$tmp/expected"
  what="the blocks written"
else
  seq 0 $((nblocks - 1)) > "$tmp/expected"
  what="every block (0..$((nblocks - 1)))"
fi
sort -n -u "$tmp/listed" > "$tmp/listed.sorted"
missing=$(comm -23 <(sort "$tmp/expected") <(sort "$tmp/listed.sorted") | sort -n | tr '\n' ' ')
extra=$(comm -13 <(sort "$tmp/expected") <(sort "$tmp/listed.sorted") | sort -n | tr '\n' ' ')
if [[ -z $missing && -z $extra ]]; then
  echo "$ME: listed == $what: OK ($(wc -l < "$tmp/expected") blocks: $(awk '{ printf "%s ", $1 }' "$tmp/expected" | cut -c1-200))"
else
  [[ -z $missing ]] || echo "$ME: MISSING (written, not listed): $missing"
  [[ -z $extra ]] || echo "$ME: EXTRA (listed, not written): $extra"
  fail=1
fi
exit "$fail"
