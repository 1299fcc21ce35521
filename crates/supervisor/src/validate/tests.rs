//! Every bound, at its limit and one past it.

use super::*;

fn open_with(f: impl FnOnce(&mut OpenRequest)) -> Result<Open, Invalid> {
    let mut request = OpenRequest::new("echo");
    f(&mut request);
    open(request)
}

fn lease_with(f: impl FnOnce(&mut LeaseRequest)) -> Result<Lease, Invalid> {
    let mut request = LeaseRequest {
        pool: "echo".into(),
        tenant: None,
        priority: None,
        rate: RateRequest { min: 1, max: 10 },
        ttl_ms: 1000,
    };
    f(&mut request);
    lease(request)
}

/// The refusal's field, and that its message names it and goes out as
/// `bad_request`.
fn field(result: Result<impl std::fmt::Debug, Invalid>) -> &'static str {
    let invalid = result.expect_err("refused");
    let body = ErrorBody::from(invalid.clone());
    assert_eq!(body.code, ErrorCode::BadRequest);
    assert!(body.message.starts_with(invalid.field()), "{:?} does not begin with {}", body.message, invalid.field());
    invalid.field()
}

fn rate(min: u64, max: u64) -> Option<RateRequest> {
    Some(RateRequest { min, max })
}

#[test]
fn an_open_with_nothing_but_a_pool_gets_the_defaults() {
    let open = open(OpenRequest::new("echo")).unwrap();
    assert_eq!((open.pool.as_str(), open.tenant.as_str()), ("echo", DEFAULT_TENANT));
    assert_eq!((open.priority, open.rate, open.wait, open.region), (0, None, None, None));
    assert!(open.labels.is_empty());
}

#[test]
fn tenant_names_are_at_most_128_bytes_without_nul() {
    assert_eq!(open_with(|r| r.tenant = Some("t".repeat(MAX_TENANT_LEN))).unwrap().tenant.len(), 128);
    assert_eq!(field(open_with(|r| r.tenant = Some("t".repeat(MAX_TENANT_LEN + 1)))), "tenant");
    // Bytes, not characters: 64 two-byte characters fit, one more does not.
    assert!(open_with(|r| r.tenant = Some("é".repeat(64))).is_ok());
    assert_eq!(field(open_with(|r| r.tenant = Some("é".repeat(65)))), "tenant");
    assert_eq!(field(open_with(|r| r.tenant = Some("a\0b".into()))), "tenant");
    // A lease's tenant has the same length, and only that (it goes into no
    // command's environment).
    assert!(lease_with(|r| r.tenant = Some("t".repeat(MAX_TENANT_LEN))).is_ok());
    assert_eq!(field(lease_with(|r| r.tenant = Some("t".repeat(MAX_TENANT_LEN + 1)))), "tenant");
    assert_eq!(lease_with(|r| r.tenant = None).unwrap().tenant, DEFAULT_TENANT);
}

#[test]
fn labels_are_at_most_32_with_keys_of_64_and_values_of_1024_bytes() {
    let many = |n: usize| (0..n).map(|i| (format!("k{i}"), "v".into())).collect::<BTreeMap<_, _>>();
    assert!(open_with(|r| r.labels = many(MAX_LABELS)).is_ok());
    assert_eq!(field(open_with(|r| r.labels = many(MAX_LABELS + 1))), "labels");

    let one = |k: String, v: String| [(k, v)].into_iter().collect::<BTreeMap<_, _>>();
    assert!(open_with(|r| r.labels = one("k".repeat(MAX_LABEL_KEY_LEN), "v".into())).is_ok());
    let long_key = open_with(|r| r.labels = one("k".repeat(MAX_LABEL_KEY_LEN + 1), "v".into()));
    assert_eq!(long_key, Err(Invalid::LabelKeyTooLong { key: "k".repeat(64), len: 65 }));
    assert!(open_with(|r| r.labels = one("k".into(), "v".repeat(MAX_LABEL_VALUE_LEN))).is_ok());
    assert_eq!(field(open_with(|r| r.labels = one("k".into(), "v".repeat(MAX_LABEL_VALUE_LEN + 1)))), "labels");
    assert_eq!(field(open_with(|r| r.labels = one("zone".into(), "a\0b".into()))), "labels");
    assert_eq!(field(open_with(|r| r.labels = one("a\0b".into(), "v".into()))), "labels");
}

#[test]
fn a_wait_is_at_most_ten_minutes_and_0_is_none() {
    assert_eq!(open_with(|r| r.wait_ms = Some(MAX_WAIT_MS)).unwrap().wait, Some(Duration::from_secs(600)));
    assert_eq!(field(open_with(|r| r.wait_ms = Some(MAX_WAIT_MS + 1))), "wait_ms");
    assert_eq!(field(open_with(|r| r.wait_ms = Some(u64::MAX))), "wait_ms");
    assert_eq!(open_with(|r| r.wait_ms = Some(0)).unwrap().wait, None);
}

/// PROTOCOL.md: `min` not above `max`, `max` above 0, `min` at most 2^40;
/// a `max` above 2^60 is accepted (the core counts it as no limit).
#[test]
fn an_opens_rate_has_min_at_most_max_a_max_above_0_and_min_at_most_2_40() {
    let checked = |min, max| open_with(|r| r.rate = rate(min, max)).map(|o| o.rate.map(|r| (r.min, r.max)));
    assert_eq!(checked(5, 5), Ok(Some((5, 5))));
    assert_eq!(field(checked(6, 5)), "rate.min");
    assert_eq!(checked(0, 1), Ok(Some((0, 1))));
    assert_eq!(checked(0, 0), Err(Invalid::RateMaxZero));
    assert_eq!(field(checked(0, 0)), "rate.max");
    assert_eq!(checked(MAX_MIN_RATE, MAX_MIN_RATE), Ok(Some((MAX_MIN_RATE, MAX_MIN_RATE))));
    assert_eq!(checked(MAX_MIN_RATE + 1, u64::MAX), Err(Invalid::RateMinTooHigh { min: MAX_MIN_RATE + 1 }));
    assert_eq!(field(checked(MAX_MIN_RATE + 1, u64::MAX)), "rate.min");
    assert_eq!(checked(0, u64::MAX), Ok(Some((0, u64::MAX))), "no limit");
}

#[test]
fn a_leases_rate_has_min_at_most_max_and_at_most_2_40() {
    let checked = |min, max| lease_with(|r| r.rate = RateRequest { min, max }).map(|l| (l.rate.min, l.rate.max));
    assert_eq!(checked(5, 5), Ok((5, 5)));
    assert_eq!(field(checked(6, 5)), "rate.min");
    assert_eq!(checked(0, 0), Ok((0, 0)), "a lease may hold a slot and no bandwidth");
    assert_eq!(checked(MAX_MIN_RATE, MAX_MIN_RATE), Ok((MAX_MIN_RATE, MAX_MIN_RATE)));
    assert_eq!(field(checked(MAX_MIN_RATE + 1, u64::MAX)), "rate.min");
}

#[test]
fn a_leases_ttl_is_1_ms_to_an_hour() {
    assert_eq!(lease_with(|r| r.ttl_ms = 1).unwrap().ttl_ms, 1);
    assert_eq!(lease_with(|r| r.ttl_ms = 0), Err(Invalid::TtlZero));
    assert_eq!(lease_with(|r| r.ttl_ms = MAX_LEASE_TTL_MS).unwrap().ttl_ms, MAX_LEASE_TTL_MS);
    assert_eq!(field(lease_with(|r| r.ttl_ms = MAX_LEASE_TTL_MS + 1)), "ttl_ms");
    assert_eq!(field(lease_with(|r| r.ttl_ms = u64::MAX)), "ttl_ms");
    assert_eq!(lease_with(|r| r.priority = Some(255)).unwrap().priority, 255);
}

#[test]
fn a_drain_waits_at_most_a_day() {
    let checked = |timeout_ms| drain(DrainRequest { worker: WorkerId(3), timeout_ms }).map(|d| d.timeout);
    assert_eq!(checked(None), Ok(None), "the daemon's default");
    assert_eq!(checked(Some(0)), Ok(Some(Duration::ZERO)));
    assert_eq!(checked(Some(MAX_DRAIN_MS)), Ok(Some(Duration::from_secs(86_400))));
    assert_eq!(field(checked(Some(MAX_DRAIN_MS + 1))), "timeout_ms");
}

#[test]
fn scale_bounds_are_1_to_10000_with_min_not_above_max() {
    let checked = |min, max| scale(ScaleRequest { pool: "echo".into(), min, max }).map(|s| (s.min, s.max));
    assert_eq!(checked(None, None), Ok((None, None)));
    assert_eq!(checked(Some(0), Some(1)), Ok((Some(0), Some(1))));
    assert_eq!(checked(None, Some(0)), Err(Invalid::ScaleMaxZero));
    assert_eq!(checked(None, Some(MAX_WORKERS_PER_POOL)), Ok((None, Some(10_000))));
    assert_eq!(field(checked(None, Some(MAX_WORKERS_PER_POOL + 1))), "max");
    assert_eq!(checked(Some(MAX_WORKERS_PER_POOL), None), Ok((Some(10_000), None)));
    assert_eq!(field(checked(Some(MAX_WORKERS_PER_POOL + 1), None)), "min");
    assert_eq!(checked(Some(4), Some(4)), Ok((Some(4), Some(4))));
    assert_eq!(checked(Some(5), Some(4)), Err(Invalid::ScaleMinAboveMax { min: 5, max: 4 }));
}

#[test]
fn a_page_holds_1_to_its_most() {
    assert_eq!(page_limit(None, 2000), 2000);
    assert_eq!(page_limit(Some(0), 2000), 1, "a page of none would never move on");
    assert_eq!(page_limit(Some(1), 2000), 1);
    assert_eq!(page_limit(Some(2000), 2000), 2000);
    assert_eq!(page_limit(Some(2001), 2000), 2000);
}
