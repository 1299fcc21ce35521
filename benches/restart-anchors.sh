#!/usr/bin/env bash
# SIGKILL to replacement under supervisord, s6-supervise and runit: the
# anchors for `cargo bench --bench restart`. Not part of CI.
#
#   sudo bash benches/restart-anchors.sh [KILLS]
#
# Each supervisor keeps one service running (`sleep`, with a marker argument
# to find it by). The loop SIGKILLs the service and times, by polling /proc
# every 0.2 ms, until a new process with the marker exists. Two schedules:
# "fast": the next kill 150 ms after the replacement appeared (as in the
# streamlet bench: each kill is a first crash there); "slow": 1.2 s after, past
# the one-second minimum run that s6 and runit want before an immediate restart.
set -euo pipefail
kills=${1:-50}

if ! command -v supervisord >/dev/null || ! command -v s6-supervise >/dev/null || ! command -v runsv >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq supervisor s6 runit >/dev/null
fi
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5; rm -rf "$work"' EXIT

measure() { # name marker schedule_ms
  python3 - "$1" "$2" "$3" "$kills" <<'PY'
import os, signal, sys, time
name, marker, after_ms, kills = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
def find():
    for pid in os.listdir('/proc'):
        if not pid.isdigit():
            continue
        try:
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                if f.read() == b'/bin/sleep\0' + marker.encode() + b'\0':
                    return int(pid)
        except OSError:
            pass
    return None
deadline = time.monotonic() + 30
while find() is None:
    if time.monotonic() > deadline:
        sys.exit(f'{name}: service never started')
    time.sleep(0.01)
samples = []
for _ in range(kills):
    time.sleep(after_ms / 1000)
    old = find()
    start = time.monotonic()
    os.kill(old, signal.SIGKILL)
    while True:
        pid = find()
        if pid is not None and pid != old:
            break
        if time.monotonic() - start > 10:
            sys.exit(f'{name}: no replacement within 10 s')
        time.sleep(0.0002)
    samples.append((time.monotonic() - start) * 1000)
samples.sort()
q = lambda p: samples[round((len(samples) - 1) * p)]
print(f'{name:<34} {q(0.5):8.2f} {q(0.9):8.2f} {q(0.99):8.2f} {q(1.0):8.2f}')
PY
}

# supervisord: restart at once, no start-up grace, no retry limit.
mkdir -p "$work/supervisord"
cat > "$work/supervisord/supervisord.conf" <<EOF
[supervisord]
nodaemon=true
logfile=$work/supervisord/log
pidfile=$work/supervisord/pid
[program:anchor]
command=/bin/sleep 1000001
autorestart=true
startsecs=0
startretries=100000
EOF
# s6 and runit: a run script each.
for kind in s6 runit; do
  mkdir -p "$work/$kind/anchor"
  marker=$([ "$kind" = s6 ] && echo 1000002 || echo 1000003)
  printf '#!/bin/sh\nexec /bin/sleep %s\n' "$marker" > "$work/$kind/anchor/run"
  chmod +x "$work/$kind/anchor/run"
done

echo "SIGKILL of the supervised service, $kills kills each (milliseconds)"
printf '%-34s %8s %8s %8s %8s\n' "" p50 p90 p99 max
supervisord -c "$work/supervisord/supervisord.conf" >/dev/null 2>&1 &
measure "supervisord, fast" 1000001 150
measure "supervisord, slow" 1000001 1200
kill %1; wait %1 2>/dev/null || true
s6-supervise "$work/s6/anchor" &
measure "s6-supervise, fast" 1000002 150
measure "s6-supervise, slow" 1000002 1200
s6-svc -xd "$work/s6/anchor" 2>/dev/null || kill %2 || true
runsv "$work/runit/anchor" &
measure "runit (runsv), fast" 1000003 150
measure "runit (runsv), slow" 1000003 1200
