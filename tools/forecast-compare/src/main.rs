//! Compares the autoscaler's seasonal model with augurs (MSTL + AutoETS)
//! and two naive baselines on the NASA trace; see README.md.

mod evaluate;
mod methods;
mod metrics;
mod trace;

use std::path::PathBuf;

use anyhow::{Context, Result};
use evaluate::{centred_reference, evaluate, fit_times, median};
use methods::{Augurs, LastHour, LastWeek, Method, Own};
use metrics::Errors;
use streamlet_autoscale::history::MINUTES_KEPT;

/// The trace, from this crate's directory.
const DEFAULT_TRACE: &str = "../../../shared/traces/nasa_http_1995/nasa_requests_per_minute.csv";
const TEST_MINUTES: usize = 14 * 1440;
/// Origins between two sampled origins, for the refit-at-each-origin run.
const SAMPLE_EVERY: usize = 97;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut trace_path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_TRACE);
    let mut quick = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--trace" => trace_path = args.next().map(PathBuf::from).context("--trace needs a path")?,
            "--quick" => quick = true,
            _ => anyhow::bail!("usage: forecast-compare [--trace PATH] [--quick]"),
        }
    }
    let trace = trace::Trace::load(&trace_path)?;
    let n = trace.arrivals.len();
    let test_start = n - TEST_MINUTES;
    let history_start = test_start - MINUTES_KEPT;
    let history = trace.as_history(history_start..test_start);
    println!(
        "trace: {} minutes, {} missing; training: the {} minutes before the last {} (the last {} kept)",
        n,
        trace.arrivals.iter().filter(|y| y.is_none()).count(),
        test_start,
        TEST_MINUTES,
        MINUTES_KEPT
    );

    fit_times(&trace, history_start, test_start, &history);

    let every: Vec<usize> = (test_start..n).collect();
    let sampled: Vec<usize> = (test_start..n).step_by(SAMPLE_EVERY).collect();
    let own = || Box::new(Own::fit(trace.first_minute, history_start, &history)) as Box<dyn Method + Send>;
    let mut runs: Vec<(&str, &[usize], Box<dyn Method + Send>)> = vec![
        ("every", &every, own()),
        ("every", &every, Box::new(LastWeek)),
        ("every", &every, Box::new(LastHour)),
        ("every", &every, Box::new(Augurs::new(MINUTES_KEPT, 1440))),
        ("sampled", &sampled, own()),
        ("sampled", &sampled, Box::new(LastWeek)),
        ("sampled", &sampled, Box::new(LastHour)),
    ];
    if !quick {
        runs.push(("every", &every, Box::new(Augurs::new(MINUTES_KEPT, 60))));
        runs.push(("sampled", &sampled, Box::new(Augurs::new(MINUTES_KEPT, 1))));
    }
    // Two at a time: the machine has two cores.
    let results = std::thread::scope(|s| {
        let mut handles = Vec::new();
        let mut results = Vec::new();
        for (label, origins, mut method) in runs {
            let trace = &trace;
            handles.push(s.spawn(move || {
                let errors = evaluate(&trace.arrivals, origins, method.as_mut());
                (label, method.name(), errors, median(method.fit_times()), method.fit_times().len())
            }));
            if handles.len() == 2 {
                results.push(handles.remove(0).join().expect("evaluation thread"));
            }
        }
        results.extend(handles.into_iter().map(|h| h.join().expect("evaluation thread")));
        results
    });
    println!("\n| origins | method | MAE h=1 / 5 / 15 | RMSE | MAPE (>10/min) | bias | fits |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let per_horizon = |errors: &[Errors], f: fn(&Errors) -> f64, unit: &str| {
        errors.iter().map(|e| format!("{:.2}{unit}", f(e))).collect::<Vec<_>>().join(" / ")
    };
    for (label, name, errors, fit, fits) in results {
        let fits = if fits == 0 { "-".to_string() } else { format!("{fits} x {fit:.0?}") };
        println!(
            "| {label} ({}) | {name} | {} | {} | {} | {} | {fits} |",
            errors[0].count(),
            per_horizon(&errors, Errors::mae, ""),
            per_horizon(&errors, Errors::rmse, ""),
            per_horizon(&errors, Errors::mape, "%"),
            per_horizon(&errors, Errors::bias, ""),
        );
    }
    let (floor, n) = centred_reference(&trace.arrivals, test_start, 5);
    println!("\nnot a forecast: the mean of the 5 minutes either side (the minute left out) misses by {floor:.2} (MAE, {n} minutes)");
    Ok(())
}
