//! The allocator's state and its stream operations: admit, release, capacity.

use std::collections::{BTreeSet, HashMap};

use super::fill::{water_fill, Demand};
use super::reason::Refusal;
use super::types::{Holder, LeaseId, Level, Millis, PoolId, Priority, Rate, StreamKey, TenantId};

/// What changed for holders other than the one asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Streams closed with reason `preempted`: the daemon closes them and tells their gateways.
    pub preempted: Vec<StreamKey>,
    /// Leases closed with reason `preempted`: their next refresh is refused with it.
    pub preempted_leases: Vec<LeaseId>,
    /// Every running stream whose allocation changed, with its new rate (`UpdateRate`).
    pub rates: Vec<(StreamKey, u64)>,
}

/// A stream admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The stream's allocation, in bytes per second.
    pub rate: u64,
    /// Preemptions and new rates of the other streams.
    pub changes: Changes,
}

/// What [`Allocator::admit_batch`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchAdmission {
    /// The streams refused, and why.
    pub refused: Vec<(StreamKey, Refusal)>,
    /// Preemptions, and the rates of every stream whose rate changed.
    pub changes: Changes,
}

/// The bandwidth allocator: host, pools, tenants, streams and leases.
/// See the [module docs](super) for the rules.
#[derive(Debug, Clone)]
pub struct Allocator {
    pub(super) host_capacity: u64,
    /// The sum of the minimums of every holder.
    pub(super) host_min: u64,
    /// The sum of every holder's max (u128: no overflow).
    pub(super) host_max: u128,
    pub(super) pools: Vec<Pool>,
    pub(super) pool_index: HashMap<PoolId, usize>,
    pub(super) tenants: Vec<Tenant>,
    pub(super) tenant_index: HashMap<TenantId, usize>,
    pub(super) default_tenant_limit: u32,
    /// Holders in no particular order; `index` finds them.
    pub(super) entries: Vec<Entry>,
    pub(super) index: HashMap<Holder, usize>,
    pub(super) leases: HashMap<LeaseId, Term>,
    /// `(expires_at, id)` of every live lease.
    pub(super) expiry: BTreeSet<(Millis, LeaseId)>,
    /// Preempted leases not yet told, with the time they would have expired.
    pub(super) tombstones: HashMap<LeaseId, Millis>,
    pub(super) next_lease: u64,
    pub(super) next_seq: u64,
    pub(super) burst_window: Millis,
}

#[derive(Debug, Clone)]
pub(super) struct Pool {
    pub name: PoolId,
    pub capacity: Option<u64>,
    pub preempt: bool,
    pub min_sum: u64,
    /// The sum of the maxima of its holders (u128: no overflow).
    pub max_sum: u128,
}

#[derive(Debug, Clone)]
pub(super) struct Tenant {
    pub name: TenantId,
    pub limit: Option<u32>,
    pub slots: u32,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Term {
    pub ttl: Millis,
    pub expires_at: Millis,
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub demand: Demand,
    pub holder: Holder,
    pub tenant: usize,
    pub priority: Priority,
    pub since: Millis,
    pub alloc: u64,
}

impl AsRef<Demand> for Entry {
    fn as_ref(&self) -> &Demand {
        &self.demand
    }
}

impl Allocator {
    /// An allocator sharing `host_capacity` bytes per second, with no pools,
    /// no tenant limit and a burst window of 2 seconds.
    pub fn new(host_capacity: u64) -> Self {
        Allocator {
            host_capacity,
            host_min: 0,
            host_max: 0,
            pools: Vec::new(),
            pool_index: HashMap::new(),
            tenants: Vec::new(),
            tenant_index: HashMap::new(),
            default_tenant_limit: u32::MAX,
            entries: Vec::new(),
            index: HashMap::new(),
            leases: HashMap::new(),
            expiry: BTreeSet::new(),
            tombstones: HashMap::new(),
            next_lease: 1,
            next_seq: 0,
            burst_window: 2_000,
        }
    }

    /// Declares a pool or changes it. `capacity: None` leaves only the host's limit.
    /// With `preempt`, its streams may preempt lower-priority ones and be preempted.
    /// If the pool's running minimums no longer fit, the lowest-priority, newest
    /// of its holders are preempted until they do.
    pub fn set_pool(&mut self, pool: &str, capacity: Option<u64>, preempt: bool) -> Changes {
        let p = match self.pool_index.get(pool) {
            Some(&p) => p,
            None => {
                self.pools.push(Pool { name: pool.to_owned(), capacity: None, preempt, min_sum: 0, max_sum: 0 });
                self.pool_index.insert(pool.to_owned(), self.pools.len() - 1);
                self.pools.len() - 1
            }
        };
        self.pools[p].capacity = capacity;
        self.pools[p].preempt = preempt;
        self.shed_and_rebalance()
    }

    /// Changes the host's capacity, preempting the lowest-priority, newest
    /// holders (in any pool) if the running minimums no longer fit.
    pub fn set_host_capacity(&mut self, capacity: u64) -> Changes {
        self.host_capacity = capacity;
        self.shed_and_rebalance()
    }

    /// The `max_streams` of a tenant (streams and leases together). Holders
    /// already over a lowered limit keep running; new ones are refused.
    pub fn set_tenant_limit(&mut self, tenant: &str, max_streams: u32) {
        let t = self.tenant(tenant);
        self.tenants[t].limit = Some(max_streams);
    }

    /// The `max_streams` of tenants without their own limit (`[tenants.default]`).
    /// Unlimited until set.
    pub fn set_default_tenant_limit(&mut self, max_streams: u32) {
        self.default_tenant_limit = max_streams;
    }

    /// How long a burst granted by [`Allocator::burst`] lasts, in milliseconds.
    pub fn set_burst_window(&mut self, window: Millis) {
        self.burst_window = window;
    }

    /// Admits a stream: reserves its minimum, preempting strictly
    /// lower-priority holders if the pool allows, then re-shares the residual.
    /// `now` is recorded as the stream's start: among preemption victims of
    /// equal priority, the newest goes first.
    pub fn admit(
        &mut self,
        key: StreamKey,
        pool: &str,
        tenant: &str,
        priority: Priority,
        rate: Rate,
        now: Millis,
    ) -> Result<Admission, Refusal> {
        let holder = Holder::Stream(key);
        if self.index.contains_key(&holder) {
            return Err(Refusal::Duplicate(key));
        }
        let before = self.unconstrained();
        let mut changes = self.take(holder, pool, tenant, priority, rate, now)?;
        if before && self.unconstrained() {
            // Every maximum fits, before and after: everyone holds its max,
            // and only the newcomer's allocation is new. O(1).
            let i = self.index[&holder];
            self.entries[i].alloc = self.entries[i].demand.max;
            return Ok(Admission { rate: self.entries[i].alloc, changes });
        }
        changes.rates = self.rebalance(Some(holder));
        Ok(Admission { rate: self.entries[self.index[&holder]].alloc, changes })
    }

    /// Admits many streams under the same rules as [`Allocator::admit`], one
    /// after the other, but re-shares once at the end: for a daemon that
    /// restarts with streams running. `changes.rates` lists every stream whose
    /// rate changed, the new ones included.
    pub fn admit_batch<'a, I>(&mut self, streams: I, now: Millis) -> BatchAdmission
    where
        I: IntoIterator<Item = (StreamKey, &'a str, &'a str, Priority, Rate)>,
    {
        let mut batch = BatchAdmission::default();
        for (key, pool, tenant, priority, rate) in streams {
            let holder = Holder::Stream(key);
            let taken = if self.index.contains_key(&holder) {
                Err(Refusal::Duplicate(key))
            } else {
                self.take(holder, pool, tenant, priority, rate, now)
            };
            match taken {
                Ok(c) => {
                    batch.changes.preempted.extend(c.preempted);
                    batch.changes.preempted_leases.extend(c.preempted_leases);
                }
                Err(refusal) => batch.refused.push((key, refusal)),
            }
        }
        batch.changes.rates = self.rebalance(None);
        batch
    }

    /// Ends a stream and re-shares its bandwidth; returns the new rates of the
    /// streams that changed. An unknown key changes nothing.
    pub fn release(&mut self, key: StreamKey) -> Vec<(StreamKey, u64)> {
        let before = self.unconstrained();
        if self.remove(Holder::Stream(key)).is_none() {
            return Vec::new();
        }
        if before {
            // Everyone held its max and still does. O(1).
            return Vec::new();
        }
        self.rebalance(None)
    }

    /// Whether every holder's max fits at the host and in its pool: then the
    /// sharing is trivial (each gets its max) and needs no water-filling.
    fn unconstrained(&self) -> bool {
        self.host_max <= u128::from(self.host_capacity)
            && self.pools.iter().all(|p| p.capacity.is_none_or(|c| p.max_sum <= u128::from(c)))
    }

    /// A stream's current allocation in bytes per second.
    pub fn allocation(&self, key: StreamKey) -> Option<u64> {
        self.index.get(&Holder::Stream(key)).map(|&i| self.entries[i].alloc)
    }

    /// The number of streams and leases held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Re-shares the residual from scratch and returns every stream whose
    /// allocation changed. Every admit and release does this already; the
    /// daemon need not call it.
    pub fn reallocate(&mut self) -> Vec<(StreamKey, u64)> {
        self.rebalance(None)
    }

    /// Reserves `rate.min` for a new holder, preempting if needed and allowed.
    /// The caller re-shares. Shared by streams and leases.
    pub(super) fn take(
        &mut self,
        holder: Holder,
        pool: &str,
        tenant: &str,
        priority: Priority,
        rate: Rate,
        now: Millis,
    ) -> Result<Changes, Refusal> {
        if rate.min > rate.max {
            return Err(Refusal::InvalidRate { min: rate.min, max: rate.max });
        }
        let p = *self.pool_index.get(pool).ok_or_else(|| Refusal::UnknownPool(pool.to_owned()))?;
        let t = self.tenant(tenant);
        let limit = self.tenants[t].limit.unwrap_or(self.default_tenant_limit);
        if self.tenants[t].slots >= limit {
            return Err(Refusal::TenantLimit { tenant: tenant.to_owned(), limit });
        }
        let host_need = (self.host_min.saturating_add(rate.min)).saturating_sub(self.host_capacity);
        let pool_need =
            self.pools[p].capacity.map_or(0, |c| (self.pools[p].min_sum.saturating_add(rate.min)).saturating_sub(c));
        let mut changes = Changes::default();
        if host_need > 0 || pool_need > 0 {
            let refusal = || {
                let (level, free) = if pool_need > 0 {
                    let c = self.pools[p].capacity.unwrap_or(u64::MAX);
                    (Level::Pool(pool.to_owned()), c.saturating_sub(self.pools[p].min_sum))
                } else {
                    (Level::Host, self.host_capacity.saturating_sub(self.host_min))
                };
                Refusal::Insufficient { level, need: rate.min, free }
            };
            if !self.pools[p].preempt {
                return Err(refusal());
            }
            let victims = self.victims(p, priority, host_need, pool_need).ok_or_else(refusal)?;
            for v in victims {
                self.preempt(v, &mut changes);
            }
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let demand = Demand { pool: p, min: rate.min, max: rate.max, weight: priority.weight(), seq };
        self.index.insert(holder, self.entries.len());
        self.entries.push(Entry { demand, holder, tenant: t, priority, since: now, alloc: 0 });
        // Saturating: the room check above saturates too, so sums of huge
        // minimums under an unlimited capacity stay well-defined.
        self.pools[p].min_sum = self.pools[p].min_sum.saturating_add(rate.min);
        self.host_min = self.host_min.saturating_add(rate.min);
        self.pools[p].max_sum += u128::from(rate.max);
        self.host_max += u128::from(rate.max);
        self.tenants[t].slots += 1;
        Ok(changes)
    }

    /// Strictly lower-priority holders in preemptible pools whose minimums
    /// cover the deficits, lowest priority and newest first; `None` if even
    /// all of them would not.
    fn victims(&self, pool: usize, priority: Priority, mut host_need: u64, mut pool_need: u64) -> Option<Vec<Holder>> {
        let mut candidates: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.priority < priority && e.demand.min > 0 && self.pools[e.demand.pool].preempt)
            .collect();
        candidates.sort_unstable_by(|a, b| shed_order(a, b));
        let mut chosen = Vec::new();
        for e in candidates {
            if host_need == 0 && pool_need == 0 {
                break;
            }
            let helps_pool = pool_need > 0 && e.demand.pool == pool;
            if !helps_pool && host_need == 0 {
                continue;
            }
            host_need = host_need.saturating_sub(e.demand.min);
            if e.demand.pool == pool {
                pool_need = pool_need.saturating_sub(e.demand.min);
            }
            chosen.push(e.holder);
        }
        (host_need == 0 && pool_need == 0).then_some(chosen)
    }

    /// After a capacity change: preempts until every level's minimums fit, then re-shares.
    fn shed_and_rebalance(&mut self) -> Changes {
        let mut changes = Changes::default();
        let over = |a: &Allocator, e: &Entry| {
            let pool = &a.pools[e.demand.pool];
            a.host_min > a.host_capacity || pool.capacity.is_some_and(|c| pool.min_sum > c)
        };
        if self.entries.iter().any(|e| over(self, e)) {
            let mut order: Vec<(Priority, Millis, u64, Holder)> =
                self.entries.iter().map(|e| (e.priority, e.since, e.demand.seq, e.holder)).collect();
            order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
            for (_, _, _, holder) in order {
                let e = &self.entries[self.index[&holder]];
                if e.demand.min > 0 && over(self, e) {
                    self.preempt(holder, &mut changes);
                }
            }
        }
        changes.rates = self.rebalance(None);
        changes
    }

    fn preempt(&mut self, holder: Holder, changes: &mut Changes) {
        let Some(term) = self.remove(holder) else { return };
        match holder {
            Holder::Stream(key) => changes.preempted.push(key),
            Holder::Lease(id) => {
                changes.preempted_leases.push(id);
                if let Some(term) = term {
                    self.tombstones.insert(id, term.expires_at);
                }
            }
        }
    }

    /// Forgets a holder without re-sharing. `None` if unknown; for a lease, its term.
    pub(super) fn remove(&mut self, holder: Holder) -> Option<Option<Term>> {
        let i = self.index.remove(&holder)?;
        let e = self.entries.swap_remove(i);
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.holder, i);
        }
        self.pools[e.demand.pool].min_sum = self.pools[e.demand.pool].min_sum.saturating_sub(e.demand.min);
        self.host_min = self.host_min.saturating_sub(e.demand.min);
        self.pools[e.demand.pool].max_sum -= u128::from(e.demand.max);
        self.host_max -= u128::from(e.demand.max);
        self.tenants[e.tenant].slots -= 1;
        let term = match holder {
            Holder::Lease(id) => self.leases.remove(&id).inspect(|t| {
                self.expiry.remove(&(t.expires_at, id));
            }),
            Holder::Stream(_) => None,
        };
        Some(term)
    }

    /// Water-fills from scratch; returns the streams whose rate changed, except `skip`.
    pub(super) fn rebalance(&mut self, skip: Option<Holder>) -> Vec<(StreamKey, u64)> {
        let caps: Vec<Option<u64>> = self.pools.iter().map(|p| p.capacity).collect();
        let alloc = water_fill(self.host_capacity, &caps, &self.entries);
        let mut changed = Vec::new();
        for (e, a) in self.entries.iter_mut().zip(alloc) {
            if e.alloc != a {
                e.alloc = a;
                if let Holder::Stream(key) = e.holder {
                    if Some(e.holder) != skip {
                        changed.push((key, a));
                    }
                }
            }
        }
        changed.sort_unstable();
        changed
    }

    fn tenant(&mut self, tenant: &str) -> usize {
        if let Some(&t) = self.tenant_index.get(tenant) {
            return t;
        }
        self.tenants.push(Tenant { name: tenant.to_owned(), limit: None, slots: 0 });
        self.tenant_index.insert(tenant.to_owned(), self.tenants.len() - 1);
        self.tenants.len() - 1
    }
}

/// Preemption order: lowest priority first, then the newest.
fn shed_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    a.priority.cmp(&b.priority).then(b.since.cmp(&a.since)).then(b.demand.seq.cmp(&a.demand.seq))
}
