#!/usr/bin/env bash
# bsync-backup.sh - nightly sync of a block device or image to a copy on
# another host over ssh, driven by digests: no dm-era needed.
#
# bsum digests an image chunk by chunk; bdiff compares a source with those
# digests and sends only the chunks that differ (a delta); bpatch applies the
# delta, checking that every chunk it overwrites still holds what the digests
# say (else it stops with exit 3: the copy is not the image the delta was made
# against). With --digests-out, bdiff also writes the digests of what it read,
# which are the digests of the copy once the delta is applied. So:
#
#   first night (no digest file), the copy is read once, on the backup host:
#     ssh HOST bsum IMAGE | bdiff --digests-out NEW SOURCE | ssh HOST bpatch IMAGE
#   later nights, only the source is read; the copy is only written:
#     bdiff --digests-out NEW SOURCE < DIGESTS | ssh HOST bpatch --undo U IMAGE
#
# and NEW replaces DIGESTS (fsync, rename) only after bpatch succeeded: a
# failed night leaves the digest file describing the copy as it still is.
# bpatch runs with --spool (the whole delta and every chunk it will overwrite
# are checked before anything is written) and --undo (one file per night on
# the backup host; applying them newest first with `bpatch IMAGE < FILE.undo`
# rolls the copy back night by night).
#
# What it trusts: the copy is changed by nothing but this script. A chunk of
# the copy changed behind its back is only noticed when the source changes the
# same chunk (exit 3); -F digests the copy again, as on the first night.
# Copy from something that does not change during the run (an LVM snapshot, a
# frozen file system): bdiff reads each chunk once, so a live source still
# gives a copy that matches the digest file, but not a consistent image.
#
# Environment: cron runs jobs with PATH=/usr/bin:/bin, where npm's global
# binaries (/usr/local/bin) are not: set PATH in the crontab or the systemd
# unit (PATH=/usr/local/bin:/usr/bin:/bin). The script checks that it finds
# bdiff, ssh, flock and the rest, and names the one it does not find. The
# backup host's shell must find bsum and bpatch on its own PATH (or set
# REMOTE_BSUM, REMOTE_BPATCH to their full paths). Nothing else is read from
# the environment but the variables listed by -h.
#
# Exit status: 0 done; 1 failed (digest file unchanged); 2 bad usage (or, on
# the first run, no IMAGE on HOST and no -c); 3 the copy on the backup host is
# not what the digest file says (bpatch exit 3, nothing written: run with -F to
# digest it again); 4 another run holds the lock.
set -euo pipefail

ME='bsync-backup'
usage() {
  cat <<EOF
Usage: bsync-backup.sh [options] -r HOST -i IMAGE SOURCE

Brings IMAGE on HOST up to date with SOURCE (a block device or a file),
sending only the chunks that changed. The first run reads IMAGE on HOST
(bsum); later runs compare SOURCE with the digest file the previous run left.

Options (each can also be set by the variable in brackets):
  -r HOST     ssh destination of the backup host                [REMOTE]
  -i IMAGE    image path on HOST                                 [REMOTE_IMAGE]
  -s FILE     digest file: the digests of IMAGE as the last run
              left it (default /var/lib/bsync-backup/NAME.sum,
              NAME = SOURCE's file name)                         [DIGEST_FILE]
  -b SIZE     chunk size on the first run (bsum -b; default 4K) [CHUNK_SIZE]
  -u DIR      undo directory on HOST, one undo file per run
              (default IMAGE.undo; 'none': no undo files)        [REMOTE_UNDO_DIR]
  -t DIR      spool directory on HOST (default: IMAGE's
              directory; 'none': apply as the delta arrives)     [REMOTE_SPOOL_DIR]
  -c          first run: create IMAGE on HOST (sparse, SOURCE's
              size) when it does not exist
  -F          digest IMAGE on HOST again, as on the first run
  -P          show progress (bdiff --progress)
  -q          print only warnings and errors
  -h          this help

PATH must reach bdiff and ssh (cron's default /usr/bin:/bin does not reach
npm's /usr/local/bin: set PATH=/usr/local/bin:/usr/bin:/bin in the crontab).
Commands (words split on blanks): BDIFF (bdiff), SSH (ssh -o BatchMode=yes),
REMOTE_BSUM (bsum), REMOTE_BPATCH (bpatch): the last two are run by the
remote shell (e.g. 'sudo bpatch').

Exit: 0 done, 1 failed (digest file unchanged), 2 usage (or no IMAGE on the
first run, without -c), 3 IMAGE is not what
the digest file says (nothing written; -F), 4 another run holds the lock.
Example (cron): bsync-backup.sh -q -r backup@nas -i /srv/backup/vm.img /dev/vg/vm-snap
EOF
}

REMOTE=${REMOTE:-}
REMOTE_IMAGE=${REMOTE_IMAGE:-}
DIGEST_FILE=${DIGEST_FILE:-}
CHUNK_SIZE=${CHUNK_SIZE:-}
REMOTE_UNDO_DIR=${REMOTE_UNDO_DIR:-}
REMOTE_SPOOL_DIR=${REMOTE_SPOOL_DIR:-}
create=0 full=0 progress=0 quiet=0

say() { ((quiet)) || echo "$ME: $*"; }
die() {
  echo "$ME: error: $1" >&2
  exit "${2:-1}"
}
usage_error() {
  echo "$ME: $1 (-h for help)" >&2
  exit 2
}

while getopts ':r:i:s:b:u:t:cFPqh' opt; do
  case $opt in
    r) REMOTE=$OPTARG ;;
    i) REMOTE_IMAGE=$OPTARG ;;
    s) DIGEST_FILE=$OPTARG ;;
    b) CHUNK_SIZE=$OPTARG ;;
    u) REMOTE_UNDO_DIR=$OPTARG ;;
    t) REMOTE_SPOOL_DIR=$OPTARG ;;
    c) create=1 ;;
    F) full=1 ;;
    P) progress=1 ;;
    q) quiet=1 ;;
    h)
      usage
      exit 0
      ;;
    :) usage_error "option -$OPTARG needs a value" ;;
    *) usage_error "unknown option -$OPTARG" ;;
  esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || usage_error "give one SOURCE"
SOURCE=$1
[[ -n $REMOTE ]] || usage_error "no backup host (-r)"
[[ -n $REMOTE_IMAGE ]] || usage_error "no image path on the backup host (-i)"
if [[ -b $SOURCE ]]; then
  size=$(blockdev --getsize64 "$SOURCE") || die "cannot read the size of $SOURCE"
elif [[ -f $SOURCE ]]; then
  size=$(stat -L -c %s -- "$SOURCE")
else
  die "$SOURCE is neither a block device nor a file" 2
fi
DIGEST_FILE=${DIGEST_FILE:-/var/lib/bsync-backup/$(basename -- "$SOURCE").sum}
REMOTE_UNDO_DIR=${REMOTE_UNDO_DIR:-$REMOTE_IMAGE.undo}
[[ -n $REMOTE_SPOOL_DIR ]] || REMOTE_SPOOL_DIR=$(dirname -- "$REMOTE_IMAGE")

read -r -a bdiff <<< "${BDIFF:-bdiff}"
read -r -a ssh <<< "${SSH:-ssh -o BatchMode=yes}"
remote_bsum=${REMOTE_BSUM:-bsum}
remote_bpatch=${REMOTE_BPATCH:-bpatch}
for cmd in "${bdiff[0]}" "${ssh[0]}" flock mktemp sync; do
  command -v "$cmd" > /dev/null ||
    die "$cmd not found in PATH=$PATH: install it, add its directory to PATH (cron: PATH=/usr/local/bin:/usr/bin:/bin in the crontab), or set the variable naming it (-h)" 2
done

# A word for the remote shell: single-quoted.
rquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# --- one run at a time per digest file --------------------------------------
# A run that fails leaves no trace: the state directory it created and its
# lock file go again (an existing directory and a lock file in use stay).
state_dir=$(dirname -- "$DIGEST_FILE")
made_dir=0 locked=0 new='' errs=''
cleanup() {
  [[ -z $new ]] || rm -f -- "$new"
  [[ -z $errs ]] || rm -rf -- "$errs"
  if ((locked)) && [[ ! -e $DIGEST_FILE ]]; then rm -f -- "$DIGEST_FILE.lock"; fi
  if ((made_dir)); then
    local d=$state_dir
    while rmdir -- "$d" 2> /dev/null && [[ $d != "$made_top" ]]; do d=$(dirname -- "$d"); done
  fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
if [[ ! -d $state_dir ]]; then
  made_top=$state_dir
  while [[ ! -d $(dirname -- "$made_top") ]]; do made_top=$(dirname -- "$made_top"); done
  mkdir -p -- "$state_dir" 2> /dev/null || die "cannot create $state_dir, the directory of the digest file (-s)" 2
  made_dir=1
fi
exec 9>> "$DIGEST_FILE.lock" || die "cannot open the lock file $DIGEST_FILE.lock (-s)" 2
flock -n 9 || die "another bsync-backup run holds $DIGEST_FILE.lock" 4
locked=1

first=1
if [[ -s $DIGEST_FILE ]] && ((!full)); then first=0; fi

new=$(mktemp "$DIGEST_FILE.XXXXXX" 2> /dev/null) || die "cannot write next to the digest file $DIGEST_FILE"

img=$(rquote "$REMOTE_IMAGE")
patch=$remote_bpatch
undo=
if [[ $REMOTE_UNDO_DIR != none ]]; then
  # Down to the nanosecond: two runs within a second must not share an undo file.
  undo=$REMOTE_UNDO_DIR/$(basename -- "$REMOTE_IMAGE").$(date -u +%Y%m%dT%H%M%S.%NZ).undo
  patch="mkdir -p -- $(rquote "$REMOTE_UNDO_DIR") && $patch --undo $(rquote "$undo")"
fi
[[ $REMOTE_SPOOL_DIR == none ]] || patch+=" --spool $(rquote "$REMOTE_SPOOL_DIR")"
patch+=" $img"
opts=(--digests-out "$new")
# The messages of each side are kept apart (E/N: side N), so that a failure is
# told in one line: the cause, not the broken pipe or the cut stream it made.
errs=$(mktemp -d "${TMPDIR:-/tmp}/bsync-backup.XXXXXX") || die "cannot make a temporary directory"
bdiff_err=$errs/E1
if ((progress)); then
  opts+=(--progress)
  bdiff_err=/dev/stderr
fi

set +e
if ((first)); then
  sum="$remote_bsum${CHUNK_SIZE:+ -b $(rquote "$CHUNK_SIZE")} $img"
  if ((create)); then
    sum="{ [ -e $img ] || truncate -s $size -- $img; } && $sum"
  else
    sum="if [ -e $img ]; then $sum; else echo $(rquote "$ME: $REMOTE_IMAGE does not exist on $REMOTE") >&2; exit 64; fi"
  fi
  say "$SOURCE: first run: digesting $REMOTE:$REMOTE_IMAGE there, sending the chunks that differ"
  "${ssh[@]}" "$REMOTE" "$sum" 2> "$errs/E0" | "${bdiff[@]}" "${opts[@]}" "$SOURCE" 2> "$bdiff_err" |
    "${ssh[@]}" "$REMOTE" "$patch" 2> "$errs/E2"
  status=("${PIPESTATUS[@]}")
  names=("ssh $REMOTE bsum" bdiff "ssh $REMOTE bpatch")
else
  say "$SOURCE: sending the chunks that changed since the last run to $REMOTE:$REMOTE_IMAGE"
  "${bdiff[@]}" "${opts[@]}" "$SOURCE" < "$DIGEST_FILE" 2> "$bdiff_err" | "${ssh[@]}" "$REMOTE" "$patch" 2> "$errs/E2"
  status=(0 "${PIPESTATUS[@]}")
  names=(- bdiff "ssh $REMOTE bpatch")
fi
set -e

last=2
failed=0 why='' cause=''
# One failure makes the others fail too: the first side that failed with a
# message that is not such a consequence is the cause.
consequence='broken pipe|empty input|no stream at all|unexpected end of data|was cut|standard input'
for i in "${!status[@]}"; do
  [[ ${names[i]} != - ]] || continue
  if ((status[i] != 0)); then failed=1; fi
  why+="${why:+, }${names[i]} exit ${status[i]}"
  if ((status[i] == 255)) && [[ ${names[i]} == ssh* ]]; then why+=" (255: ssh itself failed?)"; fi
  msg=$(grep -v '^[[:space:]]*$' "$errs/E$i" 2> /dev/null | tail -n 1 || true)
  if ((status[i] != 0)) && [[ -n $msg ]] && { [[ -z $cause ]] || [[ $cause =~ $consequence ]]; }; then
    [[ -n $cause && $msg =~ $consequence ]] || cause=$msg
  fi
done
if ((!failed)); then
  cat -- "$errs"/E* >&2 2> /dev/null || true # warnings of a run that succeeded
fi
cause=${cause:+: $cause}
if ((failed)); then
  if ((first && status[0] == 64)); then
    die "$REMOTE:$REMOTE_IMAGE does not exist: give its right path, or -c to create it; nothing was written" 2
  fi
  if ((status[last] == 3)); then
    msg="$REMOTE:$REMOTE_IMAGE is not the image the digests describe ($why$cause): nothing was written;"
    die "$msg the digest file is unchanged; run with -F to digest the copy again" 3
  fi
  die "the sync failed ($why)$cause; the digest file $DIGEST_FILE is unchanged"
fi

# --- the digests of the copy as it is now -----------------------------------
if ! { sync -- "$new" && mv -f -- "$new" "$DIGEST_FILE"; }; then
  rm -f -- "$new"
  die "the copy is done, but the digest file $DIGEST_FILE could not be replaced: run with -F next time"
fi
new='' made_dir=0
sync -- "$state_dir" || true
say "$SOURCE: done ($size bytes in sync${undo:+; undo: $REMOTE:$undo})"
