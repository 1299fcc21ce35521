//! One pool's demand: its history, and the model that forecasts it.
//!
//! (Placeholder: a one-hour moving average until the seasonal model lands.)

use crate::history::PoolHistory;

/// Milliseconds in a minute.
const MINUTE_MS: u64 = 60_000;

#[derive(Debug, Clone)]
pub struct Demand {
    history: PoolHistory,
    /// The minute being counted and its arrivals so far.
    current: Option<(u64, u32)>,
}

impl Demand {
    /// Demand that goes on from `history` (empty for a new pool).
    pub fn new(history: PoolHistory) -> Self {
        Self { history, current: None }
    }

    /// A stream arrived at `now_ms` (milliseconds since the Unix epoch, or
    /// the trace's clock in the simulator).
    pub fn arrival(&mut self, now_ms: u64) {
        self.tick(now_ms);
        let minute = now_ms / MINUTE_MS;
        match &mut self.current {
            Some((m, n)) if *m == minute => *n += 1,
            _ => self.current = Some((minute, 1)),
        }
    }

    /// A stream ended after `duration_ms`.
    pub fn ended(&mut self, duration_ms: u64) {
        let h = &mut self.history;
        h.durations += 1;
        h.mean_duration_ms += (duration_ms as f64 - h.mean_duration_ms) / h.durations.min(10_000) as f64;
    }

    /// Closes every minute before `now_ms`'s into the history and the
    /// model. True if one closed.
    pub fn tick(&mut self, now_ms: u64) -> bool {
        let minute = now_ms / MINUTE_MS;
        let Some((m, n)) = self.current else {
            self.current = Some((minute, 0));
            return false;
        };
        if m >= minute {
            return false;
        }
        let h = &mut self.history;
        if h.arrivals.is_empty() {
            h.first_minute = m;
        }
        let next = h.first_minute + h.arrivals.len() as u64;
        for _ in next..m {
            h.arrivals.push_back(0);
        }
        h.arrivals.push_back(n);
        for _ in m + 1..minute {
            h.arrivals.push_back(0);
        }
        while h.arrivals.len() > crate::history::MINUTES_KEPT {
            h.arrivals.pop_front();
            h.first_minute += 1;
        }
        self.current = Some((minute, 0));
        true
    }

    /// Arrivals per minute expected over `[now, now + lead]` (the largest
    /// minute of the window), if the model has anything to go on.
    pub fn predicted_arrivals(&self, _now_ms: u64, _lead_ms: u64) -> Option<f64> {
        let recent: Vec<u32> =
            self.history.arrivals.iter().rev().take(60).copied().filter(|&n| n != crate::history::MISSING).collect();
        (!recent.is_empty()).then(|| recent.iter().map(|&n| f64::from(n)).sum::<f64>() / recent.len() as f64)
    }

    /// Concurrent streams expected over `[now, now + lead]`: arrivals per
    /// minute times the mean duration (Little's law).
    pub fn predicted_concurrency(&self, now_ms: u64, lead_ms: u64) -> Option<f64> {
        let rate = self.predicted_arrivals(now_ms, lead_ms)?;
        (self.history.durations > 0).then(|| rate * self.history.mean_duration_ms / MINUTE_MS as f64)
    }

    pub fn history(&self) -> &PoolHistory {
        &self.history
    }
}
