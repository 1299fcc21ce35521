//! The forecasters compared. Each is asked, at an origin `o` (every minute
//! before `o` known, none after), for the minutes `o .. o + MAX_HORIZON`;
//! it sees only the minutes before `o`.

use std::time::{Duration, Instant};

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::prelude::*;
use streamlet_autoscale::forecast::Model;

/// Horizons up to this many minutes are forecast at every origin.
pub const MAX_HORIZON: usize = 15;

pub type Forecasts = [f64; MAX_HORIZON];

pub trait Method {
    fn name(&self) -> String;
    /// Forecasts at origin `past.len()`; `past` is every minute from the
    /// trace's first.
    fn forecast(&mut self, past: &[Option<f64>]) -> Forecasts;
    /// How long each fit took.
    fn fit_times(&self) -> &[Duration];
}

/// The autoscaler's model: fitted once on the training minutes it would
/// have kept, then updated minute by minute.
pub struct Own {
    first_minute: u64,
    model: Model,
    fit_times: Vec<Duration>,
}

impl Own {
    /// Fitted on `history[..]` (the last five weeks before `train_end`).
    pub fn fit(first_minute: u64, history_start: usize, history: &[u32]) -> Self {
        let start = Instant::now();
        let model = Model::fit(history, first_minute + history_start as u64);
        let fit_times = vec![start.elapsed()];
        Self { first_minute, model, fit_times }
    }
}

impl Method for Own {
    fn name(&self) -> String {
        let p = self.model.params();
        format!("own Holt-Winters (a={} d={} w={} ar={})", p.alpha, p.delta, p.omega, p.ar)
    }

    fn forecast(&mut self, past: &[Option<f64>]) -> Forecasts {
        let origin = self.first_minute + past.len() as u64;
        let from = (self.model.next_minute() - self.first_minute) as usize;
        for (i, y) in past.iter().enumerate().skip(from) {
            self.model.update(self.first_minute + i as u64, *y);
        }
        std::array::from_fn(|h| self.model.forecast(origin + h as u64))
    }

    fn fit_times(&self) -> &[Duration] {
        &self.fit_times
    }
}

/// The same minute a week before (the last hour's mean where that is
/// missing).
pub struct LastWeek;

impl Method for LastWeek {
    fn name(&self) -> String {
        "naive: same minute last week".into()
    }

    fn forecast(&mut self, past: &[Option<f64>]) -> Forecasts {
        let fallback = last_hour_mean(past);
        std::array::from_fn(|h| past.get((past.len() + h).wrapping_sub(10_080)).copied().flatten().unwrap_or(fallback))
    }

    fn fit_times(&self) -> &[Duration] {
        &[]
    }
}

/// The mean of the last hour's observed minutes, for every horizon.
pub struct LastHour;

impl Method for LastHour {
    fn name(&self) -> String {
        "naive: last hour's mean".into()
    }

    fn forecast(&mut self, past: &[Option<f64>]) -> Forecasts {
        [last_hour_mean(past); MAX_HORIZON]
    }

    fn fit_times(&self) -> &[Duration] {
        &[]
    }
}

fn last_hour_mean(past: &[Option<f64>]) -> f64 {
    let hour = past[past.len().saturating_sub(60)..].iter().flatten();
    let (sum, n) = hour.fold((0.0, 0), |(s, n), y| (s + y, n + 1));
    if n == 0 {
        0.0
    } else {
        sum / f64::from(n)
    }
}

/// augurs' MSTL (periods 1,440 and 10,080) with AutoETS on the
/// deseasonalised series, fitted on the trailing `window` minutes every
/// `refit_every` origins; between fits, the forecast of the last fit at the
/// right offset.
pub struct Augurs {
    window: usize,
    refit_every: usize,
    fitted_at: Option<usize>,
    points: Vec<f64>,
    fit_times: Vec<Duration>,
}

impl Augurs {
    pub fn new(window: usize, refit_every: usize) -> Self {
        Self { window, refit_every, fitted_at: None, points: Vec::new(), fit_times: Vec::new() }
    }
}

impl Method for Augurs {
    fn name(&self) -> String {
        match self.refit_every {
            1 => "augurs MSTL+AutoETS, refit at each origin".into(),
            60 => "augurs MSTL+AutoETS, refit hourly".into(),
            1440 => "augurs MSTL+AutoETS, refit daily".into(),
            n => format!("augurs MSTL+AutoETS, refit every {n} min"),
        }
    }

    fn forecast(&mut self, past: &[Option<f64>]) -> Forecasts {
        let origin = past.len();
        if self.fitted_at.is_none_or(|at| origin - at >= self.refit_every) {
            let y = filled(&past[origin - self.window..]);
            let start = Instant::now();
            let mstl = MSTLModel::new(vec![1440, 10_080], AutoETS::non_seasonal().into_trend_model());
            let fit = mstl.fit(&y).expect("MSTL fit");
            self.points = fit.predict(self.refit_every + MAX_HORIZON, None).expect("MSTL predict").point;
            self.fit_times.push(start.elapsed());
            self.fitted_at = Some(origin);
        }
        let offset = origin - self.fitted_at.unwrap_or(origin);
        std::array::from_fn(|h| self.points[offset + h].max(0.0))
    }

    fn fit_times(&self) -> &[Duration] {
        &self.fit_times
    }
}

/// augurs takes no missing values: a missing minute is filled with the
/// same minute a week before (itself filled if need be), or a day before,
/// or the last value.
pub fn filled(y: &[Option<f64>]) -> Vec<f64> {
    let mut out: Vec<f64> = Vec::with_capacity(y.len());
    for (i, v) in y.iter().enumerate() {
        let fill = || {
            let back = |lag: usize| i.checked_sub(lag).map(|j| out[j]);
            back(10_080).or_else(|| back(1440)).or_else(|| out.last().copied()).unwrap_or(0.0)
        };
        let v = v.unwrap_or_else(fill);
        out.push(v);
    }
    out
}
