//! The forecast's costs: fitting on five weeks of minutes, learning one
//! closed minute, and the prediction the daemon asks for every 50 ms tick.
//!
//! `cargo bench -p streamlet-autoscale --bench forecast`
//!
//! The series is the NASA trace (../shared/traces, July and August 1995):
//! its last five weeks before the final fortnight, which has both outages
//! in it as missing minutes. Without the trace, a synthetic series of the
//! same shape.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use streamlet_autoscale::forecast::Model;
use streamlet_autoscale::history::{MINUTES_KEPT, MISSING};
use streamlet_autoscale::Demand;

const TRACE: &str = "../../../shared/traces/nasa_http_1995/nasa_requests_per_minute.csv";
const MINUTE_MS: u64 = 60_000;
/// 1995-07-01T00:00 in minutes since the epoch; the trace's first minute.
const FIRST_MINUTE: u64 = 9312 * 1440;

/// Five weeks of arrivals per minute, and the fortnight after them.
fn series() -> (Vec<u32>, Vec<u32>) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(TRACE);
    let all: Vec<u32> = match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .skip(1)
            .filter_map(|l| {
                let mut c = l.split(',').skip(1);
                let n: u32 = c.next()?.parse().ok()?;
                Some(if c.next()?.trim() == "0" { MISSING } else { n })
            })
            .collect(),
        Err(e) => {
            eprintln!("{}: {e}; using a synthetic series", path.display());
            (0..MINUTES_KEPT as u64 + 14 * 1440)
                .map(|t| (40.0 + 25.0 * (t as f64 * std::f64::consts::TAU / 1440.0).sin()) as u32)
                .collect()
        }
    };
    let test = all.len() - 14 * 1440;
    (all[test - MINUTES_KEPT..test].to_vec(), all[test..].to_vec())
}

fn forecast(c: &mut Criterion) {
    let (train, test) = series();
    let first = FIRST_MINUTE;
    let end = first + train.len() as u64;

    let mut g = c.benchmark_group("fit");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.bench_function("Model::fit, 5 weeks (grid search)", |b| b.iter(|| Model::fit(black_box(&train), first)));
    let params = Model::fit(&train, first).params();
    let seasons = Model::fit(&train, first).seasons();
    g.bench_function("Model::fit_with, 5 weeks (one pass)", |b| {
        b.iter(|| Model::fit_with(black_box(&train), first, seasons, params))
    });
    g.finish();

    let model = Model::fit(&train, first);
    let mut g = c.benchmark_group("per minute");
    g.bench_function("Model::update, one closed minute", |b| {
        let mut m = model.clone();
        let mut minute = end;
        b.iter(|| {
            let y = test[(minute - end) as usize % test.len()];
            m.update(minute, (y != MISSING).then_some(f64::from(y)));
            minute += 1;
        })
    });
    let demand = Demand::from_series(first, &train, 90_000.0);
    g.bench_function("Demand: a minute of arrivals and the tick closing it", |b| {
        let mut d = demand.clone();
        let mut minute = end;
        d.tick(minute * MINUTE_MS);
        b.iter(|| {
            for _ in 0..test[(minute - end) as usize % test.len()].min(100) {
                d.arrival(minute * MINUTE_MS + 1000);
            }
            minute += 1;
            d.tick(minute * MINUTE_MS)
        })
    });
    g.finish();

    let mut d = demand.clone();
    d.tick(end * MINUTE_MS);
    d.arrival(end * MINUTE_MS + 1000);
    let now = end * MINUTE_MS + 20_000;
    let mut g = c.benchmark_group("predicted_concurrency");
    for (name, lead_ms) in
        [("lead 30 s", 30_000), ("lead 5 min", 5 * MINUTE_MS), ("lead 2 h (past the cache)", 120 * MINUTE_MS)]
    {
        g.bench_function(name, |b| b.iter(|| black_box(&d).predicted_concurrency(black_box(now), lead_ms)));
    }
    g.finish();
}

criterion_group!(benches, forecast);
criterion_main!(benches);
