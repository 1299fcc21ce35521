//! Burst: going over an allocation for a short while, from capacity that is
//! allocated but unused right now.
//!
//! The allocator shares capacity by what holders asked for, not by what they
//! send: a stream allowed 8 Mbit/s that sends 1 leaves 7 idle. The caller
//! reports each stream's recent send rate ([`Allocator::record_usage`], from
//! its streamlet's byte counters). [`Allocator::grant_bursts`] then lets streams
//! that send at their paced rate (within 1/16 of it) and are below their max
//! go over it, each by an equal part of what is idle at the host and in its
//! pool (capacity less what every holder uses now, a holder without a report
//! counted at its full rate), never above its max, for the burst window.
//! After a burst the stream waits as long again before the next, so the
//! holders it borrowed from get their capacity back within one window when
//! they start sending again: a burst is a loan of bounded length, not a
//! reservation. Paced rates (and their sums) are untouched by bursts.

use super::allocator::{Allocator, Entry};
use super::types::{Holder, Millis, StreamKey};

/// A stream's permission to go over its allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// The rate the stream may use, bytes per second.
    pub rate: u64,
    /// The burst ends at this instant.
    pub until: Millis,
}

/// A stream sending at least its paced rate less this fraction is held back by it.
const BUSY: u64 = 16;

impl Entry {
    /// The rate the holder may use now: its paced rate, or its burst's if higher.
    pub(super) fn rate_now(&self) -> u64 {
        self.burst.map_or(self.paced, |b| b.rate.max(self.paced))
    }
}

impl Allocator {
    /// Records a stream's recent send rate in bytes per second. Unknown keys
    /// are ignored.
    pub fn record_usage(&mut self, key: StreamKey, used: u64) {
        if let Some(&i) = self.index.get(&Holder::Stream(key)) {
            self.entries[i].used = Some(used);
        }
    }

    /// The rate a stream may use now: its paced rate, or its burst.
    pub fn rate_now(&self, key: StreamKey) -> Option<u64> {
        self.index.get(&Holder::Stream(key)).map(|&i| self.entries[i].rate_now())
    }

    /// A stream's burst, if it has one.
    pub fn burst_of(&self, key: StreamKey) -> Option<Burst> {
        self.index.get(&Holder::Stream(key)).and_then(|&i| self.entries[i].burst)
    }

    /// Ends the bursts whose window has passed (`until <= now`); returns the
    /// streams whose rate now ([`Allocator::rate_now`]) changed. O(k log n)
    /// for k endings: call it often.
    pub fn end_bursts(&mut self, now: Millis) -> Vec<(StreamKey, u64)> {
        let mut changed = Vec::new();
        while let Some(&(until, holder)) = self.burst_ends.first() {
            if until > now {
                break;
            }
            self.burst_ends.pop_first();
            let Some(&i) = self.index.get(&holder) else { continue };
            let e = &mut self.entries[i];
            let before = e.rate_now();
            e.burst = None;
            e.cool_until = until.saturating_add(self.burst_window);
            if let (Holder::Stream(key), true) = (e.holder, e.rate_now() != before) {
                changed.push((key, e.rate_now()));
            }
        }
        changed.sort_unstable();
        changed
    }

    /// Ends every running burst now (a new holder or a smaller capacity may
    /// need what they borrowed); each stream waits as if its burst had run
    /// its window. Returns the streams whose rate now changed.
    pub(super) fn end_all_bursts(&mut self) -> Vec<(StreamKey, u64)> {
        let mut changed = Vec::new();
        for (until, holder) in std::mem::take(&mut self.burst_ends) {
            let Some(&i) = self.index.get(&holder) else { continue };
            let e = &mut self.entries[i];
            let before = e.rate_now();
            e.burst = None;
            e.cool_until = until.saturating_add(self.burst_window);
            if let (Holder::Stream(key), true) = (e.holder, e.rate_now() != before) {
                changed.push((key, e.rate_now()));
            }
        }
        changed
    }

    /// Grants bursts from the usage recorded so far; returns the streams
    /// whose rate now changed. O(n): call it once per usage sample.
    pub fn grant_bursts(&mut self, now: Millis) -> Vec<(StreamKey, u64)> {
        let mut changed = Vec::new();
        if self.burst_window > 0 {
            self.lend_idle(now, &mut changed);
        }
        changed.sort_unstable();
        changed
    }

    fn lend_idle(&mut self, now: Millis, changed: &mut Vec<(StreamKey, u64)>) {
        let np = self.pools.len();
        let mut pool_used = vec![0u128; np];
        let mut host_used = 0u128;
        let (mut pool_wanting, mut host_wanting) = (vec![0u64; np], 0u64);
        let wants = |e: &Entry| {
            matches!(e.holder, Holder::Stream(_))
                && e.burst.is_none()
                && e.cool_until <= now
                && e.paced < e.demand.max
                && e.used.is_some_and(|u| u >= e.paced - e.paced / BUSY)
        };
        for e in &self.entries {
            // A stream bursting now counts at its burst: its last usage was
            // measured (mostly) before the burst, and lending that gap again
            // would lend the same bandwidth twice.
            let used = match (e.burst, e.used) {
                (None, Some(u)) => u.min(e.rate_now()),
                _ => e.rate_now(),
            };
            let used = u128::from(used);
            pool_used[e.demand.pool] += used;
            host_used += used;
            if wants(e) {
                pool_wanting[e.demand.pool] += 1;
                host_wanting += 1;
            }
        }
        if host_wanting == 0 {
            return;
        }
        let idle = |cap: u64, used: u128| u64::try_from(u128::from(cap).saturating_sub(used)).unwrap_or(u64::MAX);
        let mut host_idle = idle(self.host_capacity, host_used);
        let mut pool_idle: Vec<u64> =
            self.pools.iter().zip(&pool_used).map(|(p, u)| p.capacity.map_or(u64::MAX, |c| idle(c, *u))).collect();
        let until = now.saturating_add(self.burst_window);
        for e in &mut self.entries {
            if !wants(e) {
                continue;
            }
            let p = e.demand.pool;
            let extra = (host_idle / host_wanting).min(pool_idle[p] / pool_wanting[p]).min(e.demand.max - e.paced);
            host_wanting -= 1;
            pool_wanting[p] -= 1;
            if extra == 0 {
                continue;
            }
            host_idle -= extra;
            pool_idle[p] -= extra;
            e.burst = Some(Burst { rate: e.paced + extra, until });
            self.burst_ends.insert((until, e.holder));
            if let Holder::Stream(key) = e.holder {
                changed.push((key, e.paced + extra));
            }
        }
    }
}
