//! Replays a trace through the daemon's placement, quota and scaling code on a virtual clock.
//!
//! A trace ([`trace`]) becomes a [`Workload`]: the streams to play, each
//! with its arrival and duration, and the minutes before them as the pool's
//! demand history (the forecast trains on them; no stream of theirs is
//! played). [`run`] plays a workload against one pool under one [`Policy`]
//! with the pool's own placement policy
//! ([`PoolConfig::placement`](streamlet_config::PoolConfig::placement)), the
//! quota allocator, the [`Scaler`](streamlet_autoscale::Scaler) and the
//! [`Demand`](streamlet_autoscale::Demand) forecast, driven as the daemon
//! drives them, and counts what clients would have seen over the evaluation
//! window: streams admitted, cold waits, rejections, and the streamlets paid
//! for ([`Totals`]), with the scaler's decisions and a minute-by-minute
//! series ([`Outcome`]) that [`csv`] and [`svg`] write out.
//!
//! It is `streamletctl simulate`'s, and needs no daemon: it takes the pool
//! from the configuration ([`streamlet_config`]) and drives the same pure
//! code the daemon does (`streamlet-balance`, `streamlet-autoscale`).
//!
//! ```
//! use streamlet_config::Config;
//! use streamlet_simulate::{self as simulate, Options, Policy, Trace, Workload};
//!
//! let config = Config::embedded();
//! let pool = &config.pools["echo"];
//! let trace = Trace::parse("at_ms,duration_ms\n0,5000\n100,5000\n", "two.csv").unwrap();
//! let options = Options::default();
//! let workload = Workload::new(&trace, &options).unwrap();
//! let outcome = simulate::run(pool, &config, Policy::Lookahead, &workload, &options);
//! assert_eq!(outcome.totals.admitted, 2);
//! ```
//!
//! The daemon asks a pool's scaler after every open (placed or not), every
//! stream's end, every streamlet that becomes ready, and on its 50 ms tick,
//! which first closes finished minutes into the demand and refreshes the
//! forecast (over `max(lead, spawn time)`). The simulator does not run
//! every tick, which would be twelve million a week: before each event it
//! takes the forecast as the last tick would have left it, and it runs a
//! tick only at the instants a time-based rule can change its answer (a
//! streamlet's idle grace running out, a minute boundary, the lead reaching
//! a new minute, a waiting open's deadline, and, while the forecast alone
//! holds an idle streamlet, every tick), rounded up to the 50 ms grid. So
//! its decisions are the daemon's. The event loop is described in
//! `engine.rs`.

mod chart;
mod clock;
mod engine;
mod pinned;
pub mod trace;
mod workload;

use std::fmt;
use std::str::FromStr;

pub use chart::{csv, format_streamlet_time, svg};
pub use clock::{format_duration, format_minute, format_span};
pub use engine::run;
pub use pinned::{pinned, Pinned};
pub use trace::{Trace, TraceError};
pub use workload::Workload;

/// How the pool is scaled, whatever the configuration's `autoscale.mode`.
/// Every other rule (min, max, min_free, streams_per_worker, idle grace,
/// headroom, lead) is the pool's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Policy {
    /// min and min_free only (`lookahead = false`, mode `reactive`).
    Reactive,
    /// Plus a spawn when no streamlet has two free slots (mode `reactive`).
    Lookahead,
    /// Plus the forecast (mode `predictive`).
    Predictive,
}

impl Policy {
    pub const ALL: [Policy; 3] = [Policy::Reactive, Policy::Lookahead, Policy::Predictive];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reactive => "reactive",
            Self::Lookahead => "lookahead",
            Self::Predictive => "predictive",
        }
    }

    /// The pool's rules under this policy.
    pub fn rules(self, pool: &streamlet_config::PoolConfig) -> streamlet_autoscale::Rules {
        use streamlet_autoscale::Mode;
        let rules = pool.rules();
        match self {
            Self::Reactive => streamlet_autoscale::Rules { lookahead: false, mode: Mode::Reactive, ..rules },
            Self::Lookahead => streamlet_autoscale::Rules { lookahead: true, mode: Mode::Reactive, ..rules },
            Self::Predictive => streamlet_autoscale::Rules { lookahead: true, mode: Mode::Predictive, ..rules },
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A word that names no policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a policy: give reactive, lookahead or predictive")]
pub struct UnknownPolicy(pub String);

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.as_str() == text).ok_or_else(|| UnknownPolicy(text.to_owned()))
    }
}

/// How long the simulated streams last.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Durations {
    /// As the trace says (an LLM request: its generated tokens times
    /// [`Options::ms_per_token`]).
    Trace,
    /// Each exactly this long, in milliseconds.
    Fixed(u64),
    /// Exponentially distributed with this mean, in milliseconds, drawn
    /// with the seed.
    Exponential(u64),
}

impl Durations {
    /// The mean duration the distribution promises, if it is one.
    pub fn mean_ms(self) -> Option<f64> {
        match self {
            Self::Trace => None,
            Self::Fixed(ms) | Self::Exponential(ms) => Some(ms as f64),
        }
    }
}

impl fmt::Display for Durations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Trace => f.write_str("trace"),
            Self::Fixed(ms) => write!(f, "fixed:{}", format_duration(*ms)),
            Self::Exponential(ms) => write!(f, "exp:{}", format_duration(*ms)),
        }
    }
}

/// Text that is not a duration source.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration source: give trace, fixed:DURATION (like fixed:10s) or exp:MEAN (like exp:30s)")]
pub struct BadDurations(pub String);

impl FromStr for Durations {
    type Err = BadDurations;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || BadDurations(text.to_owned());
        match text.split_once(':') {
            None if text == "trace" => Ok(Self::Trace),
            Some(("fixed", d)) => parse_duration(d).ok().filter(|ms| *ms > 0).map(Self::Fixed).ok_or_else(bad),
            Some(("exp", d)) => parse_duration(d).ok().filter(|ms| *ms > 0).map(Self::Exponential).ok_or_else(bad),
            _ => Err(bad()),
        }
    }
}

/// Text that is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: write a whole number with ms, s, m, h or d, like 2ms, 30s or 14d")]
pub struct BadDuration(pub String);

/// `2ms`, `30s`, `5m`, `1h`, `14d`, as milliseconds.
pub fn parse_duration(text: &str) -> Result<u64, BadDuration> {
    let bad = || BadDuration(text.to_owned());
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => clock::MINUTE_MS,
        "h" => 60 * clock::MINUTE_MS,
        "d" => clock::DAY_MS,
        _ => return Err(bad()),
    };
    n.checked_mul(scale).ok_or_else(bad)
}

/// The conditions of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// From a spawn to the streamlet being ready, milliseconds.
    pub spawn_delay_ms: u64,
    /// How long an open with no room waits for a starting streamlet before
    /// it is refused, milliseconds.
    pub wait_ms: u64,
    /// Multiplies the arrivals: each arrival of the trace becomes
    /// `floor(scale)` streams and one more with probability
    /// `scale - floor(scale)` (so 0.5 keeps about every other one, 2.5
    /// makes two or three of each). A copy arrives at a random instant of
    /// the same second (request traces) or minute (per-minute traces).
    pub scale: f64,
    pub durations: Durations,
    /// An LLM request streams for this long per generated token.
    pub ms_per_token: u64,
    /// Evaluate only the trace's last stretch of this length (rounded to
    /// whole minutes); the minutes before it train the forecast. `None`:
    /// evaluate the whole trace with no history.
    pub evaluate_last_ms: Option<u64>,
    /// Of the minutes before the window, play this many (whole minutes)
    /// as streams without counting them, so that each policy meets the
    /// window with the pool it would have had, not an empty one; the
    /// demand learns them as the daemon does, arrival by arrival. The
    /// minutes before them train the forecast.
    pub warm_up_ms: u64,
    /// Seeds every random choice: the same seed, the same run.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            spawn_delay_ms: 2,
            wait_ms: 30_000,
            scale: 1.0,
            durations: Durations::Trace,
            ms_per_token: 30,
            evaluate_last_ms: None,
            warm_up_ms: 10 * clock::MINUTE_MS,
            seed: 1,
        }
    }
}

/// A trace and options that do not make a workload.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(
        "{trace} has no stream durations (it counts arrivals only): give a distribution like exp:30s or fixed:10s"
    )]
    NoDurations { trace: String },
    #[error("scale {0} is out of range: give a factor above 0 and at most 1000, like 0.5 or 4")]
    Scale(f64),
    #[error("{trace} spans {span}: an evaluation window of {window} leaves nothing to train on; give a shorter one")]
    Window { trace: String, span: String, window: String },
    #[error("an evaluation window of {0} is less than a minute; give at least 1m")]
    ShortWindow(String),
}

/// What the clients and the operator would have seen over the evaluation
/// window.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Streams placed, at once or after a wait.
    pub admitted: u64,
    /// Streams placed only after waiting for a streamlet to start.
    pub cold_waits: u64,
    /// Their waits, added up.
    pub cold_wait_seconds: f64,
    /// Streams refused: no room and none coming (at max), the quota or the
    /// tenant limit refused them, or their wait ran out.
    pub rejected: u64,
    /// Streamlets alive (starting or ready) integrated over the window.
    pub worker_seconds: f64,
    /// The most streamlets alive at once.
    pub peak_workers: u32,
}

/// A spawn or a retirement the scaler decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Logged {
    pub at_ms: u64,
    pub action: Action,
    pub reason: streamlet_autoscale::Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Spawn { worker: u64 },
    Retire { worker: u64 },
}

/// One minute of the evaluation window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Minute {
    /// Its start, milliseconds since 1970 (trace clock).
    pub at_ms: u64,
    /// Streams that arrived in it.
    pub arrivals: u32,
    /// The most streams open at once in it, had every stream been placed
    /// on arrival: the demand, whatever the policy.
    pub streams: u32,
    /// `ceil(streams / streams_per_worker)`.
    pub needed: u32,
    /// The most streamlets the forecast asked for in it
    /// (`Rules::forecast_workers` of the prediction, whatever the mode).
    pub forecast: Option<u32>,
    /// The most streamlets alive (starting or ready) at once in it.
    pub live: u32,
    /// Of the streams that arrived in it, those that waited for a
    /// streamlet, and those refused.
    pub cold_waits: u32,
    pub rejected: u32,
}

/// One policy's run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub policy: Policy,
    /// The pool's `workers.min` and `workers.max`.
    pub workers: (u32, u32),
    pub totals: Totals,
    /// Every spawn and retirement in the window, in time order.
    pub decisions: Vec<Logged>,
    /// Minute by minute.
    pub minutes: Vec<Minute>,
}

#[cfg(test)]
mod tests;
