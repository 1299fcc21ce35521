//! Exponential backoff: pure policy, no clock and no sleeping.

use std::time::Duration;

/// Delays that start at `initial` and double up to `max`, until [`reset`](Self::reset).
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// `initial` must be positive and at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        assert!(!initial.is_zero() && initial <= max, "backoff from {initial:?} to {max:?}");
        Self { initial, max, next: initial }
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }

    /// After a success: the next failure waits `initial` again.
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
        let delays: Vec<u128> = (0..8).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(50));
    }

    #[test]
    #[should_panic(expected = "backoff from")]
    fn refuses_a_zero_start() {
        Backoff::new(Duration::ZERO, Duration::from_secs(1));
    }
}
