//! The scaling rules of one pool.
//!
//! A [`Scaler`] is asked, with a [`Snapshot`] of its pool, what to do now:
//! which streamlets to spawn and why, and which idle ones to retire. The
//! rules, in the order they are applied:
//!
//! 1. **min**: never fewer than `min` streamlets (ready or on their way).
//! 2. **min_free**: at least `min_free` streamlets with no stream, ready or
//!    on their way.
//! 3. **lookahead**: when every streamlet is within one stream of full
//!    (`streams_per_worker - 1`), one more is spawned before the last slot
//!    goes, as a layer-filling orchestrator provisions its next engine when
//!    the current one reaches `MAX - 1`. Under least-connections "any
//!    streamlet reaches `MAX - 1`" would fire on every streamlet of a
//!    balanced pool at once; "no streamlet has two free slots" is the same
//!    rule for layered filling and the sensible one for the others.
//! 4. **forecast** (`predictive` mode): at least
//!    `ceil(predicted / streams_per_worker * (1 + headroom))` streamlets,
//!    where `predicted` is the concurrent streams expected over the lead
//!    window. In `forecast-only` mode this is computed and reported, never
//!    acted on.
//! 5. **idle_grace**: a streamlet with no stream for `idle_grace` is retired,
//!    emptiest first, then oldest, unless that would break rules 1 to 4. A
//!    streamlet with streams is never retired.
//!
//! Nothing goes above `max`. Spawns that fail back off: after a failure no
//! spawn is asked for until the backoff has passed; it doubles with each
//! failure in a row, up to [`MAX_BACKOFF_MS`].

use std::fmt;

use serde::{Deserialize, Serialize};

/// The first pause after a failed spawn.
pub const FIRST_BACKOFF_MS: u64 = 100;
/// The longest pause between failed spawns.
pub const MAX_BACKOFF_MS: u64 = 30_000;

/// What a forecast does to the pool: a pool's `autoscale.mode`, which the
/// config reads as this type (`"reactive"`, `"predictive"`, `"forecast-only"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Reactive rules only.
    #[default]
    Reactive,
    /// Reactive rules, raised by the forecast.
    Predictive,
    /// Reactive rules; the forecast is computed and reported, not acted on.
    ForecastOnly,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reactive => "reactive",
            Self::Predictive => "predictive",
            Self::ForecastOnly => "forecast-only",
        }
    }
}

/// A pool's scaling rules, validated (`min <= max`, `max >= 1`,
/// `streams_per_worker >= 1`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rules {
    pub min: u32,
    pub max: u32,
    pub min_free: u32,
    pub streams_per_worker: u32,
    /// Spawn one more when no streamlet has two free slots.
    pub lookahead: bool,
    pub idle_grace_ms: u64,
    pub mode: Mode,
    /// The forecast's safety margin: 0.2 keeps 20% more than predicted.
    pub headroom: f64,
}

impl Rules {
    /// The streamlets a forecast of `predicted` concurrent streams asks
    /// for, within `[min, max]`.
    pub fn forecast_workers(&self, predicted: f64) -> u32 {
        let per = f64::from(self.streams_per_worker.max(1));
        let wanted = (predicted.max(0.0) / per * (1.0 + self.headroom.max(0.0))).ceil();
        // (`as` saturates; NaN becomes 0.)
        (wanted as u32).clamp(self.min, self.max)
    }
}

/// Why a streamlet is spawned or retired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    Min,
    MinFree,
    Lookahead,
    Forecast,
    IdleGrace,
}

impl Reason {
    /// Every reason, in the order the rules apply.
    pub const ALL: [Reason; 5] = [Self::Min, Self::MinFree, Self::Lookahead, Self::Forecast, Self::IdleGrace];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::MinFree => "min_free",
            Self::Lookahead => "lookahead",
            Self::Forecast => "forecast",
            Self::IdleGrace => "idle_grace",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A ready streamlet of the pool, as the rules see it. Streamlets that are
/// draining, retiring or dying are not in the snapshot at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerLoad {
    pub id: u64,
    pub streams: u32,
    /// When it was spawned (the rules' clock, milliseconds).
    pub started_ms: u64,
    /// Since when it has had no stream; `None` while it has streams.
    pub idle_since_ms: Option<u64>,
}

/// The pool now.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot<'a> {
    pub now_ms: u64,
    /// Its ready streamlets.
    pub workers: &'a [WorkerLoad],
    /// Streamlets starting and spawns scheduled: capacity on its way, empty.
    pub starting: u32,
    /// Streamlets draining or dying whose places will be filled again:
    /// they count toward min and max, and offer no room.
    pub replacing: u32,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// One entry per streamlet to spawn, with the rule that wants it.
    pub spawn: Vec<Reason>,
    /// Streamlets to retire (each idle and empty), with the rule.
    pub retire: Vec<(u64, Reason)>,
    /// The streamlets the pool is to have once this is done.
    pub desired: u32,
    /// What the forecast asks for (in any mode but `reactive`), if it has one.
    pub forecast: Option<u32>,
    /// `forecast-only`: the spawns the forecast would have added.
    pub would_spawn: u32,
    /// Spawns are held back until then after failures.
    pub backoff_until_ms: Option<u64>,
}

impl Decision {
    /// Whether there is anything to do.
    pub fn is_empty(&self) -> bool {
        self.spawn.is_empty() && self.retire.is_empty()
    }
}

/// One pool's scaler: its rules, the latest forecast and the spawn backoff.
#[derive(Debug, Clone)]
pub struct Scaler {
    rules: Rules,
    /// Concurrent streams predicted over the lead window.
    predicted: Option<f64>,
    failures: u32,
    backoff_until_ms: u64,
}

impl Scaler {
    pub fn new(rules: Rules) -> Self {
        Self { rules, predicted: None, failures: 0, backoff_until_ms: 0 }
    }

    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// New rules (a reload); the forecast and the backoff stay.
    pub fn set_rules(&mut self, rules: Rules) {
        self.rules = rules;
    }

    /// The concurrent streams expected over the lead window, or `None` when
    /// the model has nothing to say yet.
    pub fn set_prediction(&mut self, predicted: Option<f64>) {
        self.predicted = predicted.filter(|p| p.is_finite());
    }

    pub fn prediction(&self) -> Option<f64> {
        self.predicted
    }

    /// The streamlets the forecast asks for, if the mode uses one and there
    /// is a prediction.
    pub fn forecast_workers(&self) -> Option<u32> {
        if self.rules.mode == Mode::Reactive {
            return None;
        }
        self.predicted.map(|p| self.rules.forecast_workers(p))
    }

    /// A spawn this scaler asked for failed at `now_ms`: the next waits.
    pub fn spawn_failed(&mut self, now_ms: u64) {
        let backoff = FIRST_BACKOFF_MS.saturating_mul(1 << self.failures.min(20)).min(MAX_BACKOFF_MS);
        self.failures = self.failures.saturating_add(1);
        self.backoff_until_ms = now_ms.saturating_add(backoff);
    }

    /// A spawn succeeded: the backoff starts again from the first pause.
    pub fn spawn_succeeded(&mut self) {
        self.failures = 0;
        self.backoff_until_ms = 0;
    }

    /// What the pool should do now.
    pub fn decide(&self, pool: &Snapshot<'_>) -> Decision {
        let r = &self.rules;
        let now = pool.now_ms;
        let per = r.streams_per_worker.max(1);
        // A streamlet with fewer streams than this is not "about to fill".
        let threshold = (per - 1).max(1);
        let mut total = pool.workers.len() as u32 + pool.starting + pool.replacing;
        let mut free = pool.workers.iter().filter(|w| w.streams == 0).count() as u32 + pool.starting;
        let mut roomy = pool.workers.iter().filter(|w| w.streams < threshold).count() as u32 + pool.starting;
        let forecast = self.forecast_workers();
        let mut decision = Decision { forecast, ..Decision::default() };

        // Spawns, in the order of the rules.
        let backed_off = now < self.backoff_until_ms;
        if backed_off {
            decision.backoff_until_ms = Some(self.backoff_until_ms);
        }
        let mut spawn = |reason: Reason, total: &mut u32, free: &mut u32, roomy: &mut u32| {
            if backed_off || *total >= r.max {
                return false;
            }
            decision.spawn.push(reason);
            *total += 1;
            *free += 1;
            *roomy += 1;
            true
        };
        while total < r.min && spawn(Reason::Min, &mut total, &mut free, &mut roomy) {}
        while free < r.min_free && spawn(Reason::MinFree, &mut total, &mut free, &mut roomy) {}
        if r.lookahead && roomy == 0 {
            spawn(Reason::Lookahead, &mut total, &mut free, &mut roomy);
        }
        if let Some(wanted) = forecast {
            if r.mode == Mode::Predictive {
                while total < wanted && spawn(Reason::Forecast, &mut total, &mut free, &mut roomy) {}
            } else {
                decision.would_spawn = wanted.saturating_sub(total);
            }
        }

        // Retirements: idle past the grace, emptiest then oldest, while the
        // rules above still hold without them.
        let floor = match (r.mode, forecast) {
            (Mode::Predictive, Some(wanted)) => wanted.max(r.min),
            _ => r.min,
        };
        let mut idle: Vec<&WorkerLoad> = pool
            .workers
            .iter()
            .filter(|w| w.streams == 0 && w.idle_since_ms.is_some_and(|t| now.saturating_sub(t) >= r.idle_grace_ms))
            .collect();
        idle.sort_by_key(|w| (w.streams, w.started_ms, w.id));
        for w in idle {
            let roomy_after = roomy - u32::from(w.streams < threshold);
            if total <= floor || free <= r.min_free || (r.lookahead && roomy_after == 0) {
                break;
            }
            decision.retire.push((w.id, Reason::IdleGrace));
            total -= 1;
            free -= 1;
            roomy = roomy_after;
        }
        decision.desired = total;
        decision
    }
}

#[cfg(test)]
mod tests;
