//! How long `streamletctl simulate` takes over a week of real traffic.
//!
//! `cargo bench --bench simulate`
//!
//! Replays the last week of the NASA HTTP 1995 per-minute trace
//! (`../shared/traces`), trained on the seven weeks before it, through the
//! pool of `benches/autoscale/nasa.toml` (arrivals doubled, exponential
//! 30 s streams, spawns ready after 2 s) under each policy, three times,
//! and prints the median wall time of building the workload and playing
//! it: the daemon's placement, scaling rules and forecast on a virtual
//! clock, stream by stream.

use std::path::Path;
use std::time::{Duration, Instant};

use streamlet_config::Config;
use streamlet_simulate::{self as simulate, Durations, Options, Policy, Trace, Workload};

const TRACE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/traces/nasa_http_1995/nasa_requests_per_minute.csv");
const CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/autoscale/nasa.toml");
const RUNS: usize = 3;

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    if !Path::new(TRACE).exists() {
        eprintln!("{TRACE} is missing: nothing to replay");
        return;
    }
    let trace = Trace::read(Path::new(TRACE)).expect("the NASA trace reads");
    let config = Config::load(Path::new(CONFIG)).expect("benches/autoscale/nasa.toml is valid");
    let pool = config.pools.values().next().expect("one pool");
    let options = Options {
        spawn_delay_ms: 2000,
        scale: 2.0,
        durations: Durations::Exponential(30_000),
        evaluate_last_ms: Some(7 * 24 * 3_600_000),
        ..Options::default()
    };
    let streams = Workload::new(&trace, &options).expect("a workload").stream_count();
    println!("a week of NASA HTTP 1995 per minute, arrivals x2: {streams} streams, median of {RUNS} runs");
    println!("{:<12} {:>10} {:>16} {:>11} {:>9}", "policy", "wall", "streams/second", "cold waits", "rejected");
    for policy in Policy::ALL {
        let mut times: Vec<Duration> = Vec::new();
        let mut outcome = None;
        for _ in 0..RUNS {
            let start = Instant::now();
            let workload = Workload::new(&trace, &options).expect("a workload");
            outcome = Some(simulate::run(pool, &config, policy, &workload, &options));
            times.push(start.elapsed());
        }
        times.sort();
        let median = times[RUNS / 2];
        let totals = outcome.expect("ran").totals;
        println!(
            "{:<12} {:>9.2}s {:>16.0} {:>11} {:>9}",
            policy.as_str(),
            median.as_secs_f64(),
            streams as f64 / median.as_secs_f64(),
            totals.cold_waits,
            totals.rejected
        );
    }
}
