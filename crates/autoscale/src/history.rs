//! What the forecast learns from: per pool, arrivals per minute and the mean
//! stream duration; and the file they are kept in.
//!
//! (Placeholder API; the file format is filled in with the model.)

use std::collections::{BTreeMap, VecDeque};

/// Minutes kept per pool: five weeks, so a weekly season has four full
/// periods behind it and the file stays bounded.
pub const MINUTES_KEPT: usize = 5 * 7 * 1440;

/// A minute nobody counted (the daemon was down).
pub const MISSING: u32 = u32::MAX;

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
