//! Bandwidth on its own: what a stream asks of the quota, leases and
//! tenants' counts, and what moves when.

use std::time::Duration;

use streamlet_proto::{LeaseRequest, RateRequest};

use super::*;
use crate::core::testkit::pool;

fn lease(tenant: &str, min: u64, max: u64) -> Lease {
    crate::validate::lease(LeaseRequest {
        pool: "echo".into(),
        tenant: Some(tenant.into()),
        priority: None,
        rate: RateRequest { min, max },
        ttl_ms: 60_000,
    })
    .unwrap()
}

#[test]
fn a_stream_is_managed_when_a_rate_or_a_capacity_covers_it() {
    let plain = pool(1, 1, 4, "");
    let bandwidth = Bandwidth::new(&plain);
    let echo = &plain.pools["echo"];
    let ask = bandwidth.ask(echo, None);
    assert_eq!(ask, Ask { managed: false, rate: Rate { min: 0, max: UNLIMITED } }, "nothing covers it");
    let ask = bandwidth.ask(echo, Some(Rate { min: 10, max: u64::MAX }));
    assert_eq!(ask, Ask { managed: true, rate: Rate { min: 10, max: UNLIMITED } }, "a max above UNLIMITED is none");

    let capped = pool(1, 1, 4, "egress = \"1000000\"\n");
    let bandwidth = Bandwidth::new(&capped);
    assert!(bandwidth.ask(&capped.pools["echo"], None).managed, "the pool's capacity covers every stream");

    let defaulted = pool(1, 1, 4, "default_rate = { min = \"5\", max = \"50\" }\n");
    let bandwidth = Bandwidth::new(&defaulted);
    let ask = bandwidth.ask(&defaulted.pools["echo"], None);
    assert_eq!(ask, Ask { managed: true, rate: Rate { min: 5, max: 50 } }, "the pool's default rate");
    let ask = bandwidth.ask(&defaulted.pools["echo"], Some(Rate { min: 1, max: 2 }));
    assert_eq!(ask.rate, Rate { min: 1, max: 2 }, "a stream's own rate wins");
}

#[test]
fn a_paced_rate_is_never_zero_and_unlimited_is_no_pacing() {
    assert_eq!(limit(0), Some(1), "0 reads as no limit on the wire: 1 byte/s instead");
    assert_eq!(limit(4096), Some(4096));
    assert_eq!(limit(UNLIMITED - 1), Some(UNLIMITED - 1));
    assert_eq!(limit(UNLIMITED), None);
    assert_eq!(limit(u64::MAX), None);
}

#[test]
fn a_lease_holds_a_tenant_slot_until_released_and_then_is_unknown() {
    let config = pool(1, 1, 4, "egress = \"1000\"\n\n[tenants.t]\nmax_streams = 1\n");
    let mut bandwidth = Bandwidth::new(&config);
    let (granted, _) = bandwidth.lease(lease("t", 100, 1000)).unwrap();
    assert!(granted.rate >= 100 && granted.rate <= 1000, "{granted:?}");
    assert_eq!(bandwidth.tenants.held("t"), 1);
    let full = bandwidth.lease(lease("t", 1, 10)).unwrap_err();
    assert!(matches!(full, LeaseError::TenantFull(_)), "{full:?}");
    assert!(full.to_string().contains("\"t\""), "the error names the tenant: {full}");
    bandwidth.refresh(granted.lease).unwrap();
    bandwidth.release_lease(granted.lease).unwrap();
    assert_eq!(bandwidth.tenants.held("t"), 0);
    let gone = bandwidth.refresh(granted.lease).unwrap_err();
    assert_eq!(refusal_error(&gone).code, ErrorCode::UnknownLease);
    assert!(bandwidth.release_lease(granted.lease).is_err(), "released once");
}

#[test]
fn an_admission_past_the_capacity_is_refused_as_insufficient_and_holds_nothing() {
    let config = pool(1, 1, 4, "egress = \"1000\"\n");
    let mut bandwidth = Bandwidth::new(&config);
    let rate = Rate { min: 800, max: 1000 };
    let first = bandwidth.admit(StreamId(1), "echo", "t", 0, rate).unwrap();
    assert!(first.rate >= 800);
    assert_eq!(bandwidth.allocation(StreamId(1)), Some(first.rate));
    let refused = bandwidth.admit(StreamId(2), "echo", "t", 0, rate).unwrap_err();
    assert_eq!(refusal_error(&refused).code, ErrorCode::Insufficient);
    assert_eq!(bandwidth.allocation(StreamId(2)), None);
    bandwidth.release(StreamId(1));
    assert_eq!(bandwidth.allocation(StreamId(1)), None);
    bandwidth.admit(StreamId(2), "echo", "t", 0, rate).expect("room again once released");
}

#[test]
fn send_rates_are_sampled_once_per_interval() {
    let mut bandwidth = Bandwidth::new(&pool(1, 1, 4, ""));
    let interval = Duration::from_millis(30);
    assert_eq!(bandwidth.sample_due(interval), None, "not yet");
    std::thread::sleep(interval);
    let at = bandwidth.sample_due(interval).expect("due");
    assert_eq!(bandwidth.sample_due(interval), None, "the sample just taken counts");
    assert!(bandwidth.since_epoch(at) >= 30);
}
