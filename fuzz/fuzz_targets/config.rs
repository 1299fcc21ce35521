//! The configuration file as `streamletd` and `streamletd check-config`
//! read it (`Config::load`: the file's text, then `Config::parse`): TOML
//! text to a validated `Config`.
//!
//! Checks: what validates keeps every bound the daemon relies on; a refusal
//! names the file and, for each problem, a reason and a line within it; no
//! parse holds heap its input did not pay for.
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use streamlet_config::Config;
use streamlet_config::{RunAs, MAX_STREAMS_PER_WORKER, MAX_WORKERS_PER_POOL};
use streamlet_fuzz::heap;

/// TOML's parse tree: the densest inputs measured (nested inline tables,
/// 3000 empty `worker_labels`) take under 100 bytes per input byte.
const PER_BYTE: usize = 1024;
const FIXED: usize = 64 * 1024;

fuzz_target!(|bytes: &[u8]| {
    // `Config::load` reads the file as UTF-8 text, refusing anything else.
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let (parsed, peak) = heap::peak_during(|| Config::parse(text, "fuzz.toml"));
    heap::assert_paid_for("a configuration", text.len(), peak, PER_BYTE, FIXED);
    match parsed {
        Ok(config) => check(&config),
        Err(e) => {
            assert_eq!(e.file, "fuzz.toml");
            let last_line = text.matches('\n').count() + 1;
            for problem in e.problems() {
                assert!(!problem.reason.is_empty());
                assert!(
                    problem.line.is_none_or(|l| (1..=last_line).contains(&l)),
                    "line {:?} of {last_line}",
                    problem.line
                );
            }
        }
    }
});

fn check(config: &Config) {
    assert!(!config.pools.is_empty());
    assert!(!config.daemon.stats_interval.is_zero());
    for path in [&config.daemon.worker_binary, &config.daemon.state_dir].into_iter().flatten() {
        assert!(path.is_absolute(), "{}", path.display());
    }
    let (first, last) = config.sandbox.uids;
    assert!(0 < first && first <= last && last < 1 << 31);
    assert!(config.quota.burst <= Duration::from_secs(60));
    for ((a, b), d) in &config.quota.distances {
        assert_ne!(a, b);
        assert_eq!(config.quota.distances.get(&(b.clone(), a.clone())), Some(d), "distances are symmetric");
    }
    for (name, pool) in &config.pools {
        assert_eq!(name, &pool.name);
        assert!((1..=64).contains(&name.len()));
        assert!(name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_'));
        assert!(1 <= pool.workers_max && pool.workers_max <= MAX_WORKERS_PER_POOL);
        assert!(pool.workers_min <= pool.workers_max && pool.min_free <= pool.workers_max);
        assert!((1..=MAX_STREAMS_PER_WORKER).contains(&pool.streams_per_worker));
        assert!(pool.worker_labels.len() <= pool.workers_max as usize);
        if let Some(rate) = pool.default_rate {
            assert!(rate.min <= rate.max && rate.max > 0);
        }
        assert!(pool.limits.memory.is_none_or(|m| m >= 4 << 20));
        assert!(pool.limits.cpu_cores.is_none_or(|c| c > 0.0 && c <= 1024.0));
        assert!(pool.limits.pids != Some(0) && pool.limits.nofile >= 16);
        if let RunAs::User { uid, gid } = pool.run_as {
            assert!(uid != 0 && gid != 0, "a streamlet never runs as root");
        }
        assert!(pool.heartbeat_timeout >= Duration::from_millis(100));
        let a = &pool.autoscale;
        assert!(a.lead >= Duration::from_secs(1) && a.lead <= Duration::from_secs(24 * 3600));
        assert!((0.0..=10.0).contains(&a.headroom));
        let r = &pool.restart;
        assert!(r.initial <= r.max && !r.period.is_zero() && r.intensity >= 1);
        assert!((1.0..=100.0).contains(&r.multiplier) && (0.0..=1.0).contains(&r.jitter));
        assert!(pool.upstream_allow.is_empty() || pool.upstream.is_some());
        // What the daemon derives from the pool at once.
        let rules = pool.rules();
        assert_eq!((rules.min, rules.max), (pool.workers_min, pool.workers_max));
    }
}
