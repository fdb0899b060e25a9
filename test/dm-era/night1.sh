# shellcheck shell=sh
# night1.sh - first night: fresh era device (era 1), a few writes, full list.
era_up
era_write $((3 * BLOCK)) "$BLOCK"                # block 3, whole
era_write $((10 * BLOCK)) $((3 * BLOCK))         # blocks 10-12
era_write $((20 * BLOCK + BLOCK / 2 - BLOCK / 2 % 8)) 8    # 4 KiB inside block 20
era_write $((31 * BLOCK - 4)) 8                  # 4 KiB across blocks 30/31
era_incremental                                  # PREV=0: every block
era_down
