#!/usr/bin/env bash
# guest.sh - boot Debian's stock kernel in qemu (TCG) with a busybox initramfs
# that carries dmsetup, pdata_tools (era_*) and the dm-era modules, and run one
# guest script against real dm-era.
#
#   guest.sh prepare CACHE_DIR
#       Idempotent. Installs the host packages it needs (root + apt only),
#       downloads and unpacks the kernel package that linux-image-amd64 depends
#       on, builds CACHE_DIR/initramfs.cpio.gz. Exits non-zero with the reason
#       when something cannot be obtained (so a test can skip).
#
#   guest.sh run CACHE_DIR SCRIPT WORKDIR
#       Boots the guest with virtio drives origin=WORKDIR/origin.img,
#       meta=WORKDIR/meta.img, out=WORKDIR/out.img (created here) and in=(a tar
#       carrying SCRIPT). The guest runs SCRIPT with `sh -e`, its output and
#       status land in WORKDIR/out/{log,status} (plus whatever SCRIPT put in
#       $OUT_DIR). Prints the guest log and exits with SCRIPT's status.
#       While qemu runs, WORKDIR/qemu.pid holds its pid (qemu runs under
#       timeout(1), which leaves the caller's process group: kill it by pid).
#       With DMERA_AGENT_CHANNEL=PATH (FIFOs PATH.in and PATH.out, made by the
#       caller) the guest also gets a virtio-serial port named "agent" wired to
#       them: guest-agent.sh as SCRIPT then runs the commands guest-exec sends
#       (a guest that stays up while the host drives it).
#
# Environment:
#   DMERA_VERBOSE=1     show the guest console (kernel messages included)
#   DMERA_TIMEOUT=120   seconds before qemu is killed
#   DMERA_MEM=512M      guest memory
#   DMERA_AGENT_CHANNEL see run above
#   DMERA_BOOT_TIMEOUT=90 seconds for the guest to start the script; then
#   DMERA_BOOT_RETRIES=1  it is killed and booted again (that many times)
set -euo pipefail

ME=guest.sh
SELF="$(readlink -f "${BASH_SOURCE[0]}")"

die() { echo "$ME: error: $*" >&2; exit 1; }
say() { echo "$ME: $*" >&2; }

usage() {
  cat >&2 <<EOF
usage: $ME prepare CACHE_DIR
       $ME run CACHE_DIR SCRIPT WORKDIR
EOF
  exit 2
}

# Modules wanted in the guest, in the order given by the brief. Their
# dependencies are resolved with modprobe --show-depends on the unpacked tree.
WANTED_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev
  virtio_pci virtio_mmio virtio_blk crc32c_generic libcrc32c dm-mod dm-bufio
  dm-persistent-data dm-era virtio_console loop dm-snapshot)

# ---------------------------------------------------------------- prepare ---

# command -> Debian package providing it
declare -A HOST_TOOLS=(
  [qemu-system-x86_64]=qemu-system-x86
  [cpio]=cpio
  [depmod]=kmod
  [modprobe]=kmod
  [pdata_tools]=thin-provisioning-tools
  [dmsetup]=dmsetup
  [timeout]=coreutils
  [tar]=tar
  [gzip]=gzip
)
BUSYBOX_STATIC=/bin/busybox

can_apt() { [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; }

busybox_is_static() {
  [[ -x $BUSYBOX_STATIC ]] || return 1
  # ldd prints "not a dynamic executable" (exit 1) for a static binary.
  ! ldd "$BUSYBOX_STATIC" >/dev/null 2>&1
}

ensure_host_tools() {
  local missing=() cmd pkg
  for cmd in "${!HOST_TOOLS[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${HOST_TOOLS[$cmd]}")
  done
  busybox_is_static || missing+=(busybox-static)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if ! can_apt; then
    die "missing host packages: ${missing[*]} (not root or no apt-get: install them by hand)"
  fi
  say "installing host packages: ${missing[*]}"
  if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    say "apt-get install failed; trying apt-get update first"
    apt-get update >&2 || die "apt-get update failed (no network to the Debian mirror?)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
      || die "apt-get install ${missing[*]} failed"
  fi
  for cmd in "${!HOST_TOOLS[@]}"; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || die "$cmd still missing after install"
  done
  busybox_is_static || die "$BUSYBOX_STATIC is not a static busybox after installing busybox-static"
}

# Name of the kernel image package linux-image-amd64 depends on.
kernel_package_name() {
  apt-cache depends linux-image-amd64 2>/dev/null \
    | awk '$1 == "Depends:" && $2 ~ /^linux-image-[0-9]/ { print $2; exit }'
}

# Make sure CACHE_DIR/debs holds the kernel package's .deb; print its path.
ensure_kernel_deb() {
  local cache=$1 pkg='' debdir=$1/debs deb dl
  mkdir -p "$debdir"
  # A kernel downloaded earlier is kept (reproducible, works offline) unless
  # DMERA_REFRESH=1 asks to follow linux-image-amd64 again.
  if [[ ${DMERA_REFRESH:-0} != 1 && -f $cache/kernel.deb ]]; then
    deb=$(cat "$cache/kernel.deb")
    if [[ -f $deb ]]; then echo "$deb"; return 0; fi
  fi
  pkg=$(kernel_package_name || true)
  if [[ -z $pkg ]] && can_apt; then
    say "apt-cache knows no linux-image-amd64; running apt-get update"
    apt-get update >&2 || true
    pkg=$(kernel_package_name || true)
  fi
  if [[ -z $pkg ]]; then
    if [[ -f $cache/kernel.deb && -f $(cat "$cache/kernel.deb") ]]; then
      say "warning: cannot resolve linux-image-amd64; using the cached $(basename "$(cat "$cache/kernel.deb")")"
      cat "$cache/kernel.deb"
      return 0
    fi
    die "cannot find which kernel package linux-image-amd64 depends on (apt lists missing? no network?)"
  fi
  deb=$(find "$debdir" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
  if [[ -z $deb ]]; then
    say "downloading $pkg with apt-get download"
    # apt drops privileges to _apt for downloads: give it a directory it
    # can reach (CACHE_DIR may be under a private home).
    dl=$(mktemp -d "${TMPDIR:-/tmp}/dmera-dl.XXXXXX")
    if [[ $(id -u) -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$dl" || true; fi
    if ! (cd "$dl" && apt-get download "$pkg" >&2); then
      rm -rf "$dl"
      die "apt-get download $pkg failed (no network to the Debian mirror?)"
    fi
    find "$dl" -maxdepth 1 -name "${pkg}_*.deb" -exec mv {} "$debdir/" \;
    rm -rf "$dl"
    deb=$(find "$debdir" -maxdepth 1 -name "${pkg}_*.deb" | head -n1)
    [[ -n $deb ]] || die "apt-get download $pkg left no .deb in $debdir"
    # drop older kernels' packages
    find "$debdir" -maxdepth 1 -name '*.deb' ! -name "$(basename "$deb")" -delete
  fi
  echo "$deb" > "$cache/kernel.deb"
  echo "$deb"
}

# Copy a dynamically linked binary and every library ldd lists (plus the
# loader) into the initramfs tree, at the same absolute paths.
copy_with_libs() {
  local tree=$1 bin=$2 dest=$3 lib
  install -D -m 0755 "$bin" "$tree$dest"
  while read -r lib; do
    [[ -n $lib ]] || continue
    [[ -e $tree$lib ]] && continue
    install -D -m 0755 "$(readlink -f "$lib")" "$tree$lib"
  done < <(ldd "$bin" | awk '
      $2 == "=>" && $3 ~ /^\// { print $3; next }
      $1 ~ /^\// { print $1 }')
}

# Unpack the ELF vmlinux out of the bzImage so qemu boots it through its PVH
# entry point: this skips the xz decompression, which takes about 5 s under
# TCG (a boot goes from ~10 s to ~5 s). Falls back to the bzImage silently.
extract_vmlinux() {
  local bz=$1 out=$2 off
  rm -f "$out"
  command -v xz >/dev/null 2>&1 || { say "note: no xz; booting the compressed bzImage (slower)"; return 0; }
  off=$(LC_ALL=C grep -abo $'\xfd7zXZ' "$bz" | head -n1 | cut -d: -f1 || true)
  [[ -n $off ]] || { say "note: bzImage is not xz-compressed; booting it as is (slower)"; return 0; }
  # (xz stops after the first stream: no pipe, or tail's SIGPIPE fails it)
  if xz -dc --single-stream < <(tail -c +"$((off + 1))" "$bz") > "$out.tmp" 2>/dev/null \
      && [[ "$(head -c 4 "$out.tmp" | od -An -c | tr -d ' ')" == '177ELF' ]]; then
    mv "$out.tmp" "$out"
  else
    rm -f "$out.tmp"
    say "note: could not unpack vmlinux from the bzImage; booting it as is (slower)"
  fi
}

# The guest's /init (busybox ash). Kept here so the initramfs is one build.
write_init() {
  cat > "$1" <<'INIT'
#!/bin/sh
# /init of the blockpipe dm-era test guest (generated by test/dm-era/guest.sh)
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
fail() { echo "guest-init: $*" >&2; echo "guest-init: powering off" >&2; sync; poweroff -f; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /tmp /run
verbose=0
grep -q 'dmera.verbose=1' /proc/cmdline && verbose=1
[ "$verbose" = 1 ] || echo 1 > /proc/sys/kernel/printk
while read -r mod; do
  case "$mod" in
    '#'*|'') ;;
    *) insmod "$mod" || echo "guest-init: insmod $mod failed" >&2 ;;
  esac
done < /etc/modules.order

# Find the disks by virtio serial.
ORIGIN_DEV= META_DEV= OUT_DEV= IN_DEV=
i=0
while [ $i -lt 100 ]; do
  for s in /sys/block/vd*/serial; do
    [ -e "$s" ] || continue
    d=${s%/serial}; d=/dev/${d##*/}
    case "$(cat "$s")" in
      origin) ORIGIN_DEV=$d ;;
      meta) META_DEV=$d ;;
      out) OUT_DEV=$d ;;
      in) IN_DEV=$d ;;
    esac
  done
  [ -n "$ORIGIN_DEV" ] && [ -n "$META_DEV" ] && [ -n "$OUT_DEV" ] && [ -n "$IN_DEV" ] && break
  i=$((i + 1)); sleep 0.1
done
[ -n "$OUT_DEV" ] || fail "no disk with serial 'out' (found: $(cat /sys/block/*/serial 2>/dev/null | tr '\n' ' '))"
OUT_DIR=/out
mkdir -p "$OUT_DIR" /in
finish() {
  # $1 = status
  echo "$1" > "$OUT_DIR/status"
  tar -cf /tmp/out.tar -C "$OUT_DIR" . && dd if=/tmp/out.tar of="$OUT_DEV" bs=64k conv=fsync 2>/dev/null \
    || echo "guest-init: writing results to $OUT_DEV failed" >&2
  sync
  poweroff -f
}
if [ -z "$ORIGIN_DEV" ] || [ -z "$META_DEV" ] || [ -z "$IN_DEV" ]; then
  echo "guest-init: missing disks origin='$ORIGIN_DEV' meta='$META_DEV' in='$IN_DEV'" > "$OUT_DIR/log"
  finish 125
fi
if ! tar -xf "$IN_DEV" -C /in || [ ! -f /in/script.sh ]; then
  echo "guest-init: cannot unpack the guest script from $IN_DEV" > "$OUT_DIR/log"
  finish 125
fi
export ORIGIN_DEV META_DEV OUT_DIR DM_DISABLE_UDEV=1 HOME=/tmp
cd /tmp
echo "guest-init: kernel $(uname -r); ORIGIN_DEV=$ORIGIN_DEV META_DEV=$META_DEV OUT_DIR=$OUT_DIR" > /tmp/log.head
# On the console: the host retries a boot that timed out before this line.
echo "guest-init: running the script"
if [ "$verbose" = 1 ]; then
  ( sh -e /in/script.sh; echo $? > /tmp/rc ) 2>&1 | tee /tmp/log.body
else
  ( sh -e /in/script.sh; echo $? > /tmp/rc ) > /tmp/log.body 2>&1
fi
cat /tmp/log.head /tmp/log.body > "$OUT_DIR/log"
finish "$(cat /tmp/rc 2>/dev/null || echo 126)"
INIT
  chmod 0755 "$1"
}

build_initramfs() {
  local cache=$1 deb=$2 pkg root kver tree out line m ko
  pkg=$(basename "$deb" .deb)
  root=$(mktemp -d "$cache/kernel.XXXXXX")
  tree=$(mktemp -d "$cache/initramfs.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tree' '$root'; trap - RETURN" RETURN
  say "unpacking $pkg"
  dpkg -x "$deb" "$root" || die "dpkg -x $deb failed"
  kver=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1)
  [[ -n $kver && -f $root/boot/vmlinuz-$kver ]] || die "no boot/vmlinuz-<version> and lib/modules/<version> in $deb"
  depmod -b "$root" "$kver" || die "depmod -b $root $kver failed"

  mkdir -p "$tree"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,etc,lib,lib64}
  install -m 0755 "$BUSYBOX_STATIC" "$tree/bin/busybox"
  # Applet links built here from the host busybox's applet list.
  while read -r line; do
    [[ $line == busybox ]] && continue
    ln -sf busybox "$tree/bin/$line"
  done < <("$BUSYBOX_STATIC" --list)

  copy_with_libs "$tree" "$(command -v dmsetup || echo /usr/sbin/dmsetup)" /usr/sbin/dmsetup
  copy_with_libs "$tree" "$(PATH="$PATH:/usr/sbin" command -v pdata_tools)" /usr/sbin/pdata_tools
  for line in era_check era_dump era_invalidate era_restore; do
    ln -sf pdata_tools "$tree/usr/sbin/$line"
  done

  # Modules: resolve dependencies on the unpacked tree, keep the order,
  # skip built-ins. crc32c_generic must precede libcrc32c (a softdep).
  out=$tree/etc/modules.order
  : > "$out"
  declare -A seen=()
  for m in "${WANTED_MODULES[@]}"; do
    local deps
    if ! deps=$(modprobe -d "$root" -S "$kver" --show-depends "$m" 2>&1); then
      say "module $m: not found in $pkg (built in or absent): $deps"
      echo "# $m: not found" >> "$out"
      continue
    fi
    while read -r line; do
      case $line in
        builtin\ *) echo "# ${line}" >> "$out" ;;
        insmod\ *)
          ko=${line#insmod }
          ko=${ko%% *}
          [[ -n ${seen[$ko]:-} ]] && continue
          seen[$ko]=1
          local rel=${ko#"$root"}
          install -D -m 0644 "$ko" "$tree$rel"
          case $rel in
            *.ko.xz) xz -d "$tree$rel"; rel=${rel%.xz} ;;
            *.ko.zst) zstd -q -d --rm "$tree$rel"; rel=${rel%.zst} ;;
            *.ko.gz) gzip -d "$tree$rel"; rel=${rel%.gz} ;;
          esac
          echo "$rel" >> "$out"
          ;;
      esac
    done <<< "$deps"
  done
  write_init "$tree/init"
  (cd "$tree" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 > "$cache/initramfs.cpio.gz.tmp"
  mv "$cache/initramfs.cpio.gz.tmp" "$cache/initramfs.cpio.gz"
  install -m 0644 "$root/boot/vmlinuz-$kver" "$cache/vmlinuz"
  extract_vmlinux "$cache/vmlinuz" "$cache/vmlinux"
  say "initramfs: $(du -h "$cache/initramfs.cpio.gz" | cut -f1), modules: $(grep -vc '^#' "$out")"
  grep '^#' "$out" | sed "s/^# /$ME: note: /" >&2 || true
}

cmd_prepare() {
  [[ $# -eq 1 ]] || usage
  local cache=$1 deb stamp want
  mkdir -p "$cache" || die "cannot create cache dir $cache"
  cache=$(readlink -f "$cache")
  # Tests run in parallel: one prepare at a time per cache (the others wait,
  # then find it built).
  exec 9> "$cache/.lock"
  flock 9 || die "cannot lock $cache/.lock"
  ensure_host_tools
  deb=$(ensure_kernel_deb "$cache")
  # The initramfs depends on the kernel, this script and the host binaries.
  want="$(basename "$deb") $(sha256sum "$SELF" | cut -c1-16) $(stat -c %Y /bin/busybox /usr/sbin/dmsetup /usr/sbin/pdata_tools | tr '\n' ' ')"
  stamp=$cache/initramfs.stamp
  if [[ -f $cache/initramfs.cpio.gz && -f $cache/vmlinuz && -f $stamp && "$(cat "$stamp")" == "$want" ]]; then
    say "cached: $cache ($(basename "$deb"))"
    return 0
  fi
  rm -f "$stamp"
  build_initramfs "$cache" "$deb"
  echo "$want" > "$stamp"
  # leftovers of the layout before the kernel tree became temporary
  rm -rf "$cache"/kernel-linux-image-* "$cache/kernel.pkg"
  say "prepared: $cache ($(basename "$deb"))"
}

# -------------------------------------------------------------------- run ---

cmd_run() {
  [[ $# -eq 3 ]] || usage
  local cache=$1 script=$2 work=$3 tmp rc status verbose append console kernel tsc_khz
  cache=$(readlink -f "$cache")
  [[ -f $cache/vmlinuz && -f $cache/initramfs.cpio.gz ]] || die "$cache is not prepared (run: $ME prepare $cache)"
  [[ -f $script ]] || die "guest script $script not found"
  [[ -f $work/origin.img ]] || die "$work/origin.img not found (the caller creates it)"
  [[ -f $work/meta.img ]] || die "$work/meta.img not found (the caller creates it)"
  command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 not found (run $ME prepare)"
  verbose=${DMERA_VERBOSE:-0}

  tmp=$(mktemp -d "${TMPDIR:-/tmp}/dmera-run.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$tmp'" EXIT
  mkdir "$tmp/in"
  cp "$script" "$tmp/in/script.sh"
  tar -cf "$tmp/in.img" -C "$tmp/in" script.sh
  truncate -s 1M "$tmp/in.img"
  rm -f "$work/out.img"
  truncate -s 64M "$work/out.img"
  rm -rf "$work/out"
  mkdir -p "$work/out"

  kernel=$cache/vmlinuz
  [[ -f $cache/vmlinux ]] && kernel=$cache/vmlinux
  # Under TCG the PIT calibration of the TSC sometimes fails ("Unable to
  # calibrate against PIT ... Marking TSC unstable") and the boot then hangs
  # for good: give the TSC rate (under TCG the guest TSC is the host's).
  tsc_khz=$(awk -F: '/^cpu MHz/ { printf "%d", $2 * 1000; exit }' /proc/cpuinfo 2>/dev/null || true)
  [[ $tsc_khz =~ ^[0-9]+$ ]] && ((tsc_khz >= 500000 && tsc_khz <= 10000000)) || tsc_khz=2000000
  append="console=ttyS0 panic=-1 no_timer_check tsc_early_khz=$tsc_khz tsc=reliable reboot=t rdinit=/init"
  if [[ $verbose == 1 ]]; then append+=" dmera.verbose=1"; else append+=" quiet loglevel=3"; fi
  append+=" ${DMERA_APPEND:-}"
  console=$work/console.log
  # shellcheck disable=SC2054 # commas belong to qemu options
  local qemu=(timeout --kill-after=5 "${DMERA_TIMEOUT:-120}" qemu-system-x86_64
    -machine microvm,pit=on,pic=on,rtc=on -accel tcg -cpu max -m "${DMERA_MEM:-512M}" -smp 1
    -nodefaults -no-user-config -nographic -no-reboot -serial stdio -monitor none
    -pidfile "$work/qemu.pid"
    -kernel "$kernel" -initrd "$cache/initramfs.cpio.gz" -append "$append"
    -drive "file=$work/origin.img,format=raw,if=none,id=origin,cache=writeback"
    -device virtio-blk-device,drive=origin,serial=origin
    -drive "file=$work/meta.img,format=raw,if=none,id=meta,cache=writeback"
    -device virtio-blk-device,drive=meta,serial=meta
    -drive "file=$work/out.img,format=raw,if=none,id=out,cache=writeback"
    -device virtio-blk-device,drive=out,serial=out
    -drive "file=$tmp/in.img,format=raw,if=none,id=in,readonly=on"
    -device virtio-blk-device,drive=in,serial=in)
  if [[ -n ${DMERA_AGENT_CHANNEL:-} ]]; then
    [[ -p $DMERA_AGENT_CHANNEL.in && -p $DMERA_AGENT_CHANNEL.out ]] \
      || die "DMERA_AGENT_CHANNEL: $DMERA_AGENT_CHANNEL.in and .out must be FIFOs (mkfifo)"
    # shellcheck disable=SC2054 # commas belong to qemu options
    qemu+=(-device virtio-serial-device -chardev "pipe,id=agent,path=$DMERA_AGENT_CHANNEL"
      -device virtserialport,chardev=agent,name=agent)
  fi
  local t0 attempt=0 qpid tpid booted boot_timeout=${DMERA_BOOT_TIMEOUT:-90} i
  while :; do
    t0=$SECONDS
    rc=0 booted=0 tpid=
    : > "$console"
    "${qemu[@]}" < /dev/null > "$console" 2>&1 &
    qpid=$!
    if [[ $verbose == 1 ]]; then
      tail -n +1 -f --pid="$qpid" "$console" &
      tpid=$!
    fi
    # Boot watchdog: a boot that hangs under TCG (seen on a loaded host)
    # shows no "running the script" on the console; it has touched no disk,
    # so it is killed and booted again, DMERA_BOOT_RETRIES times.
    for ((i = 0; i < boot_timeout * 5; i++)); do
      if grep -q 'guest-init: running the script' "$console"; then booted=1; break; fi
      kill -0 "$qpid" 2> /dev/null || break
      sleep 0.2
    done
    if ((!booted)) && kill -0 "$qpid" 2> /dev/null && ((attempt < ${DMERA_BOOT_RETRIES:-1})); then
      kill "$qpid" 2> /dev/null || true # timeout passes the signal on to qemu
      wait "$qpid" || true
      [[ -z $tpid ]] || wait "$tpid" || true
      attempt=$((attempt + 1))
      say "the guest did not start the script within $boot_timeout s (a boot hang?); booting again ($attempt)"
      say "console (last 10 lines):"; tail -n 10 "$console" >&2
      rm -f "$work/out.img" "$work/qemu.pid"
      truncate -s 64M "$work/out.img"
      continue
    fi
    wait "$qpid" || rc=$?
    [[ -z $tpid ]] || wait "$tpid" || true
    rm -f "$work/qemu.pid"
    say "guest ran $((SECONDS - t0)) s (qemu exit $rc)"
    break
  done
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    say "console (last 40 lines of $console):"; tail -n 40 "$console" >&2
    die "guest timed out after ${DMERA_TIMEOUT:-120} s (DMERA_VERBOSE=1 shows the console)"
  fi
  [[ $rc -eq 0 ]] || { tail -n 40 "$console" >&2; die "qemu failed (exit $rc)"; }
  if ! tar -xf "$work/out.img" -C "$work/out" 2>"$tmp/tar.err" || [[ ! -f $work/out/status ]]; then
    say "console (last 40 lines of $console):"; tail -n 40 "$console" >&2
    cat "$tmp/tar.err" >&2
    die "the guest wrote no results (boot failure?)"
  fi
  rm -f "$work/out.img"
  [[ $verbose == 1 ]] || rm -f "$console"
  echo "----- guest log ($work/out/log) -----"
  cat "$work/out/log"
  status=$(cat "$work/out/status")
  echo "----- guest script exit status: $status -----"
  [[ $status =~ ^[0-9]+$ ]] || die "bad status '$status' from the guest"
  return "$status"
}

[[ $# -ge 1 ]] || usage
sub=$1; shift
case $sub in
  prepare) cmd_prepare "$@" ;;
  run) cmd_run "$@" ;;
  -h|--help|help) usage ;;
  *) die "unknown subcommand '$sub'" ;;
esac
