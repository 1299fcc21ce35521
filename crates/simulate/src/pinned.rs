//! Runs that could not differ: a pool held at `workers.max` throughout, by
//! its configuration or by its demand, gives every policy the same rows.

use std::fmt;

use super::Outcome;

/// Where to find pools with room to scale.
pub const EXAMPLES: &str = "benches/autoscale/*.toml in streamlet's source (like --config benches/autoscale/nasa.toml)";

/// Why every run kept the pool at `workers.max` the whole window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pinned {
    /// `workers.min` is `workers.max`: no policy may change the pool.
    Fixed { workers: u32 },
    /// Every policy held `workers.max`: the demand wanted at least that many.
    AtMax { max: u32 },
}

/// Whether every run in `outcomes` had `workers.max` streamlets alive in
/// every minute of its window; `None` if any had fewer at any time.
pub fn pinned(outcomes: &[Outcome]) -> Option<Pinned> {
    let (min, max) = outcomes.first()?.workers;
    let held = |o: &Outcome| !o.minutes.is_empty() && o.minutes.iter().all(|m| m.live == max);
    if !outcomes.iter().all(|o| o.workers == (min, max) && held(o)) {
        return None;
    }
    Some(if min == max { Pinned::Fixed { workers: max } } else { Pinned::AtMax { max } })
}

impl fmt::Display for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed { workers } => write!(
                f,
                "every policy ran the pool at workers.max ({workers}) throughout: its workers.min is {workers} too, so no policy can scale it and their results are the same; to compare policies, simulate a pool with room to scale, like those of {EXAMPLES}"
            ),
            Self::AtMax { max } => write!(
                f,
                "every policy ran the pool at workers.max ({max}) throughout: the demand wanted at least that many, so the policies could not differ; raise workers.max, or see the pools of {EXAMPLES}"
            ),
        }
    }
}
