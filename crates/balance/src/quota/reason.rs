//! Refusals: why the allocator said no.

use super::types::{LeaseId, Level, PoolId, StreamKey, TenantId};

/// Why the allocator said no.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The tenant holds `limit` streams and leases already.
    #[error("tenant {tenant} is at its limit of {limit} streams")]
    TenantLimit {
        /// The tenant.
        tenant: TenantId,
        /// Its `max_streams`.
        limit: u32,
    },
    /// The minimum does not fit, even after any preemption allowed.
    #[error("insufficient bandwidth at {level}: {need} bytes/s asked, {free} unreserved")]
    Insufficient {
        /// Where it ran out.
        level: Level,
        /// The minimum asked.
        need: u64,
        /// Capacity not reserved by running minimums.
        free: u64,
    },
    /// The lease was preempted by a higher-priority stream.
    #[error("{0} was preempted")]
    Preempted(LeaseId),
    /// The lease's TTL passed.
    #[error("{0} expired")]
    Expired(LeaseId),
    /// No such lease.
    #[error("unknown {0}")]
    UnknownLease(LeaseId),
    /// No such pool: pools are declared with `set_pool` first.
    #[error("unknown pool {0}")]
    UnknownPool(PoolId),
    /// The stream key is already admitted.
    #[error("{0} is already admitted")]
    Duplicate(StreamKey),
    /// `min > max`.
    #[error("invalid rate: min {min} above max {max}")]
    InvalidRate {
        /// The minimum asked.
        min: u64,
        /// The maximum asked.
        max: u64,
    },
}
