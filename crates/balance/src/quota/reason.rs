//! Reason codes and refusals.

use std::fmt;

use super::types::{LeaseId, Level, PoolId, StreamKey, TenantId};

/// The reason code every quota response carries. The names returned by
/// [`Reason::as_str`] are stable: they go over the wire and into logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `granted`: the stream or lease got at least its minimum.
    Granted,
    /// `insufficient`: the minimum does not fit at the host or the pool.
    Insufficient,
    /// `tenant_limit`: the tenant already holds `max_streams` streams and leases.
    TenantLimit,
    /// `preempted`: closed to make room for a higher-priority stream.
    Preempted,
    /// `expired`: the lease's TTL passed.
    Expired,
    /// `unknown`: no such pool or lease.
    Unknown,
    /// `duplicate`: the stream key is already admitted.
    Duplicate,
    /// `invalid_rate`: `min > max`.
    InvalidRate,
}

impl Reason {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Granted => "granted",
            Reason::Insufficient => "insufficient",
            Reason::TenantLimit => "tenant_limit",
            Reason::Preempted => "preempted",
            Reason::Expired => "expired",
            Reason::Unknown => "unknown",
            Reason::Duplicate => "duplicate",
            Reason::InvalidRate => "invalid_rate",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the allocator said no. [`Refusal::reason`] gives the wire code.
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

impl Refusal {
    /// The wire reason code.
    pub fn reason(&self) -> Reason {
        match self {
            Refusal::TenantLimit { .. } => Reason::TenantLimit,
            Refusal::Insufficient { .. } => Reason::Insufficient,
            Refusal::Preempted(_) => Reason::Preempted,
            Refusal::Expired(_) => Reason::Expired,
            Refusal::UnknownLease(_) | Refusal::UnknownPool(_) => Reason::Unknown,
            Refusal::Duplicate(_) => Reason::Duplicate,
            Refusal::InvalidRate { .. } => Reason::InvalidRate,
        }
    }
}
