//! Scoring: errors per horizon over rolling origins, fit times, and a
//! reference that is not a forecast.

use std::time::{Duration, Instant};

use crate::methods::{Augurs, Method, Own, MAX_HORIZON};
use crate::metrics::Errors;
use crate::trace::Trace;
use streamlet_autoscale::history::MINUTES_KEPT;

/// Minutes ahead scored: `h` is the minute `origin + h - 1`.
pub const HORIZONS: [usize; 3] = [1, 5, 15];
const FIT_REPEATS: usize = 5;

/// Errors at each of [`HORIZONS`] over `origins`; `h` minutes ahead is the
/// minute `origin + h - 1`, scored where it was observed.
pub fn evaluate(y: &[Option<f64>], origins: &[usize], method: &mut dyn Method) -> Vec<Errors> {
    let mut errors = vec![Errors::default(); HORIZONS.len()];
    for &o in origins {
        let forecasts = method.forecast(&y[..o]);
        for (e, &h) in errors.iter_mut().zip(&HORIZONS) {
            debug_assert!(h <= MAX_HORIZON);
            if let Some(Some(actual)) = y.get(o + h - 1) {
                e.add(forecasts[h - 1], *actual);
            }
        }
    }
    errors
}

/// Fit times on the training window, one fit at a time.
pub fn fit_times(trace: &Trace, history_start: usize, test_start: usize, history: &[u32]) {
    let mut own = Vec::new();
    let mut augurs = Vec::new();
    for _ in 0..FIT_REPEATS {
        let start = Instant::now();
        std::hint::black_box(Own::fit(trace.first_minute, history_start, history));
        own.push(start.elapsed());
        let mut a = Augurs::new(MINUTES_KEPT, 1440);
        a.forecast(&trace.arrivals[..test_start]);
        augurs.extend_from_slice(a.fit_times());
    }
    println!(
        "fit on {} minutes, median of {FIT_REPEATS}: own {:.1?} (min {:.1?}), augurs MSTL+AutoETS {:.1?} (min {:.1?})",
        history.len(),
        median(&own),
        own.iter().min().unwrap(),
        median(&augurs),
        augurs.iter().min().unwrap()
    );
}

/// How far each observed test minute is from the mean of the `w` minutes
/// either side of it: a floor for what any forecast can hope for.
pub fn centred_reference(y: &[Option<f64>], from: usize, w: usize) -> (f64, u64) {
    let (mut sum, mut n) = (0.0, 0u64);
    for t in from..y.len() - w {
        let Some(actual) = y[t] else { continue };
        let around: Vec<f64> =
            y[t - w..=t + w].iter().enumerate().filter(|(i, _)| *i != w).filter_map(|(_, v)| *v).collect();
        if !around.is_empty() {
            sum += (actual - around.iter().sum::<f64>() / around.len() as f64).abs();
            n += 1;
        }
    }
    (sum / n as f64, n)
}

pub fn median(times: &[Duration]) -> Duration {
    let mut t = times.to_vec();
    t.sort();
    t.get(t.len() / 2).copied().unwrap_or_default()
}
