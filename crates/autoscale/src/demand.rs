//! One pool's demand: its history, and the model that forecasts it.
//!
//! The daemon and the simulator drive a [`Demand`] the same way: every
//! arrival, every ended stream, and a [`tick`](Demand::tick) that closes
//! finished minutes into the history and the model; they ask it for the
//! arrivals and the concurrent streams expected over the next `lead`.
//!
//! - The model is fitted once, when the `Demand` is made, then learns each
//!   closed minute in O(1). It is fitted again only when the history grows
//!   into more seasons than the model has (a day, then a week of observed
//!   minutes: see [`Seasons`]); that is checked once per day of history.
//! - Minutes the daemon was down for are missing, not quiet: [`resume`]
//!   marks the time between the history's end and now so, as does the first
//!   tick after [`new`]. A jump in time while running (a tick after a long
//!   pause) closes the minutes in between with no arrivals.
//! - The predictions are cheap: the forecasts of the next
//!   [`CACHED_MINUTES`] and their running maximum are computed once per
//!   closed minute, so a prediction within that lead is O(1). A longer lead
//!   costs one forecast per minute, and is cut to a day.
//! - The current minute is partly known: for it, the arrivals counted so far
//!   plus the forecast's share of what is left of the minute.
//!
//! [`resume`]: Demand::resume
//! [`new`]: Demand::new

#[cfg(test)]
mod tests;

use crate::forecast::{Model, Seasons, DAY};
use crate::history::{PoolHistory, DURATION_WINDOW, MISSING};

/// Milliseconds in a minute.
const MINUTE_MS: u64 = 60_000;
/// Minutes ahead whose forecasts are kept between closed minutes.
pub const CACHED_MINUTES: usize = 60;
/// The longest lead a prediction looks over, minutes.
pub const MAX_LEAD_MINUTES: u64 = DAY;

/// One pool's history and forecast, fed with its arrivals and ended streams.
#[derive(Debug, Clone)]
pub struct Demand {
    history: PoolHistory,
    model: Model,
    /// The minute being counted and its arrivals so far; none before the
    /// first tick after [`new`](Self::new).
    current: Option<(u64, u32)>,
    /// `ahead[i]`: the forecast of the model's next minute plus `i`.
    ahead: Vec<f64>,
    /// `peak[i]`: the largest of `ahead[1..=i]` (`peak[0]` is 0).
    peak: Vec<f64>,
    /// The history's end minute at which to check its seasons again.
    seasons_check: u64,
    /// The history has grown into more seasons than the model knows: a
    /// refit is due (see [`refit_job`](Self::refit_job)).
    refit_due: bool,
}

/// A refit to run away from the caller's lock: fit a [`Model`] on the
/// series with [`RefitJob::fit`] (a grid search: up to about 0.1 s on five
/// weeks), then hand it to [`Demand::install`].
#[derive(Debug, Clone)]
pub struct RefitJob {
    series: Vec<u32>,
    first_minute: u64,
}

impl RefitJob {
    pub fn fit(self) -> Model {
        Model::fit(&self.series, self.first_minute)
    }
}

impl Demand {
    /// Demand that goes on from `history` (empty for a new pool). The time
    /// between the history's end and the first tick counts as missing.
    pub fn new(mut history: PoolHistory) -> Self {
        let model = Model::fit(history.arrivals.make_contiguous(), history.first_minute);
        let mut demand = Self {
            model,
            seasons_check: history.end_minute().saturating_add(DAY),
            refit_due: false,
            history,
            current: None,
            ahead: Vec::with_capacity(CACHED_MINUTES),
            peak: Vec::with_capacity(CACHED_MINUTES),
        };
        demand.refresh();
        demand
    }

    /// Demand after a daemon restart at `now_ms`: the minutes between the
    /// history's end and now become missing, and counting starts now.
    pub fn resume(mut history: PoolHistory, now_ms: u64) -> Self {
        let minute = now_ms / MINUTE_MS;
        history.mark_missing(minute);
        let mut demand = Self::new(history);
        demand.start(minute);
        demand
    }

    /// Demand trained on `arrivals` per minute from `first_minute`
    /// ([`MISSING`] allowed; the last five weeks
    /// are kept), with streams lasting `mean_duration_ms` on average; that
    /// mean counts as the mean of the series' arrivals (0: none known yet).
    pub fn from_series(first_minute: u64, arrivals: &[u32], mean_duration_ms: f64) -> Self {
        let mut history = PoolHistory::from_series(first_minute, arrivals);
        if mean_duration_ms.is_finite() && mean_duration_ms > 0.0 {
            let streams: u64 = history.arrivals.iter().filter(|&&n| n != MISSING).map(|&n| u64::from(n)).sum();
            history.mean_duration_ms = mean_duration_ms;
            history.durations = streams.clamp(1, DURATION_WINDOW);
        }
        Self::new(history)
    }

    /// A stream arrived at `now_ms` (milliseconds since the Unix epoch, or
    /// the trace's clock in the simulator). An arrival stamped before the
    /// minute being counted counts in it.
    pub fn arrival(&mut self, now_ms: u64) {
        self.tick(now_ms);
        if let Some((_, n)) = &mut self.current {
            *n = n.saturating_add(1);
        }
    }

    /// A stream ended after `duration_ms`.
    pub fn ended(&mut self, duration_ms: u64) {
        self.history.record_duration(duration_ms);
    }

    /// Closes every minute before `now_ms`'s into the history and the
    /// model; minutes skipped over close with no arrivals. True if one
    /// closed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let minute = now_ms / MINUTE_MS;
        let Some((counted, n)) = self.current else {
            self.history.mark_missing(minute);
            self.start(minute);
            return false;
        };
        if minute <= counted {
            return false;
        }
        self.history.push(counted, n);
        self.model.update(counted, Some(f64::from(n)));
        if minute - 1 > counted {
            self.history.push(minute - 1, 0);
            // Older quiet minutes than the history keeps are skipped.
            let kept = crate::history::MINUTES_KEPT as u64;
            for quiet in (counted + 1).max(minute.saturating_sub(kept))..minute {
                self.model.update(quiet, Some(0.0));
            }
        }
        self.current = Some((minute, 0));
        if self.history.end_minute() >= self.seasons_check {
            self.seasons_check = self.history.end_minute().saturating_add(DAY);
            if Seasons::for_observed(self.history.observed() as u64) > self.model.seasons() {
                self.refit_due = true;
            }
        }
        self.refresh();
        true
    }

    /// Arrivals per minute expected over `[now, now + lead]`: the largest
    /// forecast of a minute in it, where the current minute's is what has
    /// arrived in it so far plus the forecast's share of the rest. None
    /// until the model has seen a minute.
    pub fn predicted_arrivals(&self, now_ms: u64, lead_ms: u64) -> Option<f64> {
        if self.model.observed() == 0 {
            return None;
        }
        let next = self.model.next_minute();
        let first = (now_ms / MINUTE_MS).max(next);
        let last = (now_ms.saturating_add(lead_ms) / MINUTE_MS).clamp(first, first.saturating_add(MAX_LEAD_MINUTES));
        let mut best = match self.current {
            Some((counted, n)) if counted == first => {
                let left = 1.0 - (now_ms.saturating_sub(counted * MINUTE_MS)) as f64 / MINUTE_MS as f64;
                f64::from(n) + self.forecast(first) * left.clamp(0.0, 1.0)
            }
            _ => self.forecast(first),
        };
        let mut from = first + 1;
        if first == next && last > first {
            let cached = ((last - next) as usize).min(self.peak.len().saturating_sub(1));
            best = best.max(self.peak.get(cached).copied().unwrap_or(0.0));
            from = next + cached as u64 + 1;
        }
        for minute in from..=last {
            best = best.max(self.forecast(minute));
        }
        Some(best)
    }

    /// Concurrent streams expected over `[now, now + lead]`: arrivals per
    /// minute times the mean duration (Little's law). None until a stream
    /// has ended.
    pub fn predicted_concurrency(&self, now_ms: u64, lead_ms: u64) -> Option<f64> {
        let rate = self.predicted_arrivals(now_ms, lead_ms)?;
        (self.history.durations > 0).then(|| rate * self.history.mean_duration_ms / MINUTE_MS as f64)
    }

    pub fn history(&self) -> &PoolHistory {
        &self.history
    }

    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Counting starts at `minute`.
    fn start(&mut self, minute: u64) {
        self.model.skip_to(minute);
        self.current = Some((minute, 0));
        self.refresh();
    }

    /// The refit the history asks for, if one is due: the model goes on as
    /// it is until [`install`](Self::install) swaps the new one in.
    pub fn refit_job(&mut self) -> Option<RefitJob> {
        if !std::mem::take(&mut self.refit_due) {
            return None;
        }
        let first_minute = self.history.first_minute;
        Some(RefitJob { series: self.history.arrivals.make_contiguous().to_vec(), first_minute })
    }

    /// Runs the due refit here and now (the simulator, which has no lock to
    /// keep short).
    pub fn refit_now(&mut self) {
        if let Some(job) = self.refit_job() {
            self.install(job.fit());
        }
    }

    /// Swaps in a model fitted on an earlier copy of the history: it is
    /// brought up to date with the minutes closed since that copy.
    pub fn install(&mut self, mut model: Model) {
        let end = self.history.end_minute();
        let from = model.next_minute().max(self.history.first_minute);
        for minute in from..end {
            model.update(minute, self.history.get(minute).and_then(crate::forecast::observation));
        }
        if model.next_minute() < end {
            model.skip_to(end);
        }
        self.model = model;
        self.refresh();
    }

    fn forecast(&self, minute: u64) -> f64 {
        let cached = minute.checked_sub(self.model.next_minute()).and_then(|i| self.ahead.get(i as usize));
        cached.copied().unwrap_or_else(|| self.model.forecast(minute))
    }

    /// The forecasts of the next minutes and their running maximum.
    fn refresh(&mut self) {
        let next = self.model.next_minute();
        self.ahead.clear();
        self.ahead.extend((0..CACHED_MINUTES as u64).map(|i| self.model.forecast(next + i)));
        self.peak.clear();
        let mut peak = 0.0f64;
        for (i, &f) in self.ahead.iter().enumerate() {
            if i > 0 {
                peak = peak.max(f);
            }
            self.peak.push(peak);
        }
    }
}
