//! Burst: going over an allocation for a short while, from idle capacity.
//!
//! The allocator is work-conserving, so capacity is idle only when every
//! stream that could use it is at its max (or its pool is full). A stream may
//! then exceed its allocation, and its max, by what is unused at both its pool
//! and the host right now, until `now + burst window`. The allowance is a pure
//! function of the current state: it is not reserved, and the next admission
//! may take it back. The daemon asks again when `until` passes.

use super::allocator::Allocator;
use super::types::{Holder, Millis, StreamKey};

/// A stream's permission to go over its allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Burst {
    /// The rate the stream may use, allocation included, in bytes per second.
    pub rate: u64,
    /// The burst ends at this instant.
    pub until: Millis,
}

impl Allocator {
    /// The burst a stream may take now; `None` if the stream is unknown or
    /// nothing is idle.
    pub fn burst(&self, key: StreamKey, now: Millis) -> Option<Burst> {
        let e = &self.entries[*self.index.get(&Holder::Stream(key))?];
        let (host_alloc, pool_alloc) = self.entries.iter().fold((0u64, 0u64), |(h, p), x| {
            let in_pool = if x.demand.pool == e.demand.pool { x.alloc } else { 0 };
            (h.saturating_add(x.alloc), p.saturating_add(in_pool))
        });
        let host_free = self.host_capacity.saturating_sub(host_alloc);
        let pool_free = self.pools[e.demand.pool].capacity.map_or(u64::MAX, |c| c.saturating_sub(pool_alloc));
        let spare = host_free.min(pool_free);
        (spare > 0).then(|| Burst { rate: e.alloc.saturating_add(spare), until: now.saturating_add(self.burst_window) })
    }
}
