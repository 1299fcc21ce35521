//! Placement latency per policy: one place and one release, at 10 to 10,000
//! streamlets of capacity 100, each loaded to about half.
//!
//! `cargo bench -p streamlet-balance --bench placement`

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use streamlet_balance::policies::{PolicyKind, PolicyOptions, REGION_LABEL};
use streamlet_balance::{Labels, Placement, Request};

const SIZES: [u64; 4] = [10, 100, 1_000, 10_000];
const CAPACITY: u32 = 100;
const REGIONS: [&str; 4] = ["eu-west", "eu-central", "us-east", "ap-south"];

fn options() -> PolicyOptions {
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    PolicyOptions {
        prefer: vec![pair("forwarded", "true")],
        distances: HashMap::from([
            (pair("eu-west", "eu-central"), 10),
            (pair("eu-west", "us-east"), 80),
            (pair("eu-central", "us-east"), 90),
            (pair("ap-south", "eu-central"), 110),
        ]),
        penalty_per_unit: 0.001,
        seed: 1,
    }
}

/// A policy over `n` streamlets spread across the regions, each half full.
fn loaded(kind: PolicyKind, n: u64) -> Box<dyn Placement> {
    let mut p = kind.build(&options());
    for w in 0..n {
        let mut labels = Labels::new();
        labels.insert(REGION_LABEL.to_string(), REGIONS[w as usize % REGIONS.len()].to_string());
        labels.insert("forwarded".to_string(), (w % 2 == 0).to_string());
        p.add(w, CAPACITY, &labels);
    }
    let any = Request::default();
    for _ in 0..n * u64::from(CAPACITY) / 2 {
        p.place(&any).expect("room for half the capacity");
    }
    p
}

fn place_and_release(c: &mut Criterion) {
    let request = Request { region: Some("eu-west".to_string()) };
    for kind in PolicyKind::ALL {
        let mut group = c.benchmark_group(format!("place+release/{kind}"));
        for n in SIZES {
            let mut p = loaded(kind, n);
            group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
                b.iter(|| {
                    let w = p.place(black_box(&request)).expect("room");
                    p.release(black_box(w));
                })
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default().measurement_time(Duration::from_secs(1)).warm_up_time(Duration::from_millis(300))
}

criterion_group! {
    name = benches;
    config = config();
    targets = place_and_release
}
criterion_main!(benches);
