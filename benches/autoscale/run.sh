#!/bin/sh
# Replays the real traces through the autoscaler, every policy at a fast and
# a slow spawn, and writes each run's totals (table and JSON), minutes (CSV)
# and chart (SVG) into OUT_DIR [default: target/autoscale], then a summary
# (summary.txt).
#
#   benches/autoscale/run.sh [OUT_DIR]
#
# The traces are read from $TRACES [default: ../shared/traces beside the
# repository]. What each experiment is, and why, is in its config's comments:
# - nasa: NASA HTTP 1995 arrivals per minute, doubled (--scale 2), streams of
#   an exponential 30 s; the last 14 days evaluated, after 10 minutes of
#   warm-up, trained on the 48 days before.
# - azure: Azure LLM conversation requests, doubled (--scale 2), each streaming
#   GeneratedTokens x 30 ms; the last 30 minutes evaluated, after 10 minutes
#   of warm-up, trained on the 20 before.
# - azure-single: the same requests, once, one stream per streamlet.
# - nasa-spread: nasa under least-connections instead of pack, for the cost
#   of a spreading placement.
# - spawn delays: 17 ms (a sandboxed streamlet spawned on its own, into a new
#   cgroup, as measured on the development VM: BENCHMARKS.md, "replacement
#   ready, spare = false") and 2 s (a handler with a heavy start-up).
# - reactive runs twice: with the shared config in the table and chart
#   (min_free = 0: it never grows past min) and with min_free = 1
#   (*-reactive.toml), its only way to grow.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-$root/target/autoscale}
traces=${TRACES:-$root/../shared/traces}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
cargo build --quiet --release --bin streamletctl
ctl=${CARGO_TARGET_DIR:-target}/release/streamletctl
configs=benches/autoscale

nasa="--trace $traces/nasa_http_1995/nasa_requests_per_minute.csv --durations exp:30s --evaluate-last 14d"
azure="--trace $traces/azure_llm_2023/AzureLLMInferenceTrace_conv.csv --ms-per-token 30 --evaluate-last 30m"

# experiment NAME CONFIG REACTIVE_CONFIG FLAGS...: every policy at each spawn delay.
experiment() {
    name=$1 config=$2 reactive=$3
    shift 3
    for delay in 17ms 2s; do
        run="$out/$name-$delay"
        "$ctl" simulate "$@" --config "$configs/$config" --spawn-delay "$delay" --csv "$run.csv" --svg "$run.svg" \
            > "$run.txt"
        "$ctl" simulate "$@" --config "$configs/$config" --spawn-delay "$delay" --json > "$run.json"
        if [ -n "$reactive" ]; then
            "$ctl" simulate "$@" --config "$configs/$reactive" --spawn-delay "$delay" --policy reactive \
                > "$run-reactive-min-free.txt"
        fi
    done
}

# shellcheck disable=SC2086 # the flags are words
experiment nasa nasa.toml nasa-reactive.toml $nasa --scale 2
# shellcheck disable=SC2086
experiment nasa-spread nasa-spread.toml "" $nasa --scale 2
# shellcheck disable=SC2086
experiment azure azure.toml azure-reactive.toml $azure --scale 2
# shellcheck disable=SC2086
experiment azure-single azure-single.toml "" $azure --scale 1

# The summary: every row, and predictive against lookahead.
{
    printf '%-13s %-5s %-22s %9s %10s %11s %8s %12s %5s\n' experiment delay policy admitted cold_waits \
        cold_wait_s rejected worker_s peak
    for name in nasa nasa-spread azure azure-single; do
        for delay in 17ms 2s; do
            for file in "$out/$name-$delay.txt" "$out/$name-$delay-reactive-min-free.txt"; do
                [ -f "$file" ] || continue
                suffix=""
                case $file in *reactive-min-free*) suffix=" (min_free 1)" ;; esac
                awk -v n="$name" -v d="$delay" -v s="$suffix" '
                    f { printf "%-13s %-5s %-22s %9s %10s %11s %8s %12s %5s\n", n, d, $1 s, $2, $3, $4, $5, $6, $7 }
                    $1 == "POLICY" { f = 1 }' "$file"
            done
            awk -v n="$name" -v d="$delay" '
                $1 == "lookahead" { lm = $3 + $5; lw = $6 }
                $1 == "predictive" { pm = $3 + $5; pw = $6 }
                END {
                    cut = lm > 0 ? sprintf("%.1f%%", 100 * (lm - pm) / lm) : "none to cut"
                    printf "%-13s %-5s predictive vs lookahead: misses %d -> %d (cut %s), worker-seconds %+.1f%%\n",
                        n, d, lm, pm, cut, 100 * (pw - lw) / lw
                }' "$out/$name-$delay.txt"
        done
    done
} | tee "$out/summary.txt"

# The same comparison at the slow spawn over five seeds (the random spread of
# arrivals within their minute or second, and of the NASA durations): the
# median and range of the cut in misses and of the extra cost.
seeds() {
    name=$1 config=$2
    shift 2
    for seed in 1 2 3 4 5; do
        "$ctl" simulate "$@" --config "$configs/$config" --spawn-delay 2s --policy all --seed "$seed" --json
    done | python3 -c '
import json, sys
text = sys.stdin.read()
runs, depth, start = [], 0, 0
for i, c in enumerate(text):
    if c == "{":
        depth += 1
        if depth == 1:
            start = i
    elif c == "}":
        depth -= 1
        if depth == 0:
            runs.append(json.loads(text[start : i + 1]))
miss = lambda r: r["cold_waits"] + r["rejected"]
cuts = sorted(100 * (1 - miss(r["predictive"]) / miss(r["lookahead"])) for r in runs if miss(r["lookahead"]))
costs = sorted(100 * (r["predictive"]["worker_seconds"] / r["lookahead"]["worker_seconds"] - 1) for r in runs)
cut = f"{cuts[len(cuts) // 2]:.1f}% ({cuts[0]:.1f} to {cuts[-1]:.1f})" if cuts else "none to cut"
name = sys.argv[1]
print(f"{name:<13} 2s    seeds 1-5: misses cut {cut}, worker-seconds {costs[len(costs) // 2]:+.1f}% ({costs[0]:+.1f} to {costs[-1]:+.1f})")
' "$name"
}
{
    # shellcheck disable=SC2086
    seeds nasa nasa.toml $nasa --scale 2
    # shellcheck disable=SC2086
    seeds azure azure.toml $azure --scale 2
    # shellcheck disable=SC2086
    seeds azure-single azure-single.toml $azure --scale 1
} | tee -a "$out/summary.txt"
