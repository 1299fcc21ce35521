#!/usr/bin/env bash
# New streams per second through the front door, side by side with its peers.
#
#   sudo bash benches/peers/run.sh [--rounds N] [--seconds S]
#
# Each stream is a new TCP connection: connect, write 1 KiB, read the echo,
# close (loadgen.c, 64 in flight, one thread). Paths, each with servers of
# its own, started once and left running:
#   direct    client -> one echo process (echo.c): the limit
#   haproxy   client -> HAProxy (haproxy.cfg: mode tcp, leastconn) -> 2 echo processes
#   gateway   client -> streamlet-gateway -> streamletd -> 2 streamlets (built-in echo)
#   listen    client -> streamletd accepting TCP itself -> 2 streamlets; run only
#             when `streamletd check-config` accepts `listen` in a pool
# Each round runs every path once, the order rotated each round. CPU per
# process group is read from /proc/PID/stat around each run.
#
# Root (the daemon sandboxes its streamlets; a sysctl is set and restored).
# Installs haproxy, gcc and python3 with apt-get when missing. Not for CI.
#
# Options: --rounds N (3), --seconds S (5), --in-flight N (64), --payload B
# (1024), --warmup S (0.5), --sources N (8: client source addresses
# 127.0.0.1..N, see below), --settle S (20: before each run, wait up to S
# seconds for the machine to be idle, below 25% busy over half a second; the
# run goes ahead anyway after that, and the report shows the other load),
# --port-base P (27400: P..P+5 on 127.0.0.1), --no-build (use the release
# binaries already built).
#
# TIME_WAIT: the client closes first, so every stream leaves a client socket
# in TIME_WAIT for 60 s. From one source address there are 28k local ports
# per target, which at 10k+ streams/s run out within seconds; connect() then
# searches ever longer for a port (loadgen CPU up, p99 up) or fails. So the
# loadgen spreads its connections over --sources addresses, and
# net.ipv4.tcp_tw_reuse=1 lets a port in TIME_WAIT be taken again after 1 s.
# HAProxy closes its backend connections first, so they wait too (from 28k
# ports per backend: enough). At these rates the kernel's table of TIME_WAIT
# sockets (net.ipv4.tcp_max_tw_buckets) fills within a run or two, and from
# then on it closes such sockets at once; each run prints the count (tw=).
set -euo pipefail

ROUNDS=3
SECS=5
INFLIGHT=64
PAYLOAD=1024
WARMUP=0.5
SOURCES=8
SETTLE=20
PORT_BASE=27400
BUILD=1

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
  exit "${1:-2}"
}
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) SECS=$2; shift 2 ;;
    --in-flight) INFLIGHT=$2; shift 2 ;;
    --payload) PAYLOAD=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --sources) SOURCES=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    --port-base) PORT_BASE=$2; shift 2 ;;
    --no-build) BUILD=0; shift ;;
    -h | --help) usage 0 ;;
    *) echo "run.sh: unknown option $1" >&2; usage ;;
  esac
done

say() { printf '%s\n' "$*" >&2; }
die() { say "run.sh: $*"; exit 1; }

[[ $(id -u) == 0 ]] || die "run as root: sudo bash $0"

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

# --- what it needs -----------------------------------------------------------
missing=()
command -v haproxy >/dev/null || missing+=(haproxy)
command -v gcc >/dev/null || missing+=(gcc)
command -v python3 >/dev/null || missing+=(python3)
if ((${#missing[@]})); then
  say "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# --- cleanup -----------------------------------------------------------------
TMP=$(mktemp -d /tmp/streamlet-peers.XXXXXX)
PIDS=()    # started here, stopped with SIGTERM at exit
DAEMONS=() # streamletd: SIGTERM, then wait for it to stop its streamlets
TW_REUSE_WAS=$(sysctl -n net.ipv4.tcp_tw_reuse)
cleanup() {
  local p i
  set +e
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${DAEMONS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}" "${DAEMONS[@]}"; do
    for ((i = 0; i < 150; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$p" 2>/dev/null; then
      say "run.sh: pid $p did not stop in 15 s: SIGKILL"
      kill -KILL "$p" 2>/dev/null
    fi
    wait "$p" 2>/dev/null
  done
  sysctl -qw net.ipv4.tcp_tw_reuse="$TW_REUSE_WAS"
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sysctl -qw net.ipv4.tcp_tw_reuse=1
ulimit -n "$(ulimit -Hn)"

# --- build -------------------------------------------------------------------
say "building loadgen and echo (gcc -O2) in $TMP"
gcc -O2 -o "$TMP/loadgen" "$HERE/loadgen.c"
gcc -O2 -o "$TMP/echo" "$HERE/echo.c"
if ((BUILD)); then
  say "building streamletd, streamlet-gateway and streamletctl (release)"
  cargo_build=(cargo build --release --bin streamletd --bin streamlet-gateway --bin streamletctl)
  if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]]; then
    # As the user who asked, so that target/ stays theirs (and their cargo is on PATH).
    sudo -u "$SUDO_USER" -H bash -lc "cd '$ROOT' && ${cargo_build[*]}"
  else
    PATH=$PATH:$HOME/.cargo/bin
    (cd "$ROOT" && "${cargo_build[@]}")
  fi
fi
for b in streamletd streamlet-gateway streamletctl; do
  [[ -x $BIN/$b ]] || die "no $BIN/$b: build it (cargo build --release) or drop --no-build"
done

# --- helpers -----------------------------------------------------------------
P_DIRECT=$PORT_BASE
P_ECHO1=$((PORT_BASE + 1))
P_ECHO2=$((PORT_BASE + 2))
P_HAPROXY=$((PORT_BASE + 3))
P_GATEWAY=$((PORT_BASE + 4))
P_LISTEN=$((PORT_BASE + 5))
for p in $(seq "$PORT_BASE" "$P_LISTEN"); do
  [[ -z $(ss -Hltn "sport = :$p") ]] || die "port $p is taken: choose others with --port-base"
done

# Waits until FILE has a line matching PATTERN (the process PID still alive).
wait_line() {
  local file=$1 pattern=$2 pid=$3 i
  for ((i = 0; i < 200; i++)); do
    grep -q "$pattern" "$file" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { cat "$file" >&2; die "pid $pid exited before: $pattern"; }
    sleep 0.05
  done
  cat "$file" >&2
  die "no '$pattern' in $file after 10 s"
}

# Waits until 127.0.0.1:PORT accepts a connection.
wait_port() {
  local port=$1 pid=$2 i
  for ((i = 0; i < 200; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || die "pid $pid exited before listening on $port"
    sleep 0.05
  done
  die "nothing accepts on port $port after 10 s"
}

# Waits until the daemon on SOCKET has 2 ready streamlets in pool echo.
wait_ready() {
  local socket=$1 pid=$2 i
  for ((i = 0; i < 200; i++)); do
    if "$BIN/streamletctl" --socket "$socket" --json status 2>/dev/null | python3 -c '
import json, sys
pools = {p["pool"]: p for p in json.load(sys.stdin)["pools"]}
sys.exit(0 if pools.get("echo", {}).get("ready", 0) >= 2 else 1)' 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || die "streamletd (pid $pid) exited; its log: $(tail -5 "$socket.log")"
    sleep 0.05
  done
  die "streamletd on $socket has no 2 ready streamlets after 10 s"
}

# utime+stime (with CHILDREN=1 also cutime+cstime: reaped children) of PIDS, in ticks.
ticks() {
  local children=$1 total=0 p s
  shift
  for p in "$@"; do
    read -r s 2>/dev/null <"/proc/$p/stat" || continue
    s=${s##*) }
    read -r -a f <<<"$s"
    total=$((total + f[11] + f[12]))
    ((children)) && total=$((total + f[13] + f[14]))
  done
  echo "$total"
}

# The PIDs whose parent is PID.
children_of() {
  local parent=$1 f s
  for f in /proc/[0-9]*/stat; do
    read -r s 2>/dev/null <"$f" || continue
    s=${s##*) }
    read -r -a fields <<<"$s"
    [[ ${fields[1]} == "$parent" ]] && { f=${f#/proc/}; echo "${f%/stat}"; }
  done
  return 0
}

# Busy and total ticks of the whole machine.
machine_ticks() {
  local cpu user nice system idle iowait irq softirq steal rest
  read -r cpu user nice system idle iowait irq softirq steal rest </proc/stat
  echo "$((user + nice + system + irq + softirq + steal)) $((user + nice + system + idle + iowait + irq + softirq + steal))"
}

tw_count() { awk '/^TCP:/ { for (i = 1; i < NF; i++) if ($i == "tw") print $(i + 1) }' /proc/net/sockstat; }

# HAProxy's counters: ereq econ eresp wretr wredis srv_abrt of the backend.
haproxy_counters() {
  python3 - "$TMP/haproxy.stats" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"show stat\n")
data = b""
while chunk := s.recv(65536):
    data += chunk
lines = data.decode().splitlines()
head = lines[0].lstrip("# ").split(",")
rows = [dict(zip(head, l.split(","))) for l in lines[1:] if l]
n = lambda r, k: int(r.get(k) or 0)
front = next(r for r in rows if r["svname"] == "FRONTEND")
back = next(r for r in rows if r["svname"] == "BACKEND" and r["pxname"] == "echo")
print(" ".join(f"{k}={n(r, k)}" for r, k in [(front, "ereq"), (back, "econ"), (back, "eresp"), (back, "wretr"), (back, "wredis"), (back, "srv_abrt")]))
EOF
}

# --- servers -----------------------------------------------------------------
start_echo() { # PORT NAME VAR: starts an echo process, its pid in VAR
  "$TMP/echo" "$1" >"$TMP/$2.log" 2>&1 &
  PIDS+=($!)
  printf -v "$3" %s $!
  wait_line "$TMP/$2.log" "listening" $!
}

daemon_config() { # DIR [LISTEN_PORT]
  cat <<EOF
[daemon]
state_dir = "$1/state"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 1024
limits = { nofile = 4096 }
EOF
  # The hook for streamletd accepting TCP itself: a pool that listens.
  [[ -z ${2:-} ]] || echo "listen = [\"127.0.0.1:$2\"]"
}

start_daemon() { # DIR CONFIG VAR: starts streamletd, its pid in VAR
  local dir=$1
  "$BIN/streamletd" --socket "$dir/streamletd.sock" --config "$2" >"$dir/streamletd.sock.log" 2>&1 &
  DAEMONS+=($!)
  printf -v "$3" %s $!
  wait_ready "$dir/streamletd.sock" $!
}

say "starting the servers"
start_echo "$P_DIRECT" echo-direct ECHO_DIRECT

start_echo "$P_ECHO1" echo-haproxy-1 ECHO1
start_echo "$P_ECHO2" echo-haproxy-2 ECHO2
HAPROXY_PORT=$P_HAPROXY ECHO1_PORT=$P_ECHO1 ECHO2_PORT=$P_ECHO2 HAPROXY_STATS=$TMP/haproxy.stats \
  haproxy -db -f "$HERE/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
HAPROXY=$!
PIDS+=("$HAPROXY")
wait_port "$P_HAPROXY" "$HAPROXY"

mkdir -p "$TMP/gw"
daemon_config "$TMP/gw" >"$TMP/gw/streamletd.toml"
start_daemon "$TMP/gw" "$TMP/gw/streamletd.toml" DAEMON_GW
gateway_args=(--listen "127.0.0.1:$P_GATEWAY" --pool echo --socket "$TMP/gw/streamletd.sock")
if "$BIN/streamlet-gateway" --help | grep -q -- --in-flight; then
  gateway_args+=(--in-flight 32)
else
  say "note: this streamlet-gateway has no --in-flight; running it without"
fi
"$BIN/streamlet-gateway" "${gateway_args[@]}" >"$TMP/gateway.log" 2>"$TMP/gateway.err" &
GATEWAY=$!
PIDS+=("$GATEWAY")
wait_line "$TMP/gateway.log" "listening on" "$GATEWAY"

PATHS=(direct haproxy gateway)
mkdir -p "$TMP/listen"
daemon_config "$TMP/listen" "$P_LISTEN" >"$TMP/listen/streamletd.toml"
if "$BIN/streamletd" check-config "$TMP/listen/streamletd.toml" >"$TMP/listen/check.log" 2>&1; then
  start_daemon "$TMP/listen" "$TMP/listen/streamletd.toml" DAEMON_LISTEN
  wait_port "$P_LISTEN" "$DAEMON_LISTEN"
  PATHS+=(listen)
else
  say "note: skipping the path 'streamletd accepting TCP itself': check-config refuses a pool's listen key:"
  say "  $(grep -m1 listen "$TMP/listen/check.log" || head -1 "$TMP/listen/check.log")"
fi

# --- the runs ----------------------------------------------------------------
CLK=$(getconf CLK_TCK)
RESULTS=$TMP/results
: >"$RESULTS"

cpu_model=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
say ""
say "machine: $(nproc) cores, $cpu_model, Linux $(uname -r), $(date -u +%Y-%m-%d)"
say "haproxy: $(haproxy -v | head -1 | awk '{print $3}'), nbthread 2; paths: ${PATHS[*]}"
say "workload: $INFLIGHT in flight, $PAYLOAD B each way, ${SECS} s per run after ${WARMUP} s warm-up, $ROUNDS rounds, $SOURCES source addresses"
say ""

# GROUP=PIDSPEC pairs for each path; PIDSPEC "streamlets:PID" means the children of PID.
groups_of() {
  case $1 in
    direct) echo "backends=$ECHO_DIRECT" ;;
    haproxy) echo "haproxy=$HAPROXY backends=$ECHO1,$ECHO2" ;;
    gateway) echo "gateway=$GATEWAY daemon=$DAEMON_GW streamlets=kids:$DAEMON_GW" ;;
    listen) echo "daemon=$DAEMON_LISTEN streamlets=kids:$DAEMON_LISTEN" ;;
  esac
}
port_of() {
  case $1 in
    direct) echo "$P_DIRECT" ;; haproxy) echo "$P_HAPROXY" ;; gateway) echo "$P_GATEWAY" ;; listen) echo "$P_LISTEN" ;;
  esac
}
snapshot() { # PATH: "group=ticks ..." for the path's groups, and the kernel's threads
  local g name spec out=("kthreads=$(ticks 0 2 $(children_of 2))")
  for g in $(groups_of "$1"); do
    name=${g%%=*}
    spec=${g#*=}
    if [[ $spec == kids:* ]]; then
      # Streamlets now, plus what reaped ones used (the daemon's cutime/cstime).
      out+=("$name=$(($(ticks 0 $(children_of "${spec#kids:}")) + $(ticks 1 "${spec#kids:}") - $(ticks 0 "${spec#kids:}")))")
    else
      out+=("$name=$(ticks 0 ${spec//,/ })")
    fi
  done
  echo "${out[*]}"
}

# Waits up to SETTLE seconds for the machine to be below 25% busy.
settle() {
  local deadline=$((SECONDS + SETTLE)) a ta b tb
  while :; do
    read -r a ta <<<"$(machine_ticks)"
    sleep 0.5
    read -r b tb <<<"$(machine_ticks)"
    (((b - a) * 4 < tb - ta)) && return 0
    ((SECONDS < deadline)) || { say "note: the machine was still busy after ${SETTLE} s; running anyway"; return 0; }
  done
}

run_one() { # ROUND PATH
  local round=$1 path=$2 before after m0 m1 line hap0="" hap1=""
  [[ $path == haproxy ]] && hap0=$(haproxy_counters)
  before=$(snapshot "$path")
  m0=$(machine_ticks)
  line=$("$TMP/loadgen" "127.0.0.1:$(port_of "$path")" "$INFLIGHT" "$SECS" "$PAYLOAD" \
    --warmup "$WARMUP" --sources "$SOURCES")
  m1=$(machine_ticks)
  after=$(snapshot "$path")
  [[ $path == haproxy ]] && hap1=$(haproxy_counters)
  echo "round=$round path=$path clk=$CLK $line before:[$before] after:[$after] machine0:[$m0] machine1:[$m1] tw=$(tw_count) haproxy0:[$hap0] haproxy1:[$hap1]" >>"$RESULTS"
  say "round $round  $(printf '%-8s' "$path") $(echo "$line" | cut -d' ' -f1-7)  tw=$(tw_count)"
}

start_time=$SECONDS
for ((r = 0; r < ROUNDS; r++)); do
  n=${#PATHS[@]}
  for ((i = 0; i < n; i++)); do
    sleep 1
    settle
    run_one $((r + 1)) "${PATHS[$(((i + r) % n))]}"
  done
done

# --- the report --------------------------------------------------------------
errors_gw=$("$BIN/streamletctl" --socket "$TMP/gw/streamletd.sock" --json status |
  python3 -c 'import json,sys; print(json.dumps({p["pool"]: p["errors"] for p in json.load(sys.stdin)["pools"]}))')
say ""
say "daemon errors (gateway path): $errors_gw; gateway warnings: $(grep -c -E ' (WARN|ERROR) ' "$TMP/gateway.err" || true)"
say "runs took $((SECONDS - start_time)) s"
say ""

python3 - "$RESULTS" <<'EOF'
import re, statistics, sys

runs = []
for line in open(sys.argv[1]):
    r = {"raw": line}
    for k, v in re.findall(r"(\w+)=([^\s\[\]]+)", line.split(" before:[")[0]):
        r[k] = v
    for part in ("before", "after", "haproxy0", "haproxy1"):
        m = re.search(part + r":\[([^\]]*)\]", line)
        r[part] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))} if m else {}
    for part in ("machine0", "machine1"):
        r[part] = [int(x) for x in re.search(part + r":\[([^\]]*)\]", line).group(1).split()]
    runs.append(r)

NAMES = {
    "direct": "direct: one echo process (the limit)",
    "haproxy": "HAProxy (mode tcp, leastconn, 2 threads) -> 2 echo processes",
    "gateway": "streamlet-gateway -> streamletd -> 2 streamlets",
    "listen": "streamletd accepting TCP itself (pool `listen`) -> 2 streamlets",
}
GROUPS = ["haproxy", "gateway", "daemon", "streamlets", "backends"]
med = statistics.median
fmt = lambda x: f"{x:,.0f}"

by_path = {}
for r in runs:
    by_path.setdefault(r["path"], []).append(r)

print("| path | new streams/s: median (min-max) | p50 / p99 latency (medians) | server CPU per stream, µs: total (per process) "
      "| loadgen CPU: share of one core (µs per stream) | kernel threads, µs per stream | errors | other load |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
clk = lambda r: int(r["clk"])
per_stream = lambda r, ticks: ticks * 1e6 / clk(r) / max(1, int(r["total_streams"]))
delta = lambda r, g: r["after"][g] - r["before"][g]
for path in [p for p in NAMES if p in by_path]:
    rs = by_path[path]
    rates = [float(r["rate"]) for r in rs]
    p50 = med(float(r["p50_us"]) for r in rs)
    p99 = med(float(r["p99_us"]) for r in rs)
    per = {g: med(per_stream(r, delta(r, g)) for r in rs) for g in GROUPS if g in rs[0]["after"]}
    total = med(per_stream(r, sum(delta(r, g) for g in GROUPS if g in r["after"])) for r in rs)
    lg_share = med(float(r["cpu_s"]) / float(r["seconds"]) * 100 for r in rs)
    lg_us = med(float(r["total_cpu_s"]) * 1e6 / max(1, int(r["total_streams"])) for r in rs)
    kthreads = med(per_stream(r, delta(r, "kthreads")) for r in rs)
    errs = sum(int(r["errors"]) for r in rs)
    # Cores busy with anything but this path's processes, the loadgen and the
    # kernel's threads: other work on the machine, the noise.
    other = []
    for r in rs:
        busy = r["machine1"][0] - r["machine0"][0]
        ours = sum(delta(r, g) for g in r["after"]) + float(r["total_cpu_s"]) * clk(r)
        other.append(max(0.0, (busy - ours) / clk(r) / float(r["total_seconds"])))
    parts = ", ".join(f"{g} {per[g]:.1f}" for g in GROUPS if g in per)
    print(f"| {NAMES[path]} | {fmt(med(rates))} ({fmt(min(rates))}-{fmt(max(rates))}) | {p50:,.0f} µs / {p99:,.0f} µs "
          f"| {total:.1f} ({parts}) | {lg_share:.0f}% ({lg_us:.1f}) | {kthreads:.1f} | {errs} | {med(other):.2f} cores |")

print()
rounds = sorted({int(r["round"]) for r in runs})
rate = {(int(r["round"]), r["path"]): float(r["rate"]) for r in runs}
for num in ("gateway", "listen"):
    for den in ("haproxy", "direct"):
        ratios = [rate[(k, num)] / rate[(k, den)] for k in rounds if (k, num) in rate and (k, den) in rate]
        if ratios:
            print(f"{num} / {den}: {med(ratios):.2f} (per round: {', '.join(f'{x:.2f}' for x in ratios)})")
hap = by_path.get("haproxy", [])
if hap:
    keys = hap[0]["haproxy1"].keys()
    d = {k: sum(r["haproxy1"][k] - r["haproxy0"][k] for r in hap) for k in keys}
    print("haproxy counters over its runs: " + " ".join(f"{k}={v}" for k, v in d.items()))
errs = {}
for r in runs:
    for k in ("refused", "reset", "addrnotavail", "eof", "mismatch", "timeout", "other"):
        if int(r.get(k, 0)):
            errs[(r["path"], k)] = errs.get((r["path"], k), 0) + int(r[k])
print("loadgen errors: " + (", ".join(f"{p} {k} {v}" for (p, k), v in errs.items()) or "none"))
EOF
