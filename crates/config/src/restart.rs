//! A pool's `restart = {...}`: how long a dead streamlet's replacement
//! waits, and when the pool's crash-loop breaker trips. The daemon's
//! `restart` module applies it.
//!
//! - A slot's first death (after a healthy run) is repaired after `initial`
//!   (0 by default: at once). Each further death in a row waits
//!   `max(initial, 100 ms) · multiplier^(n - 2)`, at most `max`, spread by
//!   ±`jitter` of itself so that slots that died together do not restart
//!   together. A streamlet that ran `healthy_after` resets its slot's count.
//! - More than `intensity` deaths in a pool within `period` trip the
//!   breaker: no slot of it restarts before `cooldown` has passed.

use std::time::Duration;

/// The second death in a row waits at least this, even when `initial` is 0.
pub const BACKOFF_FLOOR: Duration = Duration::from_millis(100);

/// A pool's `restart = {...}`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RestartPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub multiplier: f64,
    pub jitter: f64,
    pub intensity: u32,
    pub period: Duration,
    pub cooldown: Duration,
    pub healthy_after: Duration,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial: Duration::ZERO,
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            intensity: 5,
            period: Duration::from_secs(10),
            cooldown: Duration::from_secs(60),
            healthy_after: Duration::from_secs(30),
        }
    }
}

impl RestartPolicy {
    /// The backoff before restarting after the `n`-th death in a row (n >= 1),
    /// before jitter.
    pub fn backoff(&self, n: u32) -> Duration {
        if n <= 1 {
            return self.initial.min(self.max);
        }
        let base = self.initial.max(BACKOFF_FLOOR).as_secs_f64();
        let factor = self.multiplier.max(1.0).powi(i32::try_from(n - 2).unwrap_or(i32::MAX));
        let secs = (base * factor).min(self.max.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// `delay` spread by ±`jitter` of itself, by `random` (uniform over u64).
    pub fn jittered(&self, delay: Duration, random: u64) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 || delay.is_zero() {
            return delay;
        }
        // Uniform in [-1, 1).
        let unit = (random >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
        let secs = delay.as_secs_f64() * (1.0 + jitter * unit);
        Duration::from_secs_f64(secs.max(0.0)).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn no_jitter() -> RestartPolicy {
        RestartPolicy { jitter: 0.0, ..RestartPolicy::default() }
    }

    #[test]
    fn the_first_death_restarts_at_once_then_backs_off_exponentially_to_the_max() {
        let p = no_jitter();
        let delays: Vec<Duration> = (1..=12).map(|n| p.backoff(n)).collect();
        assert_eq!(delays[0], Duration::ZERO, "a single crash is repaired at once");
        assert_eq!(&delays[1..5], &[100 * MS, 200 * MS, 400 * MS, 800 * MS]);
        assert_eq!(delays[10], Duration::from_secs(30), "capped at max");
        assert_eq!(delays[11], Duration::from_secs(30));
        let slow = RestartPolicy { initial: 250 * MS, multiplier: 3.0, ..no_jitter() };
        assert_eq!((slow.backoff(1), slow.backoff(2), slow.backoff(3)), (250 * MS, 250 * MS, 750 * MS));
    }

    #[test]
    fn jitter_spreads_within_its_bounds_and_never_past_the_max() {
        let p = RestartPolicy::default();
        let d = Duration::from_secs(1);
        let spread: Vec<Duration> =
            [0, u64::MAX / 4, u64::MAX / 2, u64::MAX].iter().map(|r| p.jittered(d, *r)).collect();
        assert!(spread.iter().all(|s| *s >= 800 * MS && *s <= 1200 * MS), "{spread:?}");
        assert_eq!(spread[0], 800 * MS);
        assert_eq!(spread[2], d, "the middle of the range is the delay itself");
        assert!(spread[1] < spread[2] && spread[2] < spread[3]);
        assert_eq!(p.jittered(Duration::ZERO, 12345), Duration::ZERO, "at once stays at once");
        assert_eq!(p.jittered(Duration::from_secs(30), u64::MAX), Duration::from_secs(30));
    }
}
