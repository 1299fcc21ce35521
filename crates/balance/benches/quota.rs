//! The allocator's cost per admission, per release and per full re-share,
//! at 100, 10,000 and 100,000 running streams.
//!
//! The streams are spread over two pools, one of them capped, with mixed
//! priorities and a host too small for every max, so every change runs the
//! whole water-filling. `cargo bench -p streamlet-balance --bench quota`.

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

/// `n` running streams: minimums fit, maximums do not.
fn loaded(n: u64) -> Allocator {
    let mut a = Allocator::new(n * 20_000);
    a.set_pool("capped", Some(n * 5_000), true);
    a.set_pool("open", None, false);
    let streams = (0..n).map(|k| (StreamKey(k), pool(k), "tenant", Priority((k % 4) as u8), RATE));
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
                    black_box(a.release(key));
                    spent += start.elapsed();
                }
                spent
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
                black_box(roomy.release(key));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, quota);
criterion_main!(benches);
