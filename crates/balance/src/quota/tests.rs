//! Worked examples of the allocator's rules.

use super::*;

const BULK: Priority = Priority(0);
const LIVE: Priority = Priority(5);

fn rate(min: u64, max: u64) -> Rate {
    Rate { min, max }
}

fn one_pool(capacity: u64, preempt: bool) -> Allocator {
    let mut a = Allocator::new(capacity);
    a.set_pool("video", None, preempt);
    a
}

#[test]
fn the_seed_example_one_two_then_four_customers() {
    let mut a = one_pool(50, false);
    let r = rate(1, 15);
    let first = a.admit(StreamKey(0), "video", "c0", BULK, r, 0).unwrap();
    assert_eq!(first.rate, 15);
    let second = a.admit(StreamKey(1), "video", "c1", BULK, r, 0).unwrap();
    assert_eq!((second.rate, second.changes.rates.len()), (15, 0), "the first keeps 15");
    a.admit(StreamKey(2), "video", "c2", BULK, r, 0).unwrap();
    let fourth = a.admit(StreamKey(3), "video", "c3", BULK, r, 0).unwrap();
    let rates: Vec<u64> = (0..4).map(|k| a.allocation(StreamKey(k)).unwrap()).collect();
    assert_eq!(rates, [12, 12, 12, 12], "12.5 each, rounded down");
    assert_eq!(fourth.rate, 12);
    let lowered: Vec<StreamKey> = fourth.changes.rates.iter().map(|(k, _)| *k).collect();
    assert_eq!(lowered, [StreamKey(0), StreamKey(1), StreamKey(2)], "15 each did not leave room: lowered at once");
    a.release(StreamKey(3));
    assert_eq!(a.allocation(StreamKey(0)), Some(15));
    assert_eq!(a.paced(StreamKey(0)), Some(12), "raised at the next sweep");
    assert_eq!(a.sweep(), vec![(StreamKey(0), 15), (StreamKey(1), 15), (StreamKey(2), 15)]);
}

#[test]
fn running_streams_keep_their_minimum() {
    let mut a = one_pool(100, false);
    a.admit(StreamKey(1), "video", "t", BULK, rate(60, 100), 0).unwrap();
    let refused = a.admit(StreamKey(2), "video", "t", LIVE, rate(50, 50), 0).unwrap_err();
    assert_eq!(refused, Refusal::Insufficient { level: Level::Host, need: 50, free: 40 });
    let refusal = refused;
    assert!(matches!(refusal, Refusal::Insufficient { .. }), "{refusal:?}");
    assert_eq!(a.allocation(StreamKey(1)), Some(100));
    let admitted = a.admit(StreamKey(3), "video", "t", LIVE, rate(40, 40), 0).unwrap();
    assert_eq!(admitted.rate, 40);
    assert_eq!(admitted.changes.rates, vec![(StreamKey(1), 60)]);
}

#[test]
fn a_preempting_pool_closes_strictly_lower_priority_newest_first() {
    let mut a = one_pool(100, true);
    a.admit(StreamKey(1), "video", "t", BULK, rate(30, 30), 0).unwrap();
    a.admit(StreamKey(2), "video", "t", BULK, rate(30, 30), 1).unwrap();
    a.admit(StreamKey(3), "video", "t", LIVE, rate(30, 30), 2).unwrap();
    let equal = a.admit(StreamKey(4), "video", "t", BULK, rate(40, 40), 3);
    let admitted = a.admit(StreamKey(4), "video", "t", Priority(9), rate(40, 40), 3).unwrap();
    assert_eq!(admitted.changes.preempted, vec![StreamKey(2)], "bulk and newest first");
    assert_eq!(a.allocation(StreamKey(1)), Some(30));
    assert!(equal.is_err(), "same or higher priority does not preempt: {equal:?}");
    let too_big = a.admit(StreamKey(5), "video", "t", Priority(9), rate(100, 100), 4).unwrap_err();
    let refusal = too_big;
    assert!(matches!(refusal, Refusal::Insufficient { .. }), "{refusal:?}");
    assert_eq!(a.len(), 3, "a refusal preempts nothing");
}

#[test]
fn a_pool_caps_its_streams_and_the_host_shares_the_rest() {
    let mut a = Allocator::new(100);
    a.set_pool("small", Some(20), false);
    a.set_pool("big", None, false);
    a.admit(StreamKey(1), "small", "t", BULK, rate(0, 100), 0).unwrap();
    a.admit(StreamKey(2), "big", "t", BULK, rate(0, 100), 0).unwrap();
    assert_eq!((a.allocation(StreamKey(1)), a.allocation(StreamKey(2))), (Some(20), Some(80)));
    let refused = a.admit(StreamKey(3), "small", "t", BULK, rate(21, 30), 0).unwrap_err();
    assert!(matches!(refused, Refusal::Insufficient { level: Level::Pool(ref p), .. } if p == "small"));
    let refusal = a.admit(StreamKey(3), "nowhere", "t", BULK, rate(1, 1), 0).unwrap_err();
    assert!(matches!(refusal, Refusal::UnknownLease(_) | Refusal::UnknownPool(_)), "{refusal:?}");
}

#[test]
fn priority_weighs_the_residual() {
    let mut a = one_pool(100, false);
    a.admit(StreamKey(1), "video", "t", Priority(0), rate(0, 1000), 0).unwrap();
    a.admit(StreamKey(2), "video", "t", Priority(2), rate(0, 1000), 0).unwrap();
    assert_eq!((a.allocation(StreamKey(1)), a.allocation(StreamKey(2))), (Some(25), Some(75)));
}

#[test]
fn tenants_are_limited_by_streams_and_leases_together() {
    let mut a = one_pool(1000, false);
    a.set_default_tenant_limit(1);
    a.set_tenant_limit("acme", 2);
    a.admit(StreamKey(1), "video", "other", BULK, rate(1, 1), 0).unwrap();
    let refused = a.admit(StreamKey(2), "video", "other", BULK, rate(1, 1), 0).unwrap_err();
    assert_eq!(refused, Refusal::TenantLimit { tenant: "other".into(), limit: 1 });
    a.admit(StreamKey(3), "video", "acme", BULK, rate(1, 1), 0).unwrap();
    let lease = a.lease("acme", "video", BULK, rate(1, 1), 10, 0).unwrap();
    let refusal = a.lease("acme", "video", BULK, rate(1, 1), 10, 0).unwrap_err();
    assert!(matches!(refusal, Refusal::TenantLimit { .. }), "{refusal:?}");
    a.expire(10);
    assert_eq!(a.lease_rate(lease.id), None);
    a.lease("acme", "video", BULK, rate(1, 1), 10, 10).expect("the expired lease freed its slot");
}

/// Tenant names come from clients: one that holds nothing and has no limit
/// of its own is forgotten, so a stream of new names grows nothing.
#[test]
fn tenants_that_hold_nothing_are_forgotten() {
    let mut a = one_pool(1_000_000, false);
    a.set_tenant_limit("acme", 0);
    for i in 0..10_000u64 {
        let tenant = format!("tenant-{i}");
        a.admit(StreamKey(i), "video", &tenant, BULK, rate(1, 1), 0).unwrap();
        a.release(StreamKey(i));
        // Refused ones are forgotten too.
        assert!(a.admit(StreamKey(i), "video", "acme", BULK, rate(1, 1), 0).is_err());
    }
    assert!(a.tenants.len() <= 2, "{} tenants kept", a.tenants.len());
    a.admit(StreamKey(1), "video", "kept", BULK, rate(1, 1), 0).unwrap();
    let report = a.snapshot();
    let names: Vec<&str> = report.tenants.iter().map(|t| t.tenant.as_str()).collect();
    assert_eq!(names, ["acme", "kept"], "a configured limit keeps its tenant; a holder keeps its");
}

#[test]
fn leases_expire_exactly_at_their_ttl() {
    let mut a = one_pool(100, false);
    let grant = a.lease("t", "video", BULK, rate(10, 100), 1_000, 5).unwrap();
    assert_eq!((grant.rate, grant.expires_at), (100, 1_005));
    assert_eq!(a.refresh(grant.id, 500), Ok((100, 1_500)), "extended by the same ttl");
    assert!(a.expire(1_499).is_empty());
    assert_eq!(a.refresh(grant.id, 1_500), Err(Refusal::Expired(grant.id)));
    assert_eq!(a.expire(1_500), vec![grant.id]);
    let refusal = a.refresh(grant.id, 1_500).unwrap_err();
    assert!(matches!(refusal, Refusal::UnknownLease(_) | Refusal::UnknownPool(_)), "{refusal:?}");
    let refusal = a.release_lease(grant.id).unwrap_err();
    assert!(matches!(refusal, Refusal::UnknownLease(_) | Refusal::UnknownPool(_)), "{refusal:?}");
    assert_eq!(a.snapshot().host.reserved, 0);
}

#[test]
fn a_lease_shares_with_streams_and_its_expiry_gives_back() {
    let mut a = one_pool(100, false);
    a.admit(StreamKey(1), "video", "t", BULK, rate(0, 100), 0).unwrap();
    let grant = a.lease("gw", "video", BULK, rate(0, 100), 10, 0).unwrap();
    assert_eq!(grant.rate, 50);
    assert_eq!(grant.changes.rates, vec![(StreamKey(1), 50)]);
    assert_eq!(a.expire(10), vec![grant.id]);
    assert_eq!(a.sweep(), vec![(StreamKey(1), 100)]);
}

#[test]
fn a_preempted_lease_learns_it_on_refresh() {
    let mut a = one_pool(100, true);
    let grant = a.lease("gw", "video", BULK, rate(80, 80), 10, 0).unwrap();
    let admitted = a.admit(StreamKey(1), "video", "t", LIVE, rate(50, 50), 1).unwrap();
    assert_eq!(admitted.changes.preempted_leases, vec![grant.id]);
    assert_eq!(a.refresh(grant.id, 2), Err(Refusal::Preempted(grant.id)));
    let refusal = a.refresh(grant.id, 2).unwrap_err();
    assert!(matches!(refusal, Refusal::UnknownLease(_) | Refusal::UnknownPool(_)), "{refusal:?}");
}

#[test]
fn lowering_capacity_preempts_the_lowest_priority() {
    let mut a = one_pool(100, false);
    a.admit(StreamKey(1), "video", "t", LIVE, rate(40, 40), 0).unwrap();
    a.admit(StreamKey(2), "video", "t", BULK, rate(40, 40), 0).unwrap();
    let changes = a.set_host_capacity(60);
    assert_eq!(changes.preempted, vec![StreamKey(2)]);
    assert_eq!(changes.rates, vec![]);
    let changes = a.set_pool("video", Some(30), false);
    assert_eq!(changes.preempted, vec![StreamKey(1)]);
    assert!(a.is_empty());
}

#[test]
fn a_busy_stream_bursts_into_what_idle_ones_leave_for_a_window() {
    let mut a = one_pool(100, false);
    a.set_burst_window(500);
    for k in 0..4 {
        a.admit(StreamKey(k), "video", "t", BULK, rate(0, 100), 0).unwrap();
    }
    a.sweep();
    assert_eq!(a.paced(StreamKey(0)), Some(25));
    assert_eq!(a.grant_bursts(1_000), vec![], "no usage known: no burst");
    // Stream 0 sends at its limit, 1 at 20, 2 at 5; 3 has not reported.
    for (k, used) in [(0, 25), (1, 20), (2, 5)] {
        a.record_usage(StreamKey(k), used);
    }
    // Idle: 100 - (25 + 20 + 5 + 25) = 25, all to the one busy stream.
    assert_eq!(a.grant_bursts(1_000), vec![(StreamKey(0), 50)]);
    assert_eq!(a.burst_of(StreamKey(0)), Some(Burst { rate: 50, until: 1_500 }));
    assert_eq!((a.allocation(StreamKey(0)), a.paced(StreamKey(0))), (Some(25), Some(25)), "allocation untouched");
    assert_eq!(a.grant_bursts(1_200), vec![], "one burst at a time");
    assert_eq!(a.end_bursts(1_499), vec![]);
    assert_eq!(a.end_bursts(1_500), vec![(StreamKey(0), 25)], "ends exactly at its window");
    // Busy again at once, but it waits as long as it burst.
    assert_eq!(a.grant_bursts(1_999), vec![]);
    assert_eq!(a.grant_bursts(2_000), vec![(StreamKey(0), 50)]);
    // Once the others send, nothing is idle.
    a.end_bursts(2_500);
    a.record_usage(StreamKey(3), 25);
    a.record_usage(StreamKey(1), 25);
    a.record_usage(StreamKey(2), 25);
    assert_eq!(a.grant_bursts(3_000), vec![]);
}

#[test]
fn bandwidth_lent_to_a_burst_is_not_lent_again() {
    let mut a = one_pool(100_000, false);
    a.admit_batch((0..4).map(|k| (StreamKey(k), "video", "t", BULK, rate(0, 100_000))), 0);
    let paced = a.paced(StreamKey(0)).unwrap();
    a.record_usage(StreamKey(0), paced);
    for k in 1..4 {
        a.record_usage(StreamKey(k), 0);
    }
    assert_eq!(a.grant_bursts(0), vec![(StreamKey(0), 100_000)]);
    // The burster's last report predates its burst; another stream gets busy.
    a.record_usage(StreamKey(1), paced);
    assert_eq!(a.grant_bursts(100), vec![], "the burst holds what was idle: nothing is left to lend");
}

#[test]
fn an_admission_or_a_smaller_capacity_ends_running_bursts() {
    let mut a = one_pool(100_000, false);
    a.admit_batch((0..2).map(|k| (StreamKey(k), "video", "t", BULK, rate(0, 100_000))), 0);
    let paced = a.paced(StreamKey(0)).unwrap();
    a.record_usage(StreamKey(0), paced);
    a.record_usage(StreamKey(1), 0);
    assert_eq!(a.grant_bursts(0), vec![(StreamKey(0), 100_000)]);
    // What the burst borrowed may be the newcomer's minimum now.
    let admitted = a.admit(StreamKey(2), "video", "t", BULK, rate(30_000, 100_000), 10).unwrap();
    let zero = admitted.changes.rates.iter().find(|(k, _)| *k == StreamKey(0)).copied();
    assert_eq!(zero, Some((StreamKey(0), a.paced(StreamKey(0)).unwrap())), "{:?}", admitted.changes.rates);
    let in_force: u64 = (0..3).map(|k| a.rate_now(StreamKey(k)).unwrap()).sum();
    assert!(in_force <= 100_000, "{in_force}");
    // And a capacity cut ends bursts too.
    a.record_usage(StreamKey(1), a.paced(StreamKey(1)).unwrap());
    a.record_usage(StreamKey(2), 0);
    a.grant_bursts(5_000);
    assert!(a.burst_of(StreamKey(1)).is_some());
    let changes = a.set_host_capacity(60_000);
    assert!(a.burst_of(StreamKey(1)).is_none());
    assert!(changes.rates.iter().any(|(k, _)| *k == StreamKey(1)), "{:?}", changes.rates);
}

#[test]
fn a_burst_stops_at_the_max_and_the_pools_idle() {
    let mut a = Allocator::new(1_000);
    a.set_pool("video", Some(120), false);
    a.set_pool("other", None, false);
    a.admit(StreamKey(0), "video", "t", BULK, rate(0, 50), 0).unwrap();
    a.admit(StreamKey(1), "video", "t", BULK, rate(0, 1000), 0).unwrap();
    a.admit(StreamKey(2), "video", "t", BULK, rate(0, 1000), 0).unwrap();
    a.sweep();
    let paced: Vec<u64> = (0..3).map(|k| a.paced(StreamKey(k)).unwrap()).collect();
    assert_eq!(paced, [40, 40, 40], "the pool's 120 in three");
    a.record_usage(StreamKey(0), 40);
    a.record_usage(StreamKey(1), 40);
    a.record_usage(StreamKey(2), 0);
    // The pool has 40 idle (the host much more) for two busy streams: 20
    // each, but 0 stops at its max of 50 and 1 takes the rest.
    assert_eq!(a.grant_bursts(0), vec![(StreamKey(0), 50), (StreamKey(1), 70)]);
    a.release(StreamKey(0));
    assert_eq!(a.end_bursts(2_000), vec![(StreamKey(1), 40)], "a released stream's end is forgotten");
    a.set_burst_window(0);
    assert_eq!(a.grant_bursts(5_000), vec![], "a window of 0: no bursts");
}

#[test]
fn the_snapshot_adds_up_per_pool_and_tenant() {
    let mut a = Allocator::new(100);
    a.set_pool("video", Some(60), true);
    a.set_pool("audio", None, false);
    a.set_tenant_limit("acme", 5);
    a.admit(StreamKey(1), "video", "acme", BULK, rate(10, 100), 0).unwrap();
    a.admit(StreamKey(2), "audio", "zeta", BULK, rate(5, 20), 0).unwrap();
    a.lease("acme", "audio", BULK, rate(5, 10), 100, 0).unwrap();
    let report = a.snapshot();
    let full = Usage { capacity: Some(100), reserved: 20, allocated: 90, free: Some(10), streams: 2, leases: 1 };
    assert_eq!(report.host, full);
    assert_eq!(report.pools[0].pool, "audio");
    assert_eq!(report.pools[1].usage.free, Some(0));
    assert_eq!((report.tenants[0].tenant.as_str(), report.tenants[0].max_streams), ("acme", 5));
    assert_eq!(report.tenants[0].usage.allocated, 70);
    assert_eq!(report.tenants[1].max_streams, u32::MAX);
}

#[test]
fn refusals_say_what_was_refused() {
    assert_eq!(Refusal::Expired(LeaseId(7)).to_string(), "lease 7 expired");
}

#[test]
fn bad_requests_are_refused() {
    let mut a = one_pool(100, false);
    let refusal = a.admit(StreamKey(1), "video", "t", BULK, rate(2, 1), 0).unwrap_err();
    assert!(matches!(refusal, Refusal::InvalidRate { .. }), "{refusal:?}");
    a.admit(StreamKey(1), "video", "t", BULK, rate(1, 2), 0).unwrap();
    assert_eq!(a.admit(StreamKey(1), "video", "t", BULK, rate(1, 2), 0), Err(Refusal::Duplicate(StreamKey(1))));
    a.release(StreamKey(42));
    assert_eq!(a.len(), 1);
}

#[test]
fn a_batch_shares_once_like_one_admission_after_another() {
    let mut one_by_one = one_pool(50, false);
    let mut batch = one_pool(50, false);
    let streams: Vec<_> = (0..4).map(|k| (StreamKey(k), "video", "t", BULK, rate(1, 15))).collect();
    for &(key, pool, tenant, priority, r) in &streams {
        one_by_one.admit(key, pool, tenant, priority, r, 0).unwrap();
    }
    let admitted = batch.admit_batch(streams, 0);
    assert!(admitted.refused.is_empty());
    assert_eq!(admitted.changes.rates.len(), 4);
    for k in 0..4 {
        assert_eq!(batch.allocation(StreamKey(k)), one_by_one.allocation(StreamKey(k)));
    }
}

/// Minimums whose sum would overflow, under an unlimited host: no panic, and
/// the allocator stays usable.
#[test]
fn huge_minimums_under_an_unlimited_host_do_not_overflow() {
    let mut a = Allocator::new(u64::MAX);
    a.set_pool("p", None, false);
    let huge = Rate { min: u64::MAX / 2 + 1, max: u64::MAX };
    assert!(a.admit(StreamKey(1), "p", "t", Priority(0), huge, 0).is_ok());
    let second = a.admit(StreamKey(2), "p", "t", Priority(0), huge, 0);
    assert!(matches!(second, Ok(_) | Err(Refusal::Insufficient { .. })), "{second:?}");
    a.release(StreamKey(1));
    a.release(StreamKey(2));
    assert!(a.admit(StreamKey(3), "p", "t", Priority(0), Rate { min: 1, max: 10 }, 0).is_ok());
}
