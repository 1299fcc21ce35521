//! What the forecast learns from: per pool, arrivals per minute and the mean
//! stream duration; and the file they are kept in ([`codec`]).
//!
//! A pool's minutes run without holes from `first_minute`: a minute the
//! daemon was running for and saw nothing arrive in is 0, a minute it was
//! down for is [`MISSING`]. At most [`MINUTES_KEPT`] are kept; older minutes
//! fall off the front.

pub mod codec;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

pub use codec::{decode, encode, HistoryError};

/// Minutes kept per pool: five weeks, so a weekly season has four full
/// periods behind it and the file stays bounded.
pub const MINUTES_KEPT: usize = 5 * 7 * 1440;

/// A minute nobody counted (the daemon was down).
pub const MISSING: u32 = u32::MAX;

/// The mean stream duration is a running mean over the first
/// `DURATION_WINDOW` streams, then an exponentially weighted mean with weight
/// `1 / DURATION_WINDOW` per stream (about the last 1,000 streams count: a
/// few minutes of a busy pool). Durations drift with load: in the Azure LLM
/// trace the answers are longest when requests are fewest (8.4 s against
/// 3.6 s at the peak), so a mean over 10,000 streams (a quarter of an hour
/// there) made Little's law under-predict concurrency by a fifth just when
/// arrivals fell, and the forecast missed what lookahead caught.
pub const DURATION_WINDOW: u64 = 1_000;

/// One pool's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolHistory {
    /// The minute (since the Unix epoch) of `arrivals[0]`.
    pub first_minute: u64,
    /// Arrivals per minute, oldest first; [`MISSING`] where nobody counted.
    pub arrivals: VecDeque<u32>,
    /// The mean stream duration, milliseconds, and how many streams it is
    /// the mean of.
    pub mean_duration_ms: f64,
    pub durations: u64,
}

/// Every pool's history, as the state file holds it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryFile {
    pub pools: BTreeMap<String, PoolHistory>,
}

impl PoolHistory {
    /// A history of `arrivals` from `first_minute` (the last
    /// [`MINUTES_KEPT`] of them), with no durations.
    pub fn from_series(first_minute: u64, arrivals: &[u32]) -> Self {
        let skip = arrivals.len().saturating_sub(MINUTES_KEPT);
        Self {
            first_minute: first_minute + skip as u64,
            arrivals: arrivals[skip..].iter().copied().collect(),
            ..Self::default()
        }
    }

    /// The minute after the last one kept (`first_minute` when empty).
    pub fn end_minute(&self) -> u64 {
        self.first_minute.saturating_add(self.arrivals.len() as u64)
    }

    /// The arrivals of `minute`, if it is kept ([`MISSING`] included).
    pub fn get(&self, minute: u64) -> Option<u32> {
        let i = usize::try_from(minute.checked_sub(self.first_minute)?).ok()?;
        self.arrivals.get(i).copied()
    }

    /// Observed (not missing) minutes kept.
    pub fn observed(&self) -> usize {
        self.arrivals.iter().filter(|&&n| n != MISSING).count()
    }

    /// Records the closed `minute`, with 0 arrivals for any minute between
    /// the last one kept and it. A minute already kept (or older) is left as
    /// it is: false.
    pub fn push(&mut self, minute: u64, arrivals: u32) -> bool {
        if self.arrivals.is_empty() {
            self.first_minute = minute;
        } else if minute < self.end_minute() {
            return false;
        }
        self.pad(minute, 0);
        self.arrivals.push_back(arrivals);
        self.trim();
        true
    }

    /// Marks every minute from the last one kept up to `minute` (exclusive)
    /// as [`MISSING`]: the daemon was down. Nothing to do for an empty
    /// history (it starts when counting starts).
    pub fn mark_missing(&mut self, minute: u64) {
        if !self.arrivals.is_empty() {
            self.pad(minute, MISSING);
            self.trim();
        }
    }

    /// A stream ended after `duration_ms`.
    pub fn record_duration(&mut self, duration_ms: u64) {
        self.durations = self.durations.saturating_add(1);
        let weight = self.durations.min(DURATION_WINDOW) as f64;
        self.mean_duration_ms += (duration_ms as f64 - self.mean_duration_ms) / weight;
    }

    /// Fills up to `minute` (exclusive) with `value`; a gap longer than what
    /// is kept replaces everything.
    fn pad(&mut self, minute: u64, value: u32) {
        let gap = minute.saturating_sub(self.end_minute());
        if gap >= MINUTES_KEPT as u64 {
            self.arrivals.clear();
            self.first_minute = minute - MINUTES_KEPT as u64;
            self.arrivals.resize(MINUTES_KEPT, value);
        } else {
            self.arrivals.extend(std::iter::repeat_n(value, gap as usize));
        }
    }

    fn trim(&mut self) {
        let extra = self.arrivals.len().saturating_sub(MINUTES_KEPT);
        self.arrivals.drain(..extra);
        self.first_minute += extra as u64;
    }
}
