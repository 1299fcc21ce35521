//! The grid search behind [`Model::fit`](super::Model::fit).
//!
//! Coordinate-wise: starting from [`Params::SEASONAL`], each parameter in
//! turn (`alpha`, `ar`, `delta`, then `omega` when the weekly profile is
//! used) takes the value of its grid with the smallest mean absolute
//! one-step error over the whole history, the others held; two rounds. About
//! 40 runs over the history instead of the 750 of the full grid; the error
//! surface is smooth enough in practice that the two agree closely. The
//! trend stays off: over minutes a seasonal model's trend mostly chases
//! noise.

use super::{init, observation, Params, Seasons};

const ALPHA: [f64; 6] = [0.01, 0.02, 0.05, 0.1, 0.2, 0.4];
const AR: [f64; 5] = [0.0, 0.2, 0.4, 0.6, 0.8];
const DELTA: [f64; 5] = [0.0, 0.001, 0.003, 0.01, 0.03];
const OMEGA: [f64; 5] = [0.0, 0.001, 0.003, 0.01, 0.03];
const ROUNDS: usize = 2;

/// The parameters with the smallest one-step error found.
pub(super) fn best_params(history: &[u32], first_minute: u64, seasons: Seasons) -> Params {
    let mut best = Params::SEASONAL;
    if seasons < Seasons::DailyWeekly {
        best.omega = 0.0;
    }
    let mut best_error = one_step_mae(history, first_minute, seasons, best);
    type Field = fn(&mut Params) -> &mut f64;
    let mut axes: Vec<(Field, &[f64])> =
        vec![(|p| &mut p.alpha, &ALPHA), (|p| &mut p.ar, &AR), (|p| &mut p.delta, &DELTA)];
    if seasons >= Seasons::DailyWeekly {
        axes.push((|p| &mut p.omega, &OMEGA));
    }
    for _ in 0..ROUNDS {
        for (field, grid) in &axes {
            for &value in *grid {
                let mut candidate = best;
                if *field(&mut candidate) == value {
                    continue;
                }
                *field(&mut candidate) = value;
                let error = one_step_mae(history, first_minute, seasons, candidate);
                if error < best_error {
                    (best, best_error) = (candidate, error);
                }
            }
        }
    }
    best
}

/// The mean absolute one-step error of `params` over `history`.
pub(super) fn one_step_mae(history: &[u32], first_minute: u64, seasons: Seasons, params: Params) -> f64 {
    let mut model = init::initial(history, first_minute, seasons, params);
    let (mut sum, mut count) = (0.0, 0u64);
    for (i, &n) in history.iter().enumerate() {
        let minute = first_minute.saturating_add(i as u64);
        let y = observation(n);
        if let Some(y) = y {
            sum += (y - model.forecast(minute)).abs();
            count += 1;
        }
        model.step(minute, y);
    }
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}
