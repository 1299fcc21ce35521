#!/usr/bin/env bash
# The daemon's instructions per new stream, counted by valgrind's callgrind:
# repeatable on a noisy machine, whatever else runs.
#
#   sudo bash benches/callgrind.sh [--seconds S] [--in-flight N]
#
# The daemon runs under callgrind as the user `nobody` (valgrind cannot follow
# the sandbox's mount and pidfd calls, so the streamlets run unsandboxed and
# natively: only the daemon is counted). Its counters are zeroed, then read
# after S seconds of each of:
#   idle     nothing (its ticks), subtracted from the others;
#   listen   the C load generator (benches/peers/loadgen.c: a new TCP
#            connection per stream, 1 KiB echoed) at the pool's own `listen`;
#   gateway  the same through `streamlet-gateway` (its instructions are not
#            counted: it is another process).
# Prints instructions per stream for each path. Installs valgrind and gcc
# with apt-get when missing; never run in CI.
set -euo pipefail
seconds=10
in_flight=8
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    *) echo "usage: $0 [--seconds S] [--in-flight N]" >&2; exit 64 ;;
  esac
done
for tool in valgrind gcc; do
  command -v "$tool" >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
repo=$(cd "$(dirname "$0")/.." && pwd)
(cd "$repo" && cargo build --quiet --release --bin streamletd --bin streamlet-gateway)
work=$(mktemp -d /tmp/streamlet-callgrind.XXXXXX)
chmod 755 "$work"
daemon_pid=""
cleanup() {
  # (runuser passes no signal on: what runs under it is found by its socket.)
  pkill -TERM -f -- "--socket $work/run/s.sock" 2>/dev/null || true
  sleep 2
  pkill -KILL -f -- "--socket $work/run/s.sock" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -o "$work/loadgen" "$repo/benches/peers/loadgen.c"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$work/run" && chown nobody "$work/run" && chmod 700 "$work/run"
cat > "$work/streamletd.toml" <<EOF
[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 1024
spare = false
limits = { nofile = 4096 }
listen = ["127.0.0.1:$port"]
EOF
chmod 644 "$work/streamletd.toml"
as_nobody() { runuser -u nobody -- env HOME="$work/run" "$@"; }
as_nobody valgrind --tool=callgrind --callgrind-out-file="$work/run/cg.out" \
  "$repo/target/release/streamletd" --config "$work/streamletd.toml" --socket "$work/run/s.sock" \
  >"$work/daemon.log" 2>&1 &
for _ in $(seq 600); do
  daemon_pid=$(pgrep -f "valgrind.bin --tool=callgrind --callgrind-out-file=$work" || true)
  if [ -n "$daemon_pid" ] && as_nobody "$repo/target/release/streamletctl" --socket "$work/run/s.sock" --json status 2>/dev/null \
      | grep -q '"ready":2'; then
    break
  fi
  sleep 0.1
done
[ -n "$daemon_pid" ] || { cat "$work/daemon.log"; exit 1; }
as_nobody "$repo/target/release/streamlet-gateway" --listen 127.0.0.1:0 --pool echo --socket "$work/run/s.sock" \
  >"$work/gateway.log" 2>&1 &
sleep 1
gateway=$(grep -o '127\.0\.0\.1:[0-9]*' "$work/gateway.log" | head -1)
[ -n "$gateway" ] || { cat "$work/gateway.log"; exit 1; }

# Instructions the daemon ran since the counters were zeroed, as dumped under `name`.
measure() {
  local name=$1
  shift
  as_nobody callgrind_control --zero "$daemon_pid" >/dev/null 2>&1
  if [ $# -gt 0 ]; then
    "$@" >"$work/$name.load"
  else
    sleep "$seconds"
  fi
  as_nobody callgrind_control --dump="$name" "$daemon_pid" >/dev/null 2>&1
  sleep 1
  local file
  file=$(ls -t "$work"/run/cg.out.* | head -1)
  grep '^summary:' "$file" | awk '{print $2}'
}
streams_of() { grep -o 'total_streams=[0-9]*' "$work/$1.load" | cut -d= -f2; }

# A short warm-up of each path first.
"$work/loadgen" "127.0.0.1:$port" "$in_flight" 1 1024 >/dev/null
"$work/loadgen" "$gateway" "$in_flight" 1 1024 >/dev/null
idle=$(measure idle)
listen=$(measure listen "$work/loadgen" "127.0.0.1:$port" "$in_flight" "$seconds" 1024 --warmup 0)
gw=$(measure gateway "$work/loadgen" "$gateway" "$in_flight" "$seconds" 1024 --warmup 0)
echo "the daemon's instructions per stream (callgrind; ${seconds} s each, ${in_flight} in flight; idle ${idle} subtracted)"
printf '%-10s %10s %14s\n' path streams instr/stream
for path in listen gateway; do
  if [ "$path" = listen ]; then total=$listen; else total=$gw; fi
  n=$(streams_of "$path")
  printf '%-10s %10s %14s\n' "$path" "$n" "$(( (total - idle) / n ))"
done
