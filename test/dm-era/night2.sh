# shellcheck shell=sh
# night2.sh - second boot: metadata persisted; first/last block, overlaps.
era_up
era_write 0 8                                    # the very first block
era_write $((SECTORS - 8)) 8                     # the very last block (partial if BLOCK does not divide the size)
era_write $((10 * BLOCK)) "$BLOCK"               # block 10 again (night 1 wrote it)
era_write $((12 * BLOCK + 8)) 8                  # part of block 12 again
era_write $((40 * BLOCK)) $((5 * BLOCK))         # blocks 40-44
era_write $((51 * BLOCK - 4)) 8                  # 4 KiB across blocks 50/51
era_incremental
era_down
