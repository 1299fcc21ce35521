//! Leases: bandwidth held by a gateway that streams data itself, for a TTL.
//!
//! A lease counts like a stream for quota and for its tenant's `max_streams`.
//! It expires at `expires_at = now + ttl`: from that instant (inclusive) a
//! refresh is refused with `expired`, and the next [`Allocator::expire`]
//! frees its quota and its tenant slot, so a crashed gateway leaks nothing.

use super::allocator::{Allocator, Changes, Term};
use super::reason::Refusal;
use super::types::{Holder, LeaseId, Millis, Priority, Rate};

/// A lease granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseGrant {
    /// The lease's id, for refresh and release.
    pub id: LeaseId,
    /// The lease's allocation now, in bytes per second.
    pub rate: u64,
    /// The lease is expired from this instant unless refreshed before it.
    pub expires_at: Millis,
    /// Preemptions and new rates of running streams.
    pub changes: Changes,
}

impl Allocator {
    /// Grants a lease under the same rules as [`Allocator::admit`].
    pub fn lease(
        &mut self,
        tenant: &str,
        pool: &str,
        priority: Priority,
        rate: Rate,
        ttl: Millis,
        now: Millis,
    ) -> Result<LeaseGrant, Refusal> {
        let id = LeaseId(self.next_lease);
        let mut changes = self.take(Holder::Lease(id), pool, tenant, priority, rate, now)?;
        self.relevel();
        let (rate, rates) = self.pace_newcomer(Holder::Lease(id));
        changes.rates = rates;
        self.next_lease += 1;
        let expires_at = now.saturating_add(ttl);
        self.leases.insert(id, Term { ttl, expires_at });
        self.expiry.insert((expires_at, id));
        Ok(LeaseGrant { id, rate, expires_at, changes })
    }

    /// Extends a live lease by its TTL from `now`; returns its current rate and
    /// new expiry. A preempted lease is refused once with `preempted`, then is unknown.
    pub fn refresh(&mut self, id: LeaseId, now: Millis) -> Result<(u64, Millis), Refusal> {
        if self.tombstones.remove(&id).is_some() {
            return Err(Refusal::Preempted(id));
        }
        let term = self.leases.get_mut(&id).ok_or(Refusal::UnknownLease(id))?;
        if term.expires_at <= now {
            return Err(Refusal::Expired(id));
        }
        self.expiry.remove(&(term.expires_at, id));
        term.expires_at = now.saturating_add(term.ttl);
        let expires_at = term.expires_at;
        self.expiry.insert((expires_at, id));
        Ok((self.lease_rate(id).unwrap_or(0), expires_at))
    }

    /// Frees a lease before its TTL. The others' share of what it frees
    /// reaches them at the next [`Allocator::sweep`].
    pub fn release_lease(&mut self, id: LeaseId) -> Result<(), Refusal> {
        if self.tombstones.remove(&id).is_some() {
            return Ok(());
        }
        self.remove(Holder::Lease(id)).ok_or(Refusal::UnknownLease(id))?;
        self.relevel();
        Ok(())
    }

    /// Frees every lease with `expires_at <= now`, and forgets preempted
    /// leases whose holders never came back for the news. Returns the leases
    /// freed, in expiry order; the others' share of what they held reaches
    /// them at the next [`Allocator::sweep`].
    pub fn expire(&mut self, now: Millis) -> Vec<LeaseId> {
        self.expire_up_to(now, usize::MAX)
    }

    /// [`expire`](Self::expire), freeing at most `most` leases (the
    /// earliest due): the rest wait for the next call.
    pub fn expire_up_to(&mut self, now: Millis, most: usize) -> Vec<LeaseId> {
        self.tombstones.retain(|_, expires_at| *expires_at > now);
        let mut leases = Vec::new();
        while let Some(&(at, id)) = self.expiry.first() {
            if at > now || leases.len() >= most {
                break;
            }
            self.remove(Holder::Lease(id));
            leases.push(id);
        }
        if !leases.is_empty() {
            self.relevel();
        }
        leases
    }

    /// The rate a lease may use now, in bytes per second: paced like a stream's.
    pub fn lease_rate(&self, id: LeaseId) -> Option<u64> {
        self.index.get(&Holder::Lease(id)).map(|&i| self.entries[i].paced)
    }

    /// When a live lease expires.
    pub fn lease_expiry(&self, id: LeaseId) -> Option<Millis> {
        self.leases.get(&id).map(|t| t.expires_at)
    }
}
