//! The allocator's state and its stream operations: admit, release, capacity.

use std::collections::{BTreeSet, HashMap};

use super::levels::{Item, LevelIndex, Scope, Water};
use super::reason::Refusal;
use super::types::{Holder, LeaseId, Level, Millis, PoolId, Priority, Rate, StreamKey, TenantId};

/// What changed for holders other than the one asked about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Streams closed with reason `preempted`: the daemon closes them and tells their gateways.
    pub preempted: Vec<StreamKey>,
    /// Leases closed with reason `preempted`: their next refresh is refused with it.
    pub preempted_leases: Vec<LeaseId>,
    /// Every other running stream whose paced rate changed, with the new rate
    /// (`UpdateRate`). Raises, and lowers that fit without, wait for [`Allocator::sweep`].
    pub rates: Vec<(StreamKey, u64)>,
}

/// A stream admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// The rate the stream is paced at, in bytes per second (see [`Allocator::paced`]).
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
    /// The sum of every holder's paced rate.
    pub(super) host_paced: u128,
    /// The host's water level above the minimums.
    pub(super) host_water: Water,
    /// Every demand, sorted by saturation level.
    pub(super) levels: LevelIndex,
    /// Allocations moved since the last [`Allocator::sweep`].
    pub(super) stale: bool,
    pub(super) pools: Vec<Pool>,
    pub(super) pool_index: HashMap<PoolId, usize>,
    /// Tenants by index; a free index (in `free_tenants`) has an empty name
    /// and holds nothing.
    pub(super) tenants: Vec<Tenant>,
    pub(super) tenant_index: HashMap<TenantId, usize>,
    pub(super) free_tenants: Vec<usize>,
    /// The tenant a holder is being taken for, kept while its admission
    /// preempts others.
    pinned_tenant: Option<usize>,
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
    /// `(until, holder)` of every running burst.
    pub(super) burst_ends: BTreeSet<(Millis, Holder)>,
}

#[derive(Debug, Clone)]
pub(super) struct Pool {
    pub name: PoolId,
    pub capacity: Option<u64>,
    pub preempt: bool,
    pub min_sum: u64,
    /// The sum of the maxima of its holders (u128: no overflow).
    pub max_sum: u128,
    /// The sum of its holders' paced rates.
    pub paced: u128,
    /// Its own water level, if it has a capacity, else `Full`.
    pub water: Water,
    /// The level its holders are at: the lower of its own and the host's.
    pub level: Water,
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

/// One holder's demand on the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Demand {
    /// Index of the pool in the allocator's pool table.
    pub pool: usize,
    pub min: u64,
    pub max: u64,
    pub weight: u32,
    /// Admission order.
    pub seq: u64,
}

impl Demand {
    pub fn span(&self) -> u64 {
        self.max - self.min
    }

    fn item(&self) -> Item {
        Item { span: self.span(), weight: self.weight, pool: self.pool as u32, seq: self.seq }
    }
}

#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub demand: Demand,
    pub holder: Holder,
    pub tenant: usize,
    pub priority: Priority,
    pub since: Millis,
    /// The rate last handed out (`UpdateRate`, pacing): near the allocation,
    /// see [`Allocator::sweep`].
    pub paced: u64,
    /// Its recent send rate, if reported.
    pub used: Option<u64>,
    pub burst: Option<super::burst::Burst>,
    /// No new burst before this instant.
    pub cool_until: Millis,
}

impl Allocator {
    /// An allocator sharing `host_capacity` bytes per second, with no pools,
    /// no tenant limit and a burst window of 2 seconds.
    pub fn new(host_capacity: u64) -> Self {
        Allocator {
            host_capacity,
            host_min: 0,
            host_max: 0,
            host_paced: 0,
            host_water: Water::Full,
            levels: LevelIndex::default(),
            stale: false,
            pools: Vec::new(),
            pool_index: HashMap::new(),
            tenants: Vec::new(),
            free_tenants: Vec::new(),
            pinned_tenant: None,
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
            burst_ends: BTreeSet::new(),
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
                self.pools.push(Pool {
                    name: pool.to_owned(),
                    capacity: None,
                    preempt,
                    min_sum: 0,
                    max_sum: 0,
                    paced: 0,
                    water: Water::Full,
                    level: Water::Full,
                });
                self.levels.add_pool();
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

    /// How long a burst granted by [`Allocator::grant_bursts`] lasts, in
    /// milliseconds (and how long the stream then waits before the next); 0:
    /// no bursts.
    pub fn set_burst_window(&mut self, window: Millis) {
        self.burst_window = window;
    }

    /// Admits a stream: reserves its minimum, preempting strictly
    /// lower-priority holders if the pool allows, then raises the water.
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
        let mut changes = self.take(holder, pool, tenant, priority, rate, now)?;
        self.relevel();
        let (rate, rates) = self.pace_newcomer(holder);
        changes.rates = rates;
        Ok(Admission { rate, changes })
    }

    /// Admits many streams under the same rules as [`Allocator::admit`], one
    /// after the other, but finds the levels once at the end: for a daemon
    /// that restarts with streams running. `changes.rates` lists the streams
    /// whose paced rate changed, the new ones included (one paced at 0 is not
    /// listed: [`Allocator::paced`] tells).
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
        self.relevel();
        batch.changes.rates = self.sweep();
        batch
    }

    /// Ends a stream. The others' share of what it frees reaches them at the
    /// next [`Allocator::sweep`]. An unknown key changes nothing.
    pub fn release(&mut self, key: StreamKey) {
        if self.remove(Holder::Stream(key)).is_some() {
            self.relevel();
        }
    }

    /// A stream's allocation in bytes per second: its fair share now.
    pub fn allocation(&self, key: StreamKey) -> Option<u64> {
        self.index.get(&Holder::Stream(key)).map(|&i| self.allocation_of(&self.entries[i]))
    }

    /// The rate a stream is paced at: its allocation, less a margin while it
    /// is below its max (see [`Allocator::sweep`]).
    pub fn paced(&self, key: StreamKey) -> Option<u64> {
        self.index.get(&Holder::Stream(key)).map(|&i| self.entries[i].paced)
    }

    pub(super) fn allocation_of(&self, e: &Entry) -> u64 {
        let d = &e.demand;
        d.min + self.pools[d.pool].level.share(d.span(), d.weight)
    }

    /// The number of streams and leases held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Finds the levels again and re-paces every holder: what every change
    /// did once, kept to measure it against. Returns the streams whose
    /// paced rate changed.
    pub fn reallocate(&mut self) -> Vec<(StreamKey, u64)> {
        self.relevel();
        self.sweep()
    }

    /// Whether allocations moved since the last [`Allocator::sweep`].
    pub fn stale(&self) -> bool {
        self.stale
    }

    /// Brings every paced rate near its allocation and returns the streams
    /// whose paced rate changed.
    ///
    /// Paced rates trail allocations on purpose. A holder is paced at its
    /// allocation less 1/64 (at its max exactly), and only re-paced when
    /// its allocation falls below that or rises more than 1/32 above. So an
    /// admission usually fits in the margin the others leave, and is paced at
    /// once without touching them (O(1) instead of O(n) rate changes); when
    /// it does not fit, the admission sweeps itself. Lowers that a release or
    /// a raise makes possible wait for the caller's next sweep (the daemon's
    /// runs every 50 ms). The sum of the paced rates never exceeds a capacity.
    pub fn sweep(&mut self) -> Vec<(StreamKey, u64)> {
        self.stale = false;
        let mut changed = Vec::new();
        for i in 0..self.entries.len() {
            let alloc = self.allocation_of(&self.entries[i]);
            let e = &self.entries[i];
            let at_max = alloc == e.demand.max;
            if e.paced > alloc || e.paced < alloc - alloc / 32 || (at_max && e.paced != alloc) {
                let before = e.rate_now();
                self.set_paced(i, pace(&e.demand, alloc));
                let e = &self.entries[i];
                if let (Holder::Stream(key), true) = (e.holder, e.rate_now() != before) {
                    changed.push((key, e.rate_now()));
                }
            }
        }
        changed.sort_unstable();
        changed
    }

    fn set_paced(&mut self, i: usize, paced: u64) {
        let e = &mut self.entries[i];
        let pool = &mut self.pools[e.demand.pool];
        pool.paced = pool.paced - u128::from(e.paced) + u128::from(paced);
        self.host_paced = self.host_paced - u128::from(e.paced) + u128::from(paced);
        e.paced = paced;
    }

    /// Paces a holder just taken, sweeping the others first if it does not
    /// fit beside them. Running bursts end: what they borrowed may be the
    /// newcomer's now. Its paced rate, and the others' rates that changed.
    pub(super) fn pace_newcomer(&mut self, holder: Holder) -> (u64, Vec<(StreamKey, u64)>) {
        let i = self.index[&holder];
        let paced = pace(&self.entries[i].demand, self.allocation_of(&self.entries[i]));
        self.set_paced(i, paced);
        let p = &self.pools[self.entries[i].demand.pool];
        let over = self.host_paced > u128::from(self.host_capacity) || p.capacity.is_some_and(|c| p.paced > c.into());
        let ended = self.end_all_bursts();
        let swept = if over { self.sweep() } else { Vec::new() };
        let key = match holder {
            Holder::Stream(key) => Some(key),
            Holder::Lease(_) => None,
        };
        let mut rates = self.rates_now(ended.into_iter().chain(swept).map(|(k, _)| k));
        rates.retain(|(k, _)| Some(*k) != key);
        (self.entries[self.index[&holder]].paced, rates)
    }

    /// `(key, rate now)` for each of `keys`, sorted, once each.
    pub(super) fn rates_now(&self, keys: impl Iterator<Item = StreamKey>) -> Vec<(StreamKey, u64)> {
        let mut keys: Vec<StreamKey> = keys.collect();
        keys.sort_unstable();
        keys.dedup();
        keys.into_iter().filter_map(|k| self.rate_now(k).map(|r| (k, r))).collect()
    }

    /// Reserves `rate.min` for a new holder, preempting if needed and allowed.
    /// The caller finds the new levels. Shared by streams and leases.
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
        // (Preempting its tenant's last holder must not forget the tenant
        // this holder joins.)
        self.pinned_tenant = Some(t);
        let taken = self.take_for(holder, p, t, pool, tenant, priority, rate, now);
        self.pinned_tenant = None;
        if taken.is_err() {
            self.forget_tenant_if_idle(t);
        }
        taken
    }

    /// [`take`](Self::take) once the pool and tenant are found.
    #[allow(clippy::too_many_arguments)]
    fn take_for(
        &mut self,
        holder: Holder,
        p: usize,
        t: usize,
        pool: &str,
        tenant: &str,
        priority: Priority,
        rate: Rate,
        now: Millis,
    ) -> Result<Changes, Refusal> {
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
        self.entries.push(Entry {
            demand,
            holder,
            tenant: t,
            priority,
            since: now,
            paced: 0,
            used: None,
            burst: None,
            cool_until: 0,
        });
        self.levels.insert(demand.item());
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

    /// After a capacity change: preempts until every level's minimums fit,
    /// then finds the levels and re-paces.
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
        self.relevel();
        let ended = self.end_all_bursts();
        let swept = self.sweep();
        changes.rates = self.rates_now(ended.into_iter().chain(swept).map(|(k, _)| k));
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

    /// Forgets a holder without finding the new levels. `None` if unknown;
    /// for a lease, its term.
    pub(super) fn remove(&mut self, holder: Holder) -> Option<Option<Term>> {
        let i = *self.index.get(&holder)?;
        self.set_paced(i, 0);
        self.index.remove(&holder);
        let e = self.entries.swap_remove(i);
        if let Some(b) = e.burst {
            self.burst_ends.remove(&(b.until, holder));
        }
        if let Some(moved) = self.entries.get(i) {
            self.index.insert(moved.holder, i);
        }
        let removed = self.levels.remove(&e.demand.item());
        debug_assert!(removed, "every holder is in the level index");
        self.pools[e.demand.pool].min_sum = self.pools[e.demand.pool].min_sum.saturating_sub(e.demand.min);
        self.host_min = self.host_min.saturating_sub(e.demand.min);
        self.pools[e.demand.pool].max_sum -= u128::from(e.demand.max);
        self.host_max -= u128::from(e.demand.max);
        self.tenants[e.tenant].slots -= 1;
        self.forget_tenant_if_idle(e.tenant);
        let term = match holder {
            Holder::Lease(id) => self.leases.remove(&id).inspect(|t| {
                self.expiry.remove(&(t.expires_at, id));
            }),
            Holder::Stream(_) => None,
        };
        Some(term)
    }

    /// Finds the water levels: each capped pool's own, then the host's over
    /// the pools not already full at theirs (progressive filling: closing a
    /// full pool only raises the host's level, so at most one pass per pool).
    /// No holder is touched; their allocations follow from the levels.
    pub(super) fn relevel(&mut self) {
        let before: Vec<Water> = self.pools.iter().map(|p| p.level).collect();
        let fits = |cap: u64, min: u64, max: u128| max - u128::from(min) <= u128::from(cap.saturating_sub(min));
        for (p, pool) in self.pools.iter_mut().enumerate() {
            pool.water = match pool.capacity {
                Some(c) if !fits(c, pool.min_sum, pool.max_sum) => {
                    self.levels.solve(c.saturating_sub(pool.min_sum), Scope::Pool(p))
                }
                _ => Water::Full,
            };
        }
        let host_residual = self.host_capacity.saturating_sub(self.host_min);
        self.host_water = if fits(self.host_capacity, self.host_min, self.host_max) {
            Water::Full
        } else {
            let mut closed = vec![false; self.pools.len()];
            let mut taken = 0u64;
            loop {
                let water = self.levels.solve(host_residual.saturating_sub(taken), Scope::Open { closed: &closed });
                let mut more = false;
                for (p, pool) in self.pools.iter().enumerate() {
                    if !closed[p] && pool.water.below(water) {
                        closed[p] = true;
                        more = true;
                        // A full pool holds exactly its residual (before rounding down).
                        let cap = pool.capacity.expect("only a capped pool has a level");
                        taken = taken.saturating_add(cap.saturating_sub(pool.min_sum));
                    }
                }
                if !more {
                    break water;
                }
            }
        };
        for pool in &mut self.pools {
            pool.level = pool.water.min(self.host_water);
        }
        if self.pools.iter().zip(before).any(|(p, b)| p.level != b) {
            self.stale = true;
        }
    }

    /// The tenant's index: its own, or a new one (a free one first).
    fn tenant(&mut self, tenant: &str) -> usize {
        if let Some(&t) = self.tenant_index.get(tenant) {
            return t;
        }
        let fresh = Tenant { name: tenant.to_owned(), limit: None, slots: 0 };
        let t = match self.free_tenants.pop() {
            Some(t) => {
                self.tenants[t] = fresh;
                t
            }
            None => {
                self.tenants.push(fresh);
                self.tenants.len() - 1
            }
        };
        self.tenant_index.insert(tenant.to_owned(), t);
        t
    }

    /// A tenant that holds nothing and has no limit of its own is forgotten
    /// (its index is free for the next new one): tenant names come from
    /// clients, and every name ever seen must not stay.
    fn forget_tenant_if_idle(&mut self, t: usize) {
        let tenant = &mut self.tenants[t];
        if tenant.slots > 0 || tenant.limit.is_some() || self.pinned_tenant == Some(t) {
            return;
        }
        let name = std::mem::take(&mut tenant.name);
        self.tenant_index.remove(&name);
        self.free_tenants.push(t);
    }
}

/// The paced rate for an allocation: less a margin of 1/64, never below the
/// minimum; the max itself when the holder is at it.
fn pace(d: &Demand, alloc: u64) -> u64 {
    if alloc == d.max {
        alloc
    } else {
        (alloc - alloc / 64).max(d.min)
    }
}

/// Preemption order: lowest priority first, then the newest.
fn shed_order(a: &Entry, b: &Entry) -> std::cmp::Ordering {
    a.priority.cmp(&b.priority).then(b.since.cmp(&a.since)).then(b.demand.seq.cmp(&a.demand.seq))
}
