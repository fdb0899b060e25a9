# shellcheck shell=sh
# dm-snapshot.sh - an old-style (dm-snapshot) snapshot, run in night 1's boot
# after the dm-era steps (scenario.sh appends it; DMERA_DMSNAP=0 leaves it out).
# On two loop devices over tmpfs files: an origin of 4 MiB + 3 KiB (its last
# 4 KiB chunk partial) and a zeroed COW device. Creates a snapshot-origin and a
# persistent snapshot with 4 KiB chunks (256 exceptions per metadata area),
# copies the snapshot out as the backup, writes 303 chunks (more than one
# metadata area holds; the partial last chunk; one chunk written through the
# snapshot itself, as a mounted snapshot's journal replay would), then hands
# the COW device, read while the snapshot is active, and the origin out in
# $OUT_DIR/dm-snapshot/: backup.img, cow.img, origin.img, status.
SNAP_OUT=$OUT_DIR/dm-snapshot
SNAP_SECTORS=$((4 * 2048 + 6))
mkdir -p "$SNAP_OUT"
dd if=/dev/urandom of=/tmp/snap-origin.img bs=64k count=64 2>/dev/null
dd if=/dev/urandom of=/tmp/snap-origin.img bs=512 seek=$((SNAP_SECTORS - 6)) count=6 2>/dev/null
dd if=/dev/zero of=/tmp/snap-cow.img bs=64k count=32 2>/dev/null
losetup /dev/loop0 /tmp/snap-origin.img
losetup /dev/loop1 /tmp/snap-cow.img
dmsetup create snorigin --table "0 $SNAP_SECTORS snapshot-origin /dev/loop0"
dmsetup create snap --table "0 $SNAP_SECTORS snapshot /dev/loop0 /dev/loop1 P 8"
dd if=/dev/mapper/snap of="$SNAP_OUT/backup.img" bs=64k 2>/dev/null
dd if=/dev/urandom of=/dev/mapper/snorigin bs=4096 seek=100 count=300 conv=notrunc,fsync 2>/dev/null
dd if=/dev/urandom of=/dev/mapper/snorigin bs=4096 seek=1000 count=1 conv=notrunc,fsync 2>/dev/null
dd if=/dev/urandom of=/dev/mapper/snorigin bs=512 seek=$((SNAP_SECTORS - 6)) count=6 conv=notrunc,fsync 2>/dev/null
dd if=/dev/urandom of=/dev/mapper/snap bs=4096 seek=750 count=1 conv=notrunc,fsync 2>/dev/null
dmsetup status snap | tee "$SNAP_OUT/status"
# The COW device as a backup script reads VG-SNAP-cow: while the snapshot is active.
dd if=/tmp/snap-cow.img of="$SNAP_OUT/cow.img" bs=64k 2>/dev/null
dd if=/dev/mapper/snorigin of="$SNAP_OUT/origin.img" bs=64k 2>/dev/null
dmsetup remove snap
dmsetup remove snorigin
losetup -d /dev/loop1
losetup -d /dev/loop0
ls -l "$SNAP_OUT"
