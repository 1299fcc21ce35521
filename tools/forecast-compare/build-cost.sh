#!/bin/sh
# Build cost of the forecast: clean release builds of two small binaries, each
# in its own CARGO_TARGET_DIR under /tmp (deleted at the end), RUNS times each:
#
#   own:    streamlet-autoscale; fits its Model on a synthetic series.
#   augurs: streamlet-autoscale and augurs (mstl, ets); fits MSTL + AutoETS.
#
# Prints per run the wall time, the crates compiled, and the binary's size
# (as built and stripped). Usage: tools/forecast-compare/build-cost.sh [RUNS]
set -eu
runs=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/forecast-build-cost.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

project() { # name, extra dependency line, main.rs body
    mkdir -p "$tmp/$1/src"
    cat > "$tmp/$1/Cargo.toml" <<TOML
[package]
name = "size-$1"
version = "0.0.0"
edition = "2021"

[workspace]

[dependencies]
streamlet-autoscale = { path = "$root/crates/autoscale" }
$2
TOML
    printf '%s\n' "$3" > "$tmp/$1/src/main.rs"
}

series='let y: Vec<u32> = (0..50_400u32).map(|t| 40 + (t % 1440) / 60 + t % 7).collect();'
project own "" "fn main() {
    $series
    let m = streamlet_autoscale::forecast::Model::fit(&y, 0);
    println!(\"{}\", m.forecast(50_405));
}"
project augurs 'augurs = { version = "0.10", features = ["mstl", "ets"] }' "use augurs::prelude::*;
fn main() {
    $series
    let y: Vec<f64> = y.iter().map(|&n| f64::from(n)).collect();
    let trend = augurs::ets::AutoETS::non_seasonal().into_trend_model();
    let fit = augurs::mstl::MSTLModel::new(vec![1440, 10_080], trend).fit(&y).unwrap();
    println!(\"{}\", fit.predict(6, None).unwrap().point[5]);
}"

# Fetch first, so that downloads are not timed.
for p in own augurs; do (cd "$tmp/$p" && cargo fetch -q); done
for run in $(seq "$runs"); do
    for p in own augurs; do
        target="$tmp/target-$p"
        rm -rf "$target"
        start=$(date +%s.%N)
        log=$(cd "$tmp/$p" && CARGO_TARGET_DIR="$target" cargo build --release 2>&1)
        end=$(date +%s.%N)
        crates=$(printf '%s\n' "$log" | grep -c '^ *Compiling ')
        bin="$target/release/size-$p"
        size=$(stat -c %s "$bin")
        strip -o "$tmp/stripped" "$bin"
        stripped=$(stat -c %s "$tmp/stripped")
        printf '%s run %s: %.1f s, %s crates compiled, binary %s bytes (%s stripped)\n' \
            "$p" "$run" "$(echo "$end - $start" | bc)" "$crates" "$size" "$stripped"
    done
done
rm -rf "$tmp"/target-*
