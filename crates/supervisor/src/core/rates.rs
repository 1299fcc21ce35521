//! The quota's answers carried out: leases granted and given back, and
//! rates that moved reaching the streams (their streamlet's pacing and,
//! where the kernel paces the socket, `SO_MAX_PACING_RATE`); what an
//! admission preempted ended.

use std::time::Duration;

use streamlet_balance::quota::{Changes, StreamKey};
use streamlet_proto::worker::ToWorker;
use streamlet_proto::{EndReason, ErrorBody, LeaseGranted, StreamId};

use super::bandwidth::{limit, refusal_error, LeaseError};
use super::coordinator::Core;
use crate::validate::Lease;

impl Core {
    /// Grants a lease: bandwidth and a tenant slot without a stream. The
    /// request was checked ([`crate::validate`]).
    pub(crate) fn lease(&mut self, request: Lease) -> Result<LeaseGranted, LeaseError> {
        if self.shutting_down {
            return Err(LeaseError::ShuttingDown);
        }
        if !self.fleet.pools.contains_key(&request.pool) {
            return Err(LeaseError::UnknownPool { pool: request.pool, known: self.fleet.names() });
        }
        let (granted, changes) = self.bandwidth.lease(request)?;
        self.apply_changes(&changes);
        Ok(granted)
    }

    /// Extends a lease by its TTL.
    pub fn refresh(&mut self, lease: u64) -> Result<LeaseGranted, ErrorBody> {
        self.bandwidth.refresh(lease).map_err(|r| refusal_error(&r))
    }

    /// Gives a lease back.
    pub fn release_lease(&mut self, lease: u64) -> Result<(), ErrorBody> {
        self.bandwidth.release_lease(lease).map_err(|r| refusal_error(&r))?;
        self.retry_waiting();
        Ok(())
    }

    /// Frees every lease whose TTL has passed (a bounded number a tick): a
    /// gateway that crashed leaks nothing. Called by the daemon's expiry
    /// task.
    pub fn expire_leases(&mut self) -> usize {
        let expired = self.bandwidth.expire_leases();
        if expired > 0 {
            self.retry_waiting();
        }
        expired
    }

    /// Brings the streams' pacing up to date with the quota: re-paces those
    /// whose allocation moved since the last time and ends bursts past their
    /// window; once per `stats_interval`, takes streams that reported nothing
    /// as idle and grants bursts. Called by the daemon every 50 ms.
    pub fn pace(&mut self, stats_interval: Duration) {
        let rates = self.bandwidth.moved();
        self.apply_rates(&rates);
        let Some(now) = self.bandwidth.sample_due(stats_interval) else { return };
        // Streamlets report only the streams whose counters moved.
        for stream in self.streams.mark_silent(stats_interval * 2, now) {
            self.bandwidth.record_usage(stream, 0);
        }
        let rates = self.bandwidth.grant_bursts();
        self.apply_rates(&rates);
    }

    /// What an admission, a lease or a new capacity changed: the streams it
    /// preempted end (`preempted`), the leases it preempted lose their
    /// tenant slot (their next refresh hears why), and the rates it moved
    /// reach their streams.
    pub(super) fn apply_changes(&mut self, changes: &Changes) {
        for victim in &changes.preempted {
            self.end_by_daemon(StreamId(victim.0), EndReason::Preempted);
        }
        self.bandwidth.preempted_leases(changes);
        self.apply_rates(&changes.rates);
    }

    /// New allocations from the quota reach the streams: their streamlets
    /// (`UpdateRate`) and, where the kernel paces the socket, its pacing.
    pub(super) fn apply_rates(&mut self, rates: &[(StreamKey, u64)]) {
        for (key, rate) in rates {
            let stream = StreamId(key.0);
            let Some(entry) = self.streams.get_mut(&stream) else { continue };
            let rate = limit(*rate);
            if entry.rate == rate {
                continue;
            }
            entry.rate = rate;
            if entry.kernel_paced {
                entry.fd.pace(rate);
            }
            if let Some(worker) = self.fleet.workers.get(&entry.worker) {
                let _ = worker.link.send(&ToWorker::UpdateRate { stream, rate: rate.unwrap_or(0) }, None);
            }
        }
    }
}
