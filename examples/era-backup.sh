#!/usr/bin/env bash
# era-backup.sh - nightly incremental backup of a dm-era device over ssh.
#
# dm-era counts time in eras and remembers, for every block of the device, the
# era it was last written in. A backup that remembers the era it started in
# (PREV) only has to copy the blocks written since then. Each run:
#
#   1. drops a metadata snapshot left held by a run that was killed;
#   2. `dmsetup message NAME 0 take_metadata_snap`: archives the current
#      writeset, starts a new era and snapshots the metadata;
#   3. reads the current era from `dmsetup status` AT ONCE (NEXT): every write
#      after the snapshot is in era NEXT or later, so the next run, asking for
#      the blocks written since NEXT, cannot miss it. Reading it later (after
#      the copy, say) could record an era that something else (a checkpoint, a
#      table reload) advanced meanwhile, and the blocks written in between
#      would be skipped silently; an era too low only copies some blocks twice;
#   4. `era_invalidate --metadata-snapshot --written-since PREV METADATA_DEV`
#      lists the blocks written since PREV, then the snapshot is dropped (also
#      on any failure: a trap; a held snapshot costs metadata space and makes
#      the next take_metadata_snap fail);
#   5. `era-copy` reads those blocks from the live device and sends them over
#      ssh to `era-apply --spool DIR --undo FILE IMAGE` on the backup host:
#      the spool keeps a cut or corrupt stream from touching the image, the
#      undo file (one per night) holds what the night overwrote, so applying
#      the undo files newest first rolls the image back night by night
#      (reverse increments: `era-apply IMAGE < FILE.undo`);
#   6. only after the remote apply succeeded, NEXT is written to the state
#      file (atomically: a temporary file, fsync, rename). A failed run leaves
#      the state alone and the next run copies everything since PREV again.
#
# The first run (no state file) or -F copies the whole device (era-copy
# --all), without spool or undo; the era is still taken from a snapshot
# first, so writes made during the copy are picked up by the next run.
#
# thin-provisioning-tools older than 1.0 (Debian 12 ships 0.9.0): era_invalidate
# ignores --metadata-snapshot and reads the live metadata (upstream issue 192;
# the flag is still needed, without it the tool refuses a device in use). The
# list then also holds blocks written after the snapshot: they are copied
# tonight and again tomorrow, which is harmless. And the tool reads metadata
# the kernel may be updating: it may fail, then this run fails and the next one
# retries. The script warns when it finds such a version: on the first
# successful run with it (then it records the version beside the state file,
# NAME.era.tools, and stays quiet: a cron mail per night helps no one), and
# on every run with -v.
#
# Environment: cron runs jobs with PATH=/usr/bin:/bin, where npm's global
# binaries (/usr/local/bin) are not: set PATH in the crontab or the systemd
# unit (PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin; dmsetup is in
# /usr/sbin). The script checks that it finds dmsetup, era_invalidate,
# era-copy, ssh and flock, and names the one it does not find. The backup
# host's shell must find era-apply (or set REMOTE_ERA_APPLY to its full path).
#
# The blocks are read from the live device while it is being written: the
# image is crash-consistent only block by block, like any copy of a running
# device. A block changed during the copy is copied again by the next run.
#
# Exit status: 0 done; 1 failed (nothing recorded: the next run starts from
# the same era); 2 bad usage or configuration; 3 the backup host refused the
# stream (for example an incremental for an image that does not exist: run
# with -F); 4 another run holds the lock.
set -euo pipefail

ME='era-backup'
usage() {
  cat <<EOF
Usage: era-backup.sh [options] -n NAME -r HOST -i IMAGE

Copies the blocks of the dm-era device NAME written since the last run to
IMAGE on HOST (over ssh, with era-copy | era-apply); the first run copies all.

Options (each can also be set by the variable in brackets):
  -n NAME     dm-era device name, as dmsetup knows it            [ERA_NAME]
  -d DEVICE   the device to read (default /dev/mapper/NAME)     [ERA_DEVICE]
  -m DEVICE   its metadata device (default: from the table)     [ERA_METADATA]
  -b SECTORS  era block size in 512-byte sectors (default: from
              the table; when given, it must match)              [ERA_BLOCK]
  -r HOST     ssh destination of the backup host                [REMOTE]
  -i IMAGE    image path on HOST                                 [REMOTE_IMAGE]
  -s FILE     state file: the era to copy from next time
              (default /var/lib/era-backup/NAME.era)             [STATE_FILE]
  -u DIR      undo directory on HOST, one undo file per night
              (default IMAGE.undo; 'none': no undo files)        [REMOTE_UNDO_DIR]
  -t DIR      spool directory on HOST (default: IMAGE's
              directory; 'none': apply as the stream arrives)    [REMOTE_SPOOL_DIR]
  -F          copy the whole device even though a state exists
  -P          show progress (era-copy --progress)
  -q          print only warnings and errors
  -v          repeat the thin-provisioning-tools version warning
              (given once per version otherwise)
  -h          this help

Commands (words split on blanks): DMSETUP (dmsetup), ERA_INVALIDATE
(era_invalidate), ERA_COPY (era-copy), SSH (ssh -o BatchMode=yes),
REMOTE_ERA_APPLY (era-apply, run by the remote shell, e.g. 'sudo era-apply').

Exit: 0 done, 1 failed (state unchanged), 2 usage, 3 the backup host refused
the stream, 4 another run holds the lock.
Example (cron): era-backup.sh -q -n vm_era -r backup@nas -i /srv/backup/vm.img
EOF
}

ERA_NAME=${ERA_NAME:-}
ERA_DEVICE=${ERA_DEVICE:-}
ERA_METADATA=${ERA_METADATA:-}
ERA_BLOCK=${ERA_BLOCK:-}
REMOTE=${REMOTE:-}
REMOTE_IMAGE=${REMOTE_IMAGE:-}
STATE_FILE=${STATE_FILE:-}
REMOTE_UNDO_DIR=${REMOTE_UNDO_DIR:-}
REMOTE_SPOOL_DIR=${REMOTE_SPOOL_DIR:-}
full=0 progress=0 quiet=0 verbose=0

say() { ((quiet)) || echo "$ME: $*"; }
warn() { echo "$ME: warning: $*" >&2; }
die() {
  echo "$ME: error: $1" >&2
  exit "${2:-1}"
}
usage_error() {
  echo "$ME: $1 (-h for help)" >&2
  exit 2
}

while getopts ':n:d:m:b:r:i:s:u:t:FPqvh' opt; do
  case $opt in
    n) ERA_NAME=$OPTARG ;;
    d) ERA_DEVICE=$OPTARG ;;
    m) ERA_METADATA=$OPTARG ;;
    b) ERA_BLOCK=$OPTARG ;;
    r) REMOTE=$OPTARG ;;
    i) REMOTE_IMAGE=$OPTARG ;;
    s) STATE_FILE=$OPTARG ;;
    u) REMOTE_UNDO_DIR=$OPTARG ;;
    t) REMOTE_SPOOL_DIR=$OPTARG ;;
    F) full=1 ;;
    P) progress=1 ;;
    q) quiet=1 ;;
    v) verbose=1 ;;
    h)
      usage
      exit 0
      ;;
    :) usage_error "option -$OPTARG needs a value" ;;
    *) usage_error "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 0 ]] || usage_error "unexpected argument '$1'"
[[ -n $ERA_NAME ]] || usage_error "no dm-era device name (-n)"
[[ -n $REMOTE ]] || usage_error "no backup host (-r)"
[[ -n $REMOTE_IMAGE ]] || usage_error "no image path on the backup host (-i)"
[[ -z $ERA_BLOCK || $ERA_BLOCK =~ ^[1-9][0-9]*$ ]] || usage_error "-b: block size in sectors, got '$ERA_BLOCK'"
ERA_DEVICE=${ERA_DEVICE:-/dev/mapper/$ERA_NAME}
STATE_FILE=${STATE_FILE:-/var/lib/era-backup/$ERA_NAME.era}
REMOTE_UNDO_DIR=${REMOTE_UNDO_DIR:-$REMOTE_IMAGE.undo}
[[ -n $REMOTE_SPOOL_DIR ]] || REMOTE_SPOOL_DIR=$(dirname -- "$REMOTE_IMAGE")

read -r -a dmsetup <<< "${DMSETUP:-dmsetup}"
read -r -a era_invalidate <<< "${ERA_INVALIDATE:-era_invalidate}"
read -r -a era_copy <<< "${ERA_COPY:-era-copy}"
read -r -a ssh <<< "${SSH:-ssh -o BatchMode=yes}"
remote_era_apply=${REMOTE_ERA_APPLY:-era-apply}
for cmd in "${dmsetup[0]}" "${era_invalidate[0]}" "${era_copy[0]}" "${ssh[0]}" flock mktemp sync; do
  command -v "$cmd" > /dev/null ||
    die "$cmd not found in PATH=$PATH: install it, add its directory to PATH (cron: PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin in the crontab), or set the variable naming it (-h)" 2
done

# A word for the remote shell: single-quoted.
rquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# --- the tools ------------------------------------------------------------
version=$("${era_invalidate[@]}" --version 2>&1 | grep -oE '[0-9]+\.[0-9]+(\.[0-9]+)?' | head -n 1 || true)
warned=$(cat -- "$STATE_FILE.tools" 2> /dev/null || true)
if ((!verbose)) && [[ -n $version && $warned == "$version" ]]; then
  : # warned on an earlier run with this version
elif [[ -z $version ]]; then
  warn "cannot tell the version of ${era_invalidate[*]}; if it is older than 1.0 it ignores --metadata-snapshot"
elif ((${version%%.*} < 1)); then
  warn "era_invalidate $version (thin-provisioning-tools older than 1.0) ignores --metadata-snapshot and reads" \
    "the live metadata (upstream issue 192): the list may also hold blocks written after the snapshot (copied" \
    "again next run: harmless), and a read of metadata the kernel is changing may fail (this run then fails;" \
    "the next one retries). Install thin-provisioning-tools 1.0 or later to read the snapshot."
fi

# --- one run at a time per state file -------------------------------------
# A run that fails leaves no trace: the state directory it created and its
# lock file go again (an existing directory and a lock file in use stay).
state_dir=$(dirname -- "$STATE_FILE")
made_dir=0 locked=0
state_cleanup() {
  if ((locked)) && [[ ! -e $STATE_FILE ]]; then rm -f -- "$STATE_FILE.lock" "$STATE_FILE.tools"; fi
  if ((made_dir)); then
    local d=$state_dir
    while rmdir -- "$d" 2> /dev/null && [[ $d != "$made_top" ]]; do d=$(dirname -- "$d"); done
  fi
}
if [[ ! -d $state_dir ]]; then
  made_top=$state_dir
  while [[ ! -d $(dirname -- "$made_top") ]]; do made_top=$(dirname -- "$made_top"); done
  mkdir -p -- "$state_dir" 2> /dev/null || die "cannot create $state_dir, the directory of the state file (-s)" 2
  made_dir=1
fi
trap state_cleanup EXIT
exec 9>> "$STATE_FILE.lock" || die "cannot open the lock file $STATE_FILE.lock (-s)" 2
flock -n 9 || die "another era-backup run holds $STATE_FILE.lock" 4
locked=1

prev=
if [[ -e $STATE_FILE ]]; then
  prev=$(< "$STATE_FILE") || die "cannot read the state file $STATE_FILE"
  [[ $prev =~ ^[0-9]+$ ]] || die "the state file $STATE_FILE holds '$prev', not an era (delete it, or -F, for a full copy)"
fi
((full)) && prev=

# --- the device -------------------------------------------------------------
# Table: <start> <length> era <metadata dev> <origin dev> <block size>
table=$("${dmsetup[@]}" table "$ERA_NAME") || die "dmsetup table $ERA_NAME failed: no such device?"
read -r _ length target meta_dev _ table_block _ <<< "$table"
[[ $target == era && $length =~ ^[0-9]+$ && $table_block =~ ^[0-9]+$ ]] \
  || die "$ERA_NAME is not a dm-era device (table: $table)" 2
if [[ -z $ERA_BLOCK ]]; then
  ERA_BLOCK=$table_block
elif ((ERA_BLOCK != table_block)); then
  die "-b $ERA_BLOCK, but $ERA_NAME's era blocks are $table_block sectors (its table: $table)" 2
fi
ERA_METADATA=${ERA_METADATA:-/dev/block/$meta_dev}
if [[ -b $ERA_DEVICE ]]; then
  size=$(blockdev --getsize64 "$ERA_DEVICE") || die "cannot read the size of $ERA_DEVICE"
elif [[ -f $ERA_DEVICE ]]; then
  size=$(stat -L -c %s -- "$ERA_DEVICE")
else
  die "$ERA_DEVICE is not a block device (-d)" 2
fi
((size == length * 512)) || die "$ERA_DEVICE holds $size bytes, but $ERA_NAME is $((length * 512)) bytes: -d names another device" 2

# era_status: sets era and held from `dmsetup status`:
# <start> <length> era <md block size> <used>/<total> <current era> <held root|->
era_status() {
  local line f
  line=$("${dmsetup[@]}" status "$ERA_NAME") || die "dmsetup status $ERA_NAME failed"
  read -r -a f <<< "$line"
  [[ ${f[2]:-} == era && ${f[5]:-} =~ ^[0-9]+$ && -n ${f[6]:-} ]] || die "unexpected status of $ERA_NAME: $line"
  era=${f[5]} held=${f[6]}
}
message() { "${dmsetup[@]}" message "$ERA_NAME" 0 "$1"; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/era-backup.XXXXXX")
snap=0
cleanup() {
  local status=$?
  if ((snap)); then
    message drop_metadata_snap || echo "$ME: error: could not drop the metadata snapshot of $ERA_NAME:" \
      "run: dmsetup message $ERA_NAME 0 drop_metadata_snap" >&2
  fi
  rm -rf -- "$tmp"
  state_cleanup
  exit "$status"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP

# --- 1-4: snapshot, era, block list -----------------------------------------
era_status
if [[ $held != - ]]; then
  warn "$ERA_NAME holds a metadata snapshot (root $held), left by a run that did not finish: dropping it"
  message drop_metadata_snap || die "cannot drop the stale metadata snapshot of $ERA_NAME"
fi
snap=1
message take_metadata_snap || {
  snap=0
  die "dmsetup message $ERA_NAME 0 take_metadata_snap failed"
}
era_status
next=$era
if [[ -n $prev ]] && ((next <= prev)); then
  msg="$ERA_NAME is at era $next, not after era $prev of the state file $STATE_FILE: its metadata was recreated,"
  die "$msg or the state file belongs to another device; a full copy (-F) starts over"
fi
if [[ -n $prev ]]; then
  "${era_invalidate[@]}" --metadata-snapshot --written-since "$prev" "$ERA_METADATA" > "$tmp/blocks.xml" \
    || die "era_invalidate --metadata-snapshot --written-since $prev $ERA_METADATA failed"
fi
message drop_metadata_snap || die "cannot drop the metadata snapshot of $ERA_NAME"
snap=0

# --- 5: copy ----------------------------------------------------------------
opts=(-b "$ERA_BLOCK")
((progress)) && opts+=(--progress)
apply=$remote_era_apply
if [[ -n $prev ]]; then
  # Blocks listed, for the log: <block block="N"/> and <range begin="B" end="E"/> (end exclusive).
  blocks=$(awk '
    /<block / { n++ }
    /<range/ { b = $0; sub(/.*begin *= *"/, "", b); sub(/".*/, "", b)
               e = $0; sub(/.*end *= *"/, "", e); sub(/".*/, "", e); n += e - b }
    END { print n + 0 }' "$tmp/blocks.xml")
  what="blocks written since era $prev: $blocks of $((ERA_BLOCK * 512)) bytes"
  opts+=(--written-since "$prev")
  input=$tmp/blocks.xml
  undo=
  if [[ $REMOTE_UNDO_DIR != none ]]; then
    undo=$REMOTE_UNDO_DIR/$(basename -- "$REMOTE_IMAGE").$(date -u +%Y%m%dT%H%M%SZ).era$prev-$next.undo
    apply="mkdir -p -- $(rquote "$REMOTE_UNDO_DIR") && $apply --undo $(rquote "$undo")"
  fi
  [[ $REMOTE_SPOOL_DIR == none ]] || apply+=" --spool $(rquote "$REMOTE_SPOOL_DIR")"
else
  what="the whole device ($size bytes)"
  opts+=(--all)
  input=/dev/null
  undo=
fi
apply+=" $(rquote "$REMOTE_IMAGE")"
say "$ERA_NAME: copying $what to $REMOTE:$REMOTE_IMAGE"
# The messages of each side are kept apart, so that a failure is told in one
# line: the cause, not the broken pipe or the cut stream it made on the other.
copy_err=$tmp/copy.err
((progress)) && copy_err=/dev/stderr
set +e
"${era_copy[@]}" "${opts[@]}" "$ERA_DEVICE" < "$input" 2> "$copy_err" | "${ssh[@]}" "$REMOTE" "$apply" 2> "$tmp/apply.err"
status=("${PIPESTATUS[@]}")
set -e
last_line() { grep -v '^[[:space:]]*$' "$1" 2> /dev/null | tail -n 1 || true; }
if ((status[0] == 0 && status[1] == 0)); then
  cat -- "$tmp/copy.err" "$tmp/apply.err" >&2 2> /dev/null || true # warnings of a run that succeeded
else
  consequence='broken pipe|empty input|no stream at all|unexpected end of data|was cut|standard input'
  cause=$(last_line "$tmp/copy.err")
  apply_msg=$(last_line "$tmp/apply.err")
  if ((status[0] == 0)) || [[ -z $cause || $cause =~ $consequence ]]; then
    [[ -z $apply_msg ]] || ((status[1] == 0)) || cause=$apply_msg
  fi
  why="era-copy exit ${status[0]}, ssh $REMOTE ... era-apply exit ${status[1]}${cause:+: $cause}"
  ((status[1] == 255)) && why+=" (255: ssh itself failed)"
  # era-apply exit 3: it refused the stream before writing anything.
  ((status[1] == 3)) && die "$REMOTE refused the stream ($why); state unchanged${prev:+ (era $prev)}" 3
  die "the copy failed ($why); state unchanged${prev:+ (era $prev)}"
fi

# --- 6: the new era ---------------------------------------------------------
new=$(mktemp "$STATE_FILE.XXXXXX") || die "cannot write next to the state file $STATE_FILE"
if ! { echo "$next" > "$new" && sync -- "$new" && mv -f -- "$new" "$STATE_FILE"; }; then
  rm -f -- "$new"
  die "the copy is done, but the state file $STATE_FILE could not be written: the next run copies since era ${prev:-0} again"
fi
made_dir=0
[[ -z $version || $warned == "$version" ]] || echo "$version" > "$STATE_FILE.tools" || true
sync -- "$state_dir" || true
say "$ERA_NAME: done${undo:+ (undo: $REMOTE:$undo)}; next run copies the blocks written since era $next"
