//! Bandwidth and tenants: the quota's allocator (streams' rates, leases,
//! bursts), what each tenant holds against its `max_streams`, and the
//! quota's clock. [`Bandwidth`] answers in rates; carrying them to sockets
//! and streamlets is the core's.

use std::time::{Duration, Instant};

use streamlet_balance::quota::{Admission, Allocator, Changes, LeaseId, Priority, Rate, Refusal, StreamKey};
use streamlet_proto::{ErrorBody, ErrorCode, LeaseGranted, StreamId};

use super::tenants::{TenantFull, Tenants, MAX_LEASES};
use crate::config::{Config, PoolConfig};
use crate::validate::Lease;

pub(crate) use streamlet_balance::quota::UNLIMITED;

/// Leases freed at their expiry per tick, at most; the rest the next tick.
pub const LEASES_EXPIRED_PER_TICK: usize = 4096;

/// The rate a streamlet and the kernel are given for a paced rate: `None`
/// for no limit; never 0, which the protocol reads as no limit (a stream
/// allocated nothing is held to 1 byte per second).
pub(super) fn limit(rate: u64) -> Option<u64> {
    (rate < UNLIMITED).then_some(rate.max(1))
}

/// A rate the quota can hold: a max above [`UNLIMITED`] is no limit.
fn capped(rate: Rate) -> Rate {
    Rate { min: rate.min, max: rate.max.min(UNLIMITED) }
}

/// Why a lease was not granted. (Its request was checked before; these
/// depend on the daemon's state.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("streamletd is shutting down")]
    ShuttingDown,
    #[error("pool {pool:?} is not configured; configured pools: {known}")]
    UnknownPool { pool: String, known: String },
    #[error("streamletd holds {MAX_LEASES} leases, its most; release or let some expire first")]
    TooMany,
    #[error(transparent)]
    TenantFull(#[from] TenantFull),
    /// The quota's answer: `insufficient` (preempting what the pool allows
    /// would not make room).
    #[error("{0}")]
    Refused(Refusal),
}

/// The reply to a quota refusal.
pub(crate) fn refusal_error(refusal: &Refusal) -> ErrorBody {
    let code = match refusal {
        Refusal::TenantLimit { .. } => ErrorCode::TenantLimit,
        Refusal::Insufficient { .. } => ErrorCode::Insufficient,
        Refusal::Expired(_) => ErrorCode::Expired,
        Refusal::Preempted(_) => ErrorCode::Preempted,
        Refusal::UnknownLease(_) => ErrorCode::UnknownLease,
        _ => ErrorCode::BadRequest,
    };
    ErrorBody::new(code, refusal.to_string())
}

/// What a new stream asks of the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ask {
    /// The quota covers it: a rate was asked (or the pool has a default),
    /// or the host or the pool has a capacity to share. Others go unpaced
    /// and cost the quota nothing.
    pub(super) managed: bool,
    pub(super) rate: Rate,
}

#[derive(Debug)]
pub(super) struct Bandwidth {
    quota: Allocator,
    /// Whether the host has an egress capacity to share.
    host_capacity: bool,
    /// What each tenant holds, and which tenant holds each lease.
    pub(super) tenants: Tenants,
    /// The quota's clock starts here.
    epoch: Instant,
    /// When the streams' send rates were last sampled for bursts.
    sampled: Instant,
}

impl Bandwidth {
    pub(super) fn new(config: &Config) -> Self {
        let mut quota = Allocator::new(config.quota.egress.unwrap_or(u64::MAX));
        for pool in config.pools.values() {
            quota.set_pool(&pool.name, pool.egress, pool.preempt);
        }
        quota.set_burst_window(config.quota.burst.as_millis() as u64);
        Bandwidth {
            quota,
            host_capacity: config.quota.egress.is_some(),
            tenants: Tenants::new(config.quota.tenants.clone(), config.quota.default_max_streams),
            epoch: Instant::now(),
            sampled: Instant::now(),
        }
    }

    /// The host's capacity, the tenants' limits and the burst window from a
    /// new configuration; what moved for the streams.
    pub(super) fn reconfigure(&mut self, config: &Config) -> Changes {
        self.host_capacity = config.quota.egress.is_some();
        let changes = self.quota.set_host_capacity(config.quota.egress.unwrap_or(u64::MAX));
        self.tenants.configure(config.quota.tenants.clone(), config.quota.default_max_streams);
        self.quota.set_burst_window(config.quota.burst.as_millis() as u64);
        changes
    }

    /// A pool's capacity (`None`: none of its own) and whether its streams
    /// may preempt; what moved for the streams.
    pub(super) fn set_pool(&mut self, pool: &str, egress: Option<u64>, preempt: bool) -> Changes {
        self.quota.set_pool(pool, egress, preempt)
    }

    /// Milliseconds on the quota's clock.
    pub(super) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The daemon's monotonic clock as the quota reads it.
    pub(super) fn since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }

    /// What a stream of `pool` asks of the quota: its own rate, else the
    /// pool's default.
    pub(super) fn ask(&self, pool: &PoolConfig, asked: Option<Rate>) -> Ask {
        let rate = asked.or(pool.default_rate.map(|r| Rate { min: r.min, max: r.max }));
        let managed = rate.is_some() || self.host_capacity || pool.egress.is_some();
        Ask { managed, rate: rate.map_or(Rate { min: 0, max: UNLIMITED }, capped) }
    }

    pub(super) fn admit(
        &mut self,
        stream: StreamId,
        pool: &str,
        tenant: &str,
        priority: u8,
        rate: Rate,
    ) -> Result<Admission, Refusal> {
        let now = self.now_ms();
        self.quota.admit(StreamKey(stream.0), pool, tenant, Priority(priority), rate, now)
    }

    /// A managed stream leaves the quota; the others' rates follow at the
    /// next sweep.
    pub(super) fn release(&mut self, stream: StreamId) {
        self.quota.release(StreamKey(stream.0));
    }

    /// A stream's allocation now, if it is paced.
    pub(super) fn allocation(&self, stream: StreamId) -> Option<u64> {
        self.quota.allocation(StreamKey(stream.0)).filter(|r| *r < UNLIMITED)
    }

    pub(super) fn record_usage(&mut self, stream: StreamId, used: u64) {
        self.quota.record_usage(StreamKey(stream.0), used);
    }

    /// Grants a lease: bandwidth and a tenant slot without a stream; what
    /// it preempted and moved is in the changes.
    pub(super) fn lease(&mut self, request: Lease) -> Result<(LeaseGranted, Changes), LeaseError> {
        if self.tenants.leases_full() {
            return Err(LeaseError::TooMany);
        }
        self.tenants.check(&request.tenant)?;
        let now = self.now_ms();
        let grant = self
            .quota
            .lease(
                &request.tenant,
                &request.pool,
                Priority(request.priority),
                capped(Rate { min: request.rate.min, max: request.rate.max }),
                request.ttl_ms,
                now,
            )
            .map_err(LeaseError::Refused)?;
        self.tenants.take_lease(grant.id, request.tenant);
        let granted =
            LeaseGranted { lease: grant.id.0, rate: grant.rate, expires_in_ms: grant.expires_at.saturating_sub(now) };
        Ok((granted, grant.changes))
    }

    /// Extends a lease by its TTL.
    pub(super) fn refresh(&mut self, lease: u64) -> Result<LeaseGranted, Refusal> {
        let now = self.now_ms();
        let (rate, expires_at) = self.quota.refresh(LeaseId(lease), now)?;
        Ok(LeaseGranted { lease, rate, expires_in_ms: expires_at.saturating_sub(now) })
    }

    /// Gives a lease back, and its tenant's slot.
    pub(super) fn release_lease(&mut self, lease: u64) -> Result<(), Refusal> {
        self.quota.release_lease(LeaseId(lease))?;
        self.tenants.end_lease(LeaseId(lease));
        Ok(())
    }

    /// Frees up to [`LEASES_EXPIRED_PER_TICK`] leases whose TTL passed:
    /// how many.
    pub(super) fn expire_leases(&mut self) -> usize {
        let expired = self.quota.expire_up_to(self.now_ms(), LEASES_EXPIRED_PER_TICK);
        for lease in &expired {
            if let Some(tenant) = self.tenants.end_lease(*lease) {
                crate::logcap::limiter()
                    .info("lease_expired", format_args!("lease {} of tenant {tenant:?} expired", lease.0));
            }
        }
        expired.len()
    }

    /// Preempted leases lose their tenant slot (their next refresh hears
    /// why); the streams it preempted are the caller's to end.
    pub(super) fn preempted_leases(&mut self, changes: &Changes) {
        for lease in &changes.preempted_leases {
            self.tenants.end_lease(*lease);
        }
    }

    /// Allocations that moved since the last call: after a sweep of a
    /// stale quota, and bursts past their window.
    pub(super) fn moved(&mut self) -> Vec<(StreamKey, u64)> {
        let mut rates = if self.quota.stale() { self.quota.sweep() } else { Vec::new() };
        rates.extend(self.quota.end_bursts(self.now_ms()));
        rates
    }

    /// Whether `interval` passed since the last sample of send rates (and
    /// if so, this is the new one).
    pub(super) fn sample_due(&mut self, interval: Duration) -> Option<Instant> {
        if self.sampled.elapsed() < interval {
            return None;
        }
        self.sampled = Instant::now();
        Some(self.sampled)
    }

    /// Bursts granted to streams sending above their rate with room to
    /// spare.
    pub(super) fn grant_bursts(&mut self) -> Vec<(StreamKey, u64)> {
        self.quota.grant_bursts(self.now_ms())
    }

    pub(super) fn snapshot(&self) -> streamlet_balance::quota::QuotaReport {
        self.quota.snapshot()
    }
}

#[cfg(test)]
#[path = "bandwidth_tests.rs"]
mod tests;
