//! When to start a dead streamlet's replacement: per-slot exponential
//! backoff with jitter, and a per-pool crash-loop breaker in the style of
//! OTP's restart intensity.
//!
//! Pure code: time is [`Millis`] passed in, randomness a `u64` passed in.
//! The pool's [`RestartPolicy`] (its `restart = {...}`) is the
//! configuration's; this module applies it.
//!
//! - A slot's first death (after a healthy run) is repaired after `initial`
//!   (0 by default: at once). Each further death in a row waits
//!   `max(initial, 100 ms) · multiplier^(n - 2)`, at most `max`, spread by
//!   ±`jitter` of itself so that slots that died together do not restart
//!   together. A streamlet that ran `healthy_after` resets its slot's count.
//! - More than `intensity` deaths in a pool within `period` trip the
//!   breaker: the pool is *degraded* and no slot of it restarts before
//!   `cooldown` has passed. The breaker closes again at the end of the
//!   cool-down; deaths from before it no longer count.

use std::collections::VecDeque;
use std::time::Duration;

/// Milliseconds since an epoch the caller chooses.
pub type Millis = u64;

pub use streamlet_config::restart::{RestartPolicy, BACKOFF_FLOOR};

/// A slot's deaths in a row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotBackoff {
    pub deaths_in_a_row: u32,
}

/// A pool's recent deaths, and whether its breaker is open.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Breaker {
    deaths: VecDeque<Millis>,
    /// Degraded until this instant.
    open_until: Option<Millis>,
}

/// What to do about a death.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Start the replacement after this long.
    pub delay: Duration,
    /// This death tripped the breaker: the pool is degraded until `now + cooldown`.
    pub tripped: bool,
}

impl Breaker {
    /// Whether the pool is degraded at `now`.
    pub fn degraded(&self, now: Millis) -> bool {
        self.open_until.is_some_and(|until| now < until)
    }

    /// When the pool's degradation ends, if it is degraded at `now`.
    pub fn degraded_until(&self, now: Millis) -> Option<Millis> {
        self.open_until.filter(|until| now < *until)
    }

    /// The deaths that count against the intensity at `now`.
    pub fn recent(&self, now: Millis, policy: &RestartPolicy) -> usize {
        let period = millis(policy.period);
        self.deaths.iter().filter(|at| at.saturating_add(period) > now).count()
    }
}

/// Records a streamlet's death in `slot` of a pool guarded by `breaker`, and
/// says when to start its replacement. `uptime` is how long it ran;
/// `random` drives the jitter.
pub fn on_death(
    policy: &RestartPolicy,
    slot: &mut SlotBackoff,
    breaker: &mut Breaker,
    uptime: Duration,
    now: Millis,
    random: u64,
) -> Verdict {
    if uptime >= policy.healthy_after {
        slot.deaths_in_a_row = 0;
    }
    slot.deaths_in_a_row = slot.deaths_in_a_row.saturating_add(1);
    let backoff = policy.jittered(policy.backoff(slot.deaths_in_a_row), random);

    // The breaker: deaths within the period, not counting those before a
    // cool-down that already ended.
    if let Some(until) = breaker.open_until.filter(|until| now >= *until) {
        breaker.deaths.retain(|at| *at >= until);
        breaker.open_until = None;
    }
    let period = millis(policy.period);
    while breaker.deaths.front().is_some_and(|at| at.saturating_add(period) <= now) {
        breaker.deaths.pop_front();
    }
    breaker.deaths.push_back(now);
    let mut tripped = false;
    if breaker.open_until.is_none() && breaker.deaths.len() > policy.intensity as usize {
        breaker.open_until = Some(now.saturating_add(millis(policy.cooldown)));
        tripped = true;
    }
    let held = breaker.open_until.map_or(Duration::ZERO, |until| Duration::from_millis(until.saturating_sub(now)));
    Verdict { delay: backoff.max(held), tripped }
}

fn millis(d: Duration) -> Millis {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn no_jitter() -> RestartPolicy {
        RestartPolicy { jitter: 0.0, ..RestartPolicy::default() }
    }

    /// Deaths in one slot at the given instants, each after `uptime`.
    fn deaths(p: &RestartPolicy, at: &[Millis], uptime: Duration) -> (Vec<Verdict>, Breaker) {
        let (mut slot, mut breaker) = (SlotBackoff::default(), Breaker::default());
        let verdicts = at.iter().map(|now| on_death(p, &mut slot, &mut breaker, uptime, *now, 0)).collect();
        (verdicts, breaker)
    }

    #[test]
    fn a_streamlet_that_stayed_healthy_resets_the_backoff() {
        let p = no_jitter();
        let (mut slot, mut breaker) = (SlotBackoff::default(), Breaker::default());
        let quick = Duration::from_millis(5);
        let a = on_death(&p, &mut slot, &mut breaker, quick, 0, 0);
        let b = on_death(&p, &mut slot, &mut breaker, quick, 10, 0);
        let c = on_death(&p, &mut slot, &mut breaker, quick, 200, 0);
        assert_eq!((a.delay, b.delay, c.delay), (Duration::ZERO, 100 * MS, 200 * MS));
        let healthy = on_death(&p, &mut slot, &mut breaker, Duration::from_secs(30), 60_000, 0);
        assert_eq!(healthy.delay, Duration::ZERO, "after 30 s of health, a crash is a first crash again");
        assert_eq!(slot.deaths_in_a_row, 1);
    }

    #[test]
    fn more_than_intensity_deaths_in_the_period_degrade_the_pool_for_the_cooldown() {
        let p = no_jitter();
        let healthy = Duration::from_secs(60);
        // Five deaths in 10 s are allowed (each after a healthy run: no backoff).
        let (verdicts, breaker) = deaths(&p, &[0, 1_000, 2_000, 3_000, 4_000], healthy);
        assert!(verdicts.iter().all(|v| !v.tripped && v.delay.is_zero()), "{verdicts:?}");
        assert!(!breaker.degraded(4_000));
        // The sixth trips it: restarts wait for the cool-down.
        let (verdicts, breaker) = deaths(&p, &[0, 1_000, 2_000, 3_000, 4_000, 5_000, 6_000], healthy);
        assert!(verdicts[5].tripped && !verdicts[6].tripped, "tripped once: {verdicts:?}");
        assert_eq!(verdicts[5].delay, Duration::from_secs(60));
        assert_eq!(verdicts[6].delay, Duration::from_secs(59), "held until the cool-down ends");
        assert!(breaker.degraded(64_999) && !breaker.degraded(65_000));
        assert_eq!(breaker.degraded_until(10_000), Some(65_000));
    }

    #[test]
    fn deaths_outside_the_period_do_not_count() {
        let p = no_jitter();
        // Six deaths, but never more than five within any 10 s.
        let (verdicts, breaker) =
            deaths(&p, &[0, 3_000, 6_000, 9_000, 12_000, 15_000, 18_000], Duration::from_secs(60));
        assert!(verdicts.iter().all(|v| !v.tripped), "{verdicts:?}");
        assert_eq!(breaker.recent(18_000, &p), 4);
    }

    #[test]
    fn after_the_cooldown_the_count_starts_again() {
        let p = no_jitter();
        let at: Vec<Millis> = (0..6).map(|k| k * 100).collect();
        let (mut slot, mut breaker) = (SlotBackoff::default(), Breaker::default());
        for now in &at {
            on_death(&p, &mut slot, &mut breaker, Duration::from_secs(60), *now, 0);
        }
        assert!(breaker.degraded(500));
        // One death just after the cool-down is a single crash, not a seventh.
        let v = on_death(&p, &mut slot, &mut breaker, Duration::from_secs(60), 60_500, 0);
        assert!(!v.tripped && v.delay.is_zero(), "{v:?}");
        assert!(!breaker.degraded(60_500));
        assert_eq!(breaker.recent(60_500, &p), 1);
    }
}
