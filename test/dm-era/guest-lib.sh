# shellcheck shell=sh
# guest-lib.sh - functions for the dm-era guest scripts (busybox sh, run with
# `sh -e` by the guest's /init). scenario.sh prepends BLOCK (era block size in
# sectors), PREV (era saved by the previous night, 0 for the first) and NIGHT,
# then this file, then one nightN.sh. Everything below is traced (set -x) so
# the guest log shows the exact commands and the era values.
#
# Provided by /init: ORIGIN_DEV, META_DEV, OUT_DIR, DM_DISABLE_UDEV=1.

ERA_DEV=/dev/mapper/era0

say() { echo "night$NIGHT: $*"; }

# era_status: print the status line and set ERA_CURRENT / ERA_HELD.
# Line: <start> <len> era <md block size> <used>/<total> <current era> <held root|->
era_status() {
  ERA_STATUS=$(dmsetup status era0)
  # shellcheck disable=SC2086
  set -- $ERA_STATUS
  [ "$3" = era ] || { echo "unexpected status: $ERA_STATUS" >&2; return 1; }
  ERA_CURRENT=$6
  ERA_HELD=$7
  say "status: '$ERA_STATUS' (era $ERA_CURRENT, held metadata root $ERA_HELD)"
}

# era_up: create era0 over ORIGIN_DEV with metadata on META_DEV.
era_up() {
  SECTORS=$(blockdev --getsz "$ORIGIN_DEV")
  NBLOCKS=$(( (SECTORS + BLOCK - 1) / BLOCK ))
  say "origin $ORIGIN_DEV: $SECTORS sectors = $NBLOCKS era blocks of $BLOCK sectors"
  dmsetup create era0 --table "0 $SECTORS era $META_DEV $ORIGIN_DEV $BLOCK"
  dmsetup table era0
  era_status
  echo "$ERA_CURRENT" > "$OUT_DIR/era-at-start"
}

# era_write SECTOR COUNT: write COUNT random sectors at SECTOR through era0,
# and record the write in $OUT_DIR/writes ("sector count" per line).
era_write() {
  dd if=/dev/urandom of="$ERA_DEV" bs=512 seek="$1" count="$2" conv=notrunc,fsync 2>/dev/null
  echo "$1 $2" >> "$OUT_DIR/writes"
}

# era_incremental: the safe incremental procedure for night NIGHT.
# Writes $OUT_DIR/since.xml (blocks written since era PREV), $OUT_DIR/era
# (NEXT, the PREV of the next night) and $OUT_DIR/prev.
era_incremental() {
  say "incremental since era PREV=$PREV"
  dmsetup message era0 0 drop_metadata_snap 2>/dev/null || say "no stale metadata snapshot to drop (EINVAL is expected)"
  dmsetup message era0 0 take_metadata_snap
  era_status
  NEXT=$ERA_CURRENT
  say "ERA NEXT=$NEXT (read right after take_metadata_snap)"
  era_invalidate --metadata-snapshot --written-since "$PREV" "$META_DEV" > "$OUT_DIR/since.xml"
  cat "$OUT_DIR/since.xml"
  dmsetup message era0 0 drop_metadata_snap
  era_status
  echo "$NEXT" > "$OUT_DIR/era"
  echo "$PREV" > "$OUT_DIR/prev"
  say "ERA PREV=$PREV NEXT=$NEXT saved"
}

# era_down: remove era0 (its postsuspend archives the writeset) and sync.
era_down() {
  dmsetup remove era0
  sync
}

set -x
