//! Property tests: random sequences of admit, release, lease, refresh,
//! release, expiry and capacity changes on a simulated clock, with the
//! allocator's invariants checked after every step.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const POOLS: [&str; 3] = ["a", "b", "c"];
const TENANTS: [&str; 3] = ["t0", "t1", "t2"];

#[derive(Debug, Clone)]
enum Op {
    Admit { pool: usize, tenant: usize, priority: u8, min: u64, span: u64 },
    Release(usize),
    Lease { pool: usize, tenant: usize, priority: u8, min: u64, span: u64, ttl: u64 },
    Refresh(usize),
    ReleaseLease(usize),
    Advance(u64),
    HostCapacity(u64),
    Sweep,
    Usage { stream: usize, used: u64 },
    Bursts,
    PoolCapacity { pool: usize, capacity: Option<u64> },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..3usize, 0..3usize, 0..4u8, 0..20u64, 0..40u64)
            .prop_map(|(pool, tenant, priority, min, span)| Op::Admit { pool, tenant, priority, min, span }),
        3 => any::<usize>().prop_map(Op::Release),
        3 => (0..3usize, 0..3usize, 0..4u8, 0..20u64, 0..40u64, 0..50u64).prop_map(
            |(pool, tenant, priority, min, span, ttl)| Op::Lease { pool, tenant, priority, min, span, ttl }
        ),
        2 => any::<usize>().prop_map(Op::Refresh),
        1 => any::<usize>().prop_map(Op::ReleaseLease),
        2 => (0..30u64).prop_map(Op::Advance),
        1 => (0..250u64).prop_map(Op::HostCapacity),
        2 => Just(Op::Sweep),
        2 => (any::<usize>(), 0..60u64).prop_map(|(stream, used)| Op::Usage { stream, used }),
        2 => Just(Op::Bursts),
        1 => (0..3usize, proptest::option::of(0..150u64)).prop_map(|(pool, capacity)| Op::PoolCapacity { pool, capacity }),
    ]
}

/// What the test knows independently of the allocator.
#[derive(Default)]
struct Model {
    now: Millis,
    next_key: u64,
    streams: Vec<StreamKey>,
    /// Live leases and when they expire.
    leases: BTreeMap<LeaseId, (Millis, Millis)>,
}

impl Model {
    fn forget(&mut self, changes: &Changes) {
        self.streams.retain(|k| !changes.preempted.contains(k));
        for id in &changes.preempted_leases {
            self.leases.remove(id);
        }
    }
}

fn setup() -> Allocator {
    let mut a = Allocator::new(150);
    a.set_pool("a", Some(80), true);
    a.set_pool("b", None, false);
    a.set_pool("c", Some(50), true);
    a.set_default_tenant_limit(8);
    a.set_burst_window(20);
    a.set_tenant_limit("t0", 4);
    a
}

/// Checks that a refusal for capacity was deserved: even preempting every
/// strictly lower-priority holder it may preempt, the minimum would not fit.
fn refusal_is_deserved(a: &Allocator, pool: usize, priority: Priority, min: u64) -> bool {
    let p = &a.pools[pool];
    let may_preempt = |e: &&allocator::Entry| p.preempt && e.priority < priority && a.pools[e.demand.pool].preempt;
    let host_freeable: u64 = a.entries.iter().filter(may_preempt).map(|e| e.demand.min).sum();
    let pool_freeable: u64 =
        a.entries.iter().filter(may_preempt).filter(|e| e.demand.pool == pool).map(|e| e.demand.min).sum();
    a.host_min - host_freeable + min > a.host_capacity
        || p.capacity.is_some_and(|c| p.min_sum - pool_freeable + min > c)
}

fn check_invariants(a: &Allocator, m: &Model, swept: bool) -> Result<(), TestCaseError> {
    let np = a.pools.len();
    let (mut pool_sum, mut pool_paced, mut pool_below) = (vec![0u64; np], vec![0u64; np], vec![0u64; np]);
    let (mut host_sum, mut host_paced, mut host_below) = (0u64, 0u64, 0u64);
    for e in &a.entries {
        let d = &e.demand;
        let alloc = a.allocation_of(e);
        prop_assert!(d.min <= alloc && alloc <= d.max, "{:?} outside {}..={}: {}", e.holder, d.min, d.max, alloc);
        prop_assert!(d.min <= e.paced && e.paced <= d.max, "{:?} paced outside its rate: {}", e.holder, e.paced);
        if swept {
            let in_band = e.paced <= alloc && e.paced >= alloc - alloc / 32;
            prop_assert!(
                in_band && (alloc < d.max || e.paced == alloc),
                "{:?} paced {} for {alloc}",
                e.holder,
                e.paced
            );
        }
        pool_sum[d.pool] += alloc;
        host_sum += alloc;
        pool_paced[d.pool] += e.paced;
        host_paced += e.paced;
        if alloc < d.max {
            pool_below[d.pool] += 1;
            host_below += 1;
        }
    }
    prop_assert!(host_sum <= a.host_capacity, "host over capacity: {host_sum} > {}", a.host_capacity);
    prop_assert!(host_paced <= a.host_capacity, "host paced over capacity: {host_paced} > {}", a.host_capacity);
    prop_assert_eq!(u128::from(host_paced), a.host_paced);
    for (p, pool) in a.pools.iter().enumerate() {
        let cap = pool.capacity.unwrap_or(u64::MAX);
        prop_assert!(pool_sum[p] <= cap, "pool {} over capacity: {} > {cap}", pool.name, pool_sum[p]);
        prop_assert!(pool_paced[p] <= cap, "pool {} paced over capacity: {} > {cap}", pool.name, pool_paced[p]);
        prop_assert_eq!(u128::from(pool_paced[p]), pool.paced);
    }
    // Work-conserving, up to rounding down: what a level leaves idle is less
    // than one byte per second per holder below its max.
    let host_idle = a.host_capacity - host_sum;
    for e in &a.entries {
        let p = e.demand.pool;
        let pool_idle = a.pools[p].capacity.map_or(u64::MAX, |c| c - pool_sum[p]);
        prop_assert!(
            a.allocation_of(e) == e.demand.max || host_idle < host_below || pool_idle < pool_below[p],
            "idle capacity while {:?} is below its max",
            e.holder
        );
    }
    for x in &a.entries {
        for y in &a.entries {
            let same = (x.demand.pool, x.demand.min, x.demand.max, x.priority)
                == (y.demand.pool, y.demand.min, y.demand.max, y.priority);
            prop_assert!(
                !same || a.allocation_of(x) == a.allocation_of(y),
                "unequal shares {:?} {:?}",
                x.holder,
                y.holder
            );
        }
    }
    let mut ends = BTreeSet::new();
    for e in &a.entries {
        if let Some(b) = e.burst {
            prop_assert!(b.rate <= e.demand.max, "{:?} bursts over its max", e.holder);
            prop_assert!(matches!(e.holder, Holder::Stream(_)), "a lease bursts");
            ends.insert((b.until, e.holder));
        }
    }
    prop_assert_eq!(&ends, &a.burst_ends, "burst ends track the bursts");
    for (i, t) in a.tenants.iter().enumerate() {
        prop_assert!(t.slots <= t.limit.unwrap_or(a.default_tenant_limit), "tenant {} over its limit", t.name);
        let indexed = a.tenant_index.get(&t.name) == Some(&i);
        prop_assert_eq!(indexed, !a.free_tenants.contains(&i), "tenant {} is either indexed or free", i);
        prop_assert!(indexed || t.slots == 0, "a forgotten tenant holds nothing");
        prop_assert!(!indexed || t.slots > 0 || t.limit.is_some(), "an idle tenant {} is kept", t.name);
    }
    prop_assert_eq!(a.len(), m.streams.len() + m.leases.len());
    for (id, (expires_at, _)) in &m.leases {
        prop_assert_eq!(a.lease_expiry(*id), Some(*expires_at));
    }
    Ok(())
}

fn step(a: &mut Allocator, m: &mut Model, op: Op) -> Result<(), TestCaseError> {
    match op {
        Op::Admit { pool, tenant, priority, min, span } => {
            let key = StreamKey(m.next_key);
            m.next_key += 1;
            let (priority, rate) = (Priority(priority), Rate { min, max: min + span });
            let before: BTreeMap<Holder, Priority> = a.entries.iter().map(|e| (e.holder, e.priority)).collect();
            let refusable = refusal_is_deserved(a, pool, priority, min);
            match a.admit(key, POOLS[pool], TENANTS[tenant], priority, rate, m.now) {
                Ok(admission) => {
                    let victims = admission.changes.preempted.iter().map(|k| Holder::Stream(*k));
                    let victims = victims.chain(admission.changes.preempted_leases.iter().map(|l| Holder::Lease(*l)));
                    for v in victims {
                        prop_assert!(before[&v] < priority, "{v:?} preempted by an equal or lower priority");
                    }
                    m.forget(&admission.changes);
                    m.streams.push(key);
                }
                Err(Refusal::Insufficient { .. }) => prop_assert!(refusable, "refused though preemption makes room"),
                Err(Refusal::TenantLimit { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected refusal {other:?}"),
            }
        }
        Op::Release(i) if !m.streams.is_empty() => {
            let key = m.streams.swap_remove(i % m.streams.len());
            a.release(key);
            prop_assert_eq!(a.allocation(key), None);
        }
        Op::Lease { pool, tenant, priority, min, span, ttl } => {
            let rate = Rate { min, max: min + span };
            if let Ok(grant) = a.lease(TENANTS[tenant], POOLS[pool], Priority(priority), rate, ttl, m.now) {
                prop_assert_eq!(grant.expires_at, m.now + ttl);
                m.forget(&grant.changes);
                m.leases.insert(grant.id, (grant.expires_at, ttl));
            }
        }
        Op::Refresh(i) if !m.leases.is_empty() => {
            let id = *m.leases.keys().nth(i % m.leases.len()).unwrap_or(&LeaseId(0));
            let (expires_at, ttl) = m.leases[&id];
            match a.refresh(id, m.now) {
                Ok((_, new_expiry)) => {
                    prop_assert!(expires_at > m.now, "refreshed at or after its expiry");
                    prop_assert_eq!(new_expiry, m.now + ttl);
                    m.leases.insert(id, (new_expiry, ttl));
                }
                Err(refusal) => {
                    prop_assert_eq!(refusal, Refusal::Expired(id));
                    prop_assert!(expires_at <= m.now, "expired early");
                }
            }
        }
        Op::ReleaseLease(i) if !m.leases.is_empty() => {
            let id = *m.leases.keys().nth(i % m.leases.len()).unwrap_or(&LeaseId(0));
            m.leases.remove(&id);
            prop_assert!(a.release_lease(id).is_ok());
        }
        Op::Advance(dt) => {
            m.now += dt;
            let due: Vec<LeaseId> = m.leases.iter().filter(|(_, (at, _))| *at <= m.now).map(|(id, _)| *id).collect();
            let mut freed = a.expire(m.now);
            freed.sort_unstable();
            prop_assert_eq!(&freed, &due, "expired exactly the leases at or past their ttl");
            m.leases.retain(|_, (at, _)| *at > m.now);
        }
        Op::HostCapacity(capacity) => {
            let changes = a.set_host_capacity(capacity);
            m.forget(&changes);
        }
        Op::PoolCapacity { pool, capacity } => {
            let preempt = a.pools[pool].preempt;
            let changes = a.set_pool(POOLS[pool], capacity, preempt);
            m.forget(&changes);
        }
        Op::Sweep => {
            a.sweep();
        }
        Op::Usage { stream, used } if !m.streams.is_empty() => {
            a.record_usage(m.streams[stream % m.streams.len()], used);
        }
        Op::Usage { .. } => {}
        Op::Bursts => {
            a.end_bursts(m.now);
            a.grant_bursts(m.now);
            for e in &a.entries {
                if let Some(b) = e.burst {
                    prop_assert!(b.until > m.now, "{:?} bursts past its window", e.holder);
                    prop_assert!(b.until <= m.now + a.burst_window);
                }
            }
        }
        Op::Release(_) | Op::Refresh(_) | Op::ReleaseLease(_) => {}
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_over_random_sequences(ops in proptest::collection::vec(op(), 1..120)) {
        let mut a = setup();
        let mut m = Model::default();
        for op in ops {
            let swept = matches!(op, Op::Sweep);
            step(&mut a, &mut m, op)?;
            check_invariants(&a, &m, swept)?;
        }
    }

    #[test]
    fn equal_weights_and_maxes_give_equal_shares(n in 1..40u64, capacity in 0..2_000u64, max in 1..200u64) {
        let mut a = Allocator::new(capacity);
        a.set_pool("p", None, false);
        let mut admitted = Vec::new();
        for k in 0..n {
            if a.admit(StreamKey(k), "p", "t", Priority(1), Rate { min: 0, max }, 0).is_ok() {
                admitted.push(a.allocation(StreamKey(k)));
            }
        }
        let rates: Vec<u64> = (0..n).filter_map(|k| a.allocation(StreamKey(k))).collect();
        let (lo, hi) = (rates.iter().min().copied().unwrap_or(0), rates.iter().max().copied().unwrap_or(0));
        prop_assert_eq!(hi, lo, "shares {:?}", rates);
        prop_assert_eq!(lo, (capacity / n).min(max), "rounded down");
        prop_assert_eq!(admitted.len() as u64, n);
    }
}
