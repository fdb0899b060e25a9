# shellcheck shell=sh
# guest-agent.sh - guest script that keeps the guest up and runs the commands
# the host sends with guest-exec, one at a time (busybox sh, run by /init with
# `sh -e`). Needs DMERA_AGENT_CHANNEL on the host (see guest.sh run).
#
# Protocol on the virtio-serial port named "agent" (no tty: raw bytes):
#   host -> guest  one line per command: "ID SHELL-COMMAND" (ID: [0-9a-z]+);
#                  the line "ID @@@QUIT" ends the agent (the guest powers off).
#   guest -> host  "@@@O ID N\n" N bytes of stdout, "@@@E ID N\n" N bytes of
#                  stderr, "@@@S ID STATUS\n".
# Commands run with sh -c, stdin /dev/null, in the environment /init gives
# (ORIGIN_DEV, META_DEV, OUT_DIR, DM_DISABLE_UDEV=1). A line is logged in
# OUT_DIR/agent.log per command.

port=
i=0
while [ -z "$port" ] && [ $i -lt 100 ]; do
  for f in /sys/class/virtio-ports/*/name; do
    [ -e "$f" ] && [ "$(cat "$f")" = agent ] && { d=${f%/name}; port=/dev/${d##*/}; }
  done
  [ -n "$port" ] || { i=$((i + 1)); sleep 0.1; }
done
[ -n "$port" ] || { echo "guest-agent: no virtio port named 'agent' (is DMERA_AGENT_CHANNEL set?)" >&2; exit 1; }
echo "guest-agent: listening on $port; ORIGIN_DEV=$ORIGIN_DEV META_DEV=$META_DEV"
exec 3<> "$port"
printf '@@@READY\n' >&3
while IFS= read -r line <&3; do
  id=${line%% *}
  cmd=${line#* }
  [ "$cmd" = '@@@QUIT' ] && { echo "guest-agent: quit"; break; }
  rc=0
  sh -c "$cmd" < /dev/null > /tmp/agent.out 2> /tmp/agent.err || rc=$?
  echo "$id rc=$rc: $cmd" >> "$OUT_DIR/agent.log"
  {
    printf '@@@O %s %s\n' "$id" "$(wc -c < /tmp/agent.out)"
    cat /tmp/agent.out
    printf '@@@E %s %s\n' "$id" "$(wc -c < /tmp/agent.err)"
    cat /tmp/agent.err
    printf '@@@S %s %s\n' "$id" "$rc"
  } >&3
done
exec 3>&-
