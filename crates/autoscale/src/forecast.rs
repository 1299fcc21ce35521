//! A seasonal model of arrivals per minute.
//!
//! Taylor's double-seasonal Holt-Winters, additive, with an AR(1) correction
//! of the one-step error (J. W. Taylor, "Short-term electricity demand
//! forecasting using double seasonal exponential smoothing", 2003). For the
//! minute `t`, with `l` the level, `b` a damped trend (damping `phi`), `d` the
//! daily and `w` the weekly profile, and `r` the last residual:
//!
//! ```text
//! base(t)   = l + phi*b + d(t) + w(t)
//! e         = y(t) - base(t)                  the residual
//! l        <- l + phi*b + a*e                 a: alpha, or more (below)
//! b        <- phi*b + beta*e
//! d(t)     <- d(t) + delta*e                  spread over two buckets
//! w(t)     <- w(t) + omega*e                  spread over two buckets
//! r        <- e
//! yhat(t+k) = l + b*(phi + .. + phi^k) + d(t+k) + w(t+k) + ar^k*r
//! ```
//!
//! The profiles are kept per bucket, [`DAILY_BUCKET`] minutes for the day and
//! [`WEEKLY_BUCKET`] minutes for the week, and read by linear interpolation
//! between the buckets' centres: a minute's error moves the two buckets
//! around it in proportion to how close it is to each. Per-minute counts are
//! noisy (Poisson at a few dozen a minute, burstier in practice), and a
//! profile of 10,080 minutes learnt from five weeks would be mostly noise;
//! buckets pool the evidence and interpolation keeps the forecast smooth. A
//! minute's place in the day and the week is its absolute minute modulo
//! 1,440 and 10,080, so any two models of the same clock agree on where a
//! day starts.
//!
//! A level fitted to a steady history moves slowly (`alpha` of 0.01 is a
//! time constant of 100 minutes), too slowly to follow a step in demand.
//! Trigg and Leach's tracking signal, `|mean(e)| / mean(|e|)` over about the
//! last 20 minutes, is near 0 while the errors are noise and goes to 1 when
//! they keep one sign; above [`SIGNAL_FLOOR`] it raises the level's gain
//! `a` towards [`MAX_ADAPTIVE_ALPHA`], so a step is followed within tens of
//! minutes whatever `alpha` is.
//!
//! The seasons used depend on how much history there is ([`Seasons`]): less
//! than a day of observed minutes gives a level with a damped trend, less
//! than a week the daily profile only, more both profiles.
//!
//! Fitting ([`Model::fit`]): the profiles start from bucket means of the first
//! two weeks (the first week when there is less), then the model runs over
//! the whole history. With a day or more of history the smoothing parameters
//! are chosen by a small coordinate-wise grid search on the mean absolute
//! one-step error over the history (see `search`); shorter histories use
//! fixed defaults ([`Params::SHORT`]).
//!
//! Missing minutes (the daemon was down) are skipped: nothing is learnt, the
//! level follows its trend and the residual decays as its forecast would.
//! [`Model::update`] is O(1) per minute, [`Model::forecast`] O(1) per minute
//! ahead, and a forecast is never negative.

mod init;
mod search;
#[cfg(test)]
mod tests;

/// Minutes in a day.
pub const DAY: u64 = 1440;
/// Minutes in a week.
pub const WEEK: u64 = 7 * DAY;
/// Minutes per bucket of the daily profile.
pub const DAILY_BUCKET: u64 = 15;
/// Minutes per bucket of the weekly profile.
pub const WEEKLY_BUCKET: u64 = 60;

/// The tracking signal's smoothing per minute (about 20 minutes).
const TRACKING: f64 = 0.05;
/// Below this tracking signal the level's gain is `alpha`.
pub const SIGNAL_FLOOR: f64 = 0.5;
/// The level's gain at a tracking signal of 1 (when `alpha` is lower).
pub const MAX_ADAPTIVE_ALPHA: f64 = 0.1;

/// Which seasonal profiles a model keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Seasons {
    /// Less than a day of history: a level and a damped trend.
    None,
    /// Less than a week: the daily profile.
    Daily,
    /// The daily and the weekly profile.
    DailyWeekly,
}

impl Seasons {
    /// The seasons `observed` minutes of history support.
    pub fn for_observed(observed: u64) -> Self {
        match observed {
            n if n >= WEEK => Self::DailyWeekly,
            n if n >= DAY => Self::Daily,
            _ => Self::None,
        }
    }
}

/// Smoothing parameters, each in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Level.
    pub alpha: f64,
    /// Trend.
    pub beta: f64,
    /// Trend damping per minute.
    pub phi: f64,
    /// Daily profile, per minute (a bucket gets about
    /// `DAILY_BUCKET * delta` of its error per day).
    pub delta: f64,
    /// Weekly profile, per minute.
    pub omega: f64,
    /// How much of the last residual carries into the next minute.
    pub ar: f64,
}

impl Params {
    /// Less than a day of history: a quick level and a short, damped trend
    /// (it adds at most `phi / (1 - phi)` = 9 minutes of slope).
    pub const SHORT: Self = Self { alpha: 0.2, beta: 0.02, phi: 0.9, delta: 0.0, omega: 0.0, ar: 0.3 };
    /// Where the grid search starts with a day or more of history.
    pub const SEASONAL: Self = Self { alpha: 0.05, beta: 0.0, phi: 0.0, delta: 0.005, omega: 0.005, ar: 0.4 };
}

/// The fitted model; [`update`](Self::update) it with each closed minute.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    params: Params,
    seasons: Seasons,
    level: f64,
    trend: f64,
    /// Daily profile per bucket (empty below [`Seasons::Daily`]).
    daily: Vec<f64>,
    /// Weekly profile per bucket (empty below [`Seasons::DailyWeekly`]).
    weekly: Vec<f64>,
    /// The last residual from the base forecast, decayed over missing minutes.
    residual: f64,
    /// The minute [`update`](Self::update) expects next.
    next: u64,
    /// Smoothed residual and smoothed absolute residual: the tracking
    /// signal is their ratio.
    mean_error: f64,
    mean_abs_error: f64,
    /// Observed minutes learnt from.
    observed: u64,
}

/// A history value as an observation: [`MISSING`](crate::history::MISSING)
/// is none.
pub fn observation(n: u32) -> Option<f64> {
    (n != crate::history::MISSING).then_some(f64::from(n))
}

impl Model {
    /// Fits a model to `history` (arrivals per minute from `first_minute`,
    /// [`MISSING`](crate::history::MISSING) allowed), choosing its seasons
    /// by the history's length and its parameters by a grid search when
    /// there is a day or more of it.
    pub fn fit(history: &[u32], first_minute: u64) -> Self {
        let seasons = Seasons::for_observed(init::observed(history));
        let params = match seasons {
            Seasons::None => Params::SHORT,
            _ => search::best_params(history, first_minute, seasons),
        };
        Self::fit_with(history, first_minute, seasons, params)
    }

    /// Fits a model with the given seasons and parameters, no search.
    pub fn fit_with(history: &[u32], first_minute: u64, seasons: Seasons, params: Params) -> Self {
        let mut model = init::initial(history, first_minute, seasons, params);
        for (i, &n) in history.iter().enumerate() {
            model.step(first_minute.saturating_add(i as u64), observation(n));
        }
        model
    }

    pub fn params(&self) -> Params {
        self.params
    }

    pub fn seasons(&self) -> Seasons {
        self.seasons
    }

    /// The minute [`update`](Self::update) expects next: one after the last
    /// one learnt.
    pub fn next_minute(&self) -> u64 {
        self.next
    }

    /// Observed minutes learnt from, in the fit and since.
    pub fn observed(&self) -> u64 {
        self.observed
    }

    /// Learns `minute`'s arrivals (`None`: missing). Minutes between the last
    /// one learnt and `minute` count as missing; a minute already learnt is
    /// ignored. O(1).
    pub fn update(&mut self, minute: u64, arrivals: Option<f64>) {
        if minute < self.next {
            return;
        }
        self.skip_to(minute);
        self.step(minute, arrivals);
    }

    /// Treats every minute from the next expected one up to `minute`
    /// (exclusive) as missing, in closed form.
    pub fn skip_to(&mut self, minute: u64) {
        let Some(gap) = minute.checked_sub(self.next).filter(|&g| g > 0) else { return };
        let p = &self.params;
        self.level += self.trend * damped_sum(p.phi, gap);
        self.trend *= powu(p.phi, gap);
        self.residual *= powu(p.ar, gap);
        self.next = minute;
    }

    /// The arrivals expected in `minute` (absolute). Minutes already learnt
    /// are forecast as if one step ahead. Never negative. O(1).
    pub fn forecast(&self, minute: u64) -> f64 {
        let ahead = minute.saturating_add(1).saturating_sub(self.next).max(1);
        let p = &self.params;
        let y = self.level
            + self.trend * damped_sum(p.phi, ahead)
            + self.seasonal(minute)
            + powu(p.ar, ahead) * self.residual;
        if y.is_finite() {
            y.max(0.0)
        } else {
            0.0
        }
    }

    /// One minute, `minute == self.next`.
    fn step(&mut self, minute: u64, arrivals: Option<f64>) {
        let p = self.params;
        let level = self.level + p.phi * self.trend;
        let base = level + self.seasonal(minute);
        match arrivals.filter(|y| y.is_finite() && *y >= 0.0) {
            Some(y) => {
                let e = y - base;
                self.level = level + self.level_gain(e) * e;
                self.trend = p.phi * self.trend + p.beta * e;
                if !self.daily.is_empty() {
                    spread(&mut self.daily, DAILY_BUCKET, minute % DAY, p.delta * e);
                }
                if !self.weekly.is_empty() {
                    spread(&mut self.weekly, WEEKLY_BUCKET, minute % WEEK, p.omega * e);
                }
                self.residual = e;
                self.observed += 1;
            }
            None => {
                self.level = level;
                self.trend *= p.phi;
                self.residual *= p.ar;
            }
        }
        self.next = minute.saturating_add(1);
    }

    /// `alpha`, raised by the tracking signal after `e`.
    fn level_gain(&mut self, e: f64) -> f64 {
        self.mean_error += TRACKING * (e - self.mean_error);
        self.mean_abs_error += TRACKING * (e.abs() - self.mean_abs_error);
        if self.mean_abs_error <= 0.0 {
            return self.params.alpha;
        }
        let signal = (self.mean_error / self.mean_abs_error).abs();
        let raised = (signal - SIGNAL_FLOOR) / (1.0 - SIGNAL_FLOOR) * MAX_ADAPTIVE_ALPHA;
        self.params.alpha.max(raised)
    }

    /// The daily and weekly profiles at `minute`.
    fn seasonal(&self, minute: u64) -> f64 {
        let mut s = 0.0;
        if !self.daily.is_empty() {
            s += interpolate(&self.daily, DAILY_BUCKET, minute % DAY);
        }
        if !self.weekly.is_empty() {
            s += interpolate(&self.weekly, WEEKLY_BUCKET, minute % WEEK);
        }
        s
    }
}

/// The two buckets around `offset` (minutes into the period) and the weight
/// of the second: buckets are centred at `bucket * (j + 0.5)`.
fn around(len: usize, bucket: u64, offset: u64) -> (usize, usize, f64) {
    let pos = (offset as f64 + 0.5) / bucket as f64 - 0.5;
    let below = pos.floor();
    let frac = pos - below;
    let j0 = (below as i64).rem_euclid(len as i64) as usize;
    (j0, (j0 + 1) % len, frac)
}

fn interpolate(profile: &[f64], bucket: u64, offset: u64) -> f64 {
    let (j0, j1, f) = around(profile.len(), bucket, offset);
    profile[j0] * (1.0 - f) + profile[j1] * f
}

fn spread(profile: &mut [f64], bucket: u64, offset: u64, amount: f64) {
    let (j0, j1, f) = around(profile.len(), bucket, offset);
    profile[j0] += amount * (1.0 - f);
    profile[j1] += amount * f;
}

/// `x^n` for any `n` (large ones saturate to the limit).
fn powu(x: f64, n: u64) -> f64 {
    x.powi(n.min(i32::MAX as u64) as i32)
}

/// `phi + phi^2 + .. + phi^n`.
fn damped_sum(phi: f64, n: u64) -> f64 {
    if phi >= 1.0 {
        n as f64
    } else {
        phi * (1.0 - powu(phi, n)) / (1.0 - phi)
    }
}
