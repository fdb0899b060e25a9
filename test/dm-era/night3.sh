# shellcheck shell=sh
# night3.sh - third boot: more writes, one into the zeroed region of origin.img.
era_up
era_write $((3 * BLOCK)) 8                       # block 3 again (night 1)
era_write 40000 16                               # inside the zeroed 16-24 MiB region
era_write $((44 * BLOCK)) $((2 * BLOCK))         # blocks 44-45 (44 was night 2's)
era_write $((100 * BLOCK)) $((4 * BLOCK))        # blocks 100-103
era_write $((SECTORS - 1)) 1                     # the very last sector
era_incremental
era_down
