//! The allocator's cost per admission, per release, under steady churn, and
//! per full re-share, at 100, 10,000 and 100,000 running streams.
//!
//! The streams are spread over two pools, one of them capped, with mixed
//! priorities and a host too small for every max, so every change moves the
//! water levels. `churn` is the figure that matters: a new stream admitted
//! and the oldest released, over and over, with the admissions that do not
//! fit the pacing margin re-pacing everyone at once and a sweep every 1,000
//! changes (the daemon sweeps every 50 ms), all counted.
//! `cargo bench -p streamlet-balance --bench quota`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use streamlet_balance::quota::{Allocator, Priority, Rate, StreamKey};

const SIZES: [u64; 3] = [100, 10_000, 100_000];
const RATE: Rate = Rate { min: 1_000, max: 100_000 };

fn pool(k: u64) -> &'static str {
    if k % 3 == 0 {
        "capped"
    } else {
        "open"
    }
}

/// Maxima spread from 2,000 to 200,000, so that the water levels fall among
/// the streams' saturation levels (about half below, half above), not before
/// the first of them.
fn rate(k: u64) -> Rate {
    Rate { min: 1_000, max: 2_000 + k.wrapping_mul(7_919) % 198_000 }
}

/// `n` running streams: minimums fit, maximums do not.
fn loaded(n: u64) -> Allocator {
    let mut a = Allocator::new(n * 50_000);
    a.set_pool("capped", Some(n * 12_000), true);
    a.set_pool("open", None, false);
    let streams = (0..n).map(|k| (StreamKey(k), pool(k), "tenant", Priority((k % 4) as u8), rate(k)));
    let batch = a.admit_batch(streams, 0);
    assert!(batch.refused.is_empty());
    a
}

fn quota(c: &mut Criterion) {
    let mut group = c.benchmark_group("quota");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(2));
    for n in SIZES {
        let mut a = loaded(n);
        let key = StreamKey(n);
        let saturated = (0..n).filter(|k| a.allocation(StreamKey(*k)) == Some(rate(*k).max)).count();
        eprintln!("{n} streams: {saturated} at their max, the others sharing");
        group.bench_with_input(BenchmarkId::new("admit", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    black_box(a.admit(key, "open", "tenant", Priority(2), RATE, 0).unwrap());
                    spent += start.elapsed();
                    a.release(key);
                }
                spent
            })
        });
        group.bench_with_input(BenchmarkId::new("release", n), &n, |b, _| {
            b.iter_custom(|iters| {
                let mut spent = Duration::ZERO;
                for _ in 0..iters {
                    a.admit(key, "open", "tenant", Priority(2), RATE, 0).unwrap();
                    let start = Instant::now();
                    a.release(key);
                    spent += start.elapsed();
                }
                spent
            })
        });
        let mut next = n + 1;
        let mut oldest = 0;
        let mut ops = 0u64;
        group.bench_with_input(BenchmarkId::new("churn", n), &n, |b, _| {
            b.iter(|| {
                let admitted =
                    a.admit(StreamKey(next), pool(next), "tenant", Priority((next % 4) as u8), rate(next), 0);
                black_box(admitted.unwrap());
                a.release(StreamKey(oldest));
                next += 1;
                oldest += 1;
                ops += 1;
                if ops % 1_000 == 0 {
                    black_box(a.sweep());
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("reallocate", n), &n, |b, _| b.iter(|| black_box(a.reallocate())));
        // Every maximum fits: the sharing is trivial and skipped.
        let mut roomy = Allocator::new(u64::MAX);
        roomy.set_pool("open", None, false);
        roomy.set_pool("capped", None, false);
        let streams = (0..n).map(|k| (StreamKey(k), pool(k), "tenant", Priority((k % 4) as u8), RATE));
        assert!(roomy.admit_batch(streams, 0).refused.is_empty());
        group.bench_with_input(BenchmarkId::new("admit+release, maxima fit", n), &n, |b, _| {
            b.iter(|| {
                black_box(roomy.admit(key, "open", "tenant", Priority(2), RATE, 0).unwrap());
                roomy.release(key);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, quota);
criterion_main!(benches);
