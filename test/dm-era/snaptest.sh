# shellcheck shell=sh
# snaptest.sh - does era_invalidate honour --metadata-snapshot? (run on copies
# of the devices after the last night). Take a metadata snapshot, write block 7
# after it, then compare era_invalidate's answers. If the snapshot were read,
# block 7 could not appear in any answer given with --metadata-snapshot.
era_up
dmsetup message era0 0 drop_metadata_snap 2>/dev/null || true
dmsetup message era0 0 take_metadata_snap
era_status
NEXT=$ERA_CURRENT
era_invalidate --metadata-snapshot --written-since "$NEXT" "$META_DEV" > "$OUT_DIR/snap-before.xml"
cat "$OUT_DIR/snap-before.xml"
era_write $((7 * BLOCK)) "$BLOCK"                # after the snapshot
era_invalidate --metadata-snapshot --written-since "$NEXT" "$META_DEV" > "$OUT_DIR/snap-after-write.xml"
cat "$OUT_DIR/snap-after-write.xml"
dmsetup message era0 0 checkpoint                # archives era NEXT's writeset in the live metadata
era_status
era_invalidate --metadata-snapshot --written-since "$NEXT" "$META_DEV" > "$OUT_DIR/snap-after-checkpoint.xml"
cat "$OUT_DIR/snap-after-checkpoint.xml"
rc=0
era_invalidate --written-since "$NEXT" "$META_DEV" > "$OUT_DIR/live.xml" 2> "$OUT_DIR/live.err" || rc=$?
echo "$rc" > "$OUT_DIR/live.rc"
say "without --metadata-snapshot on the live device: exit $rc: $(cat "$OUT_DIR/live.err")"
dmsetup message era0 0 drop_metadata_snap
era_down
era_invalidate --written-since "$NEXT" "$META_DEV" > "$OUT_DIR/offline.xml"
cat "$OUT_DIR/offline.xml"
echo "$NEXT" > "$OUT_DIR/era"
