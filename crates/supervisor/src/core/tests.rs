//! The core's state machine on its own: no daemon, no streamlet processes.

use streamlet_proto::{LeaseRequest, QuotaReport, RateRequest};

use super::*;
use crate::config::Config;

fn lease(tenant: &str) -> Lease {
    crate::validate::lease(LeaseRequest {
        pool: "echo".into(),
        tenant: Some(tenant.into()),
        priority: None,
        rate: RateRequest { min: 1, max: 10 },
        ttl_ms: 60_000,
    })
    .unwrap()
}

/// Leases are held at once up to `MAX_LEASES`, then refused as
/// `overloaded`; a release makes room again.
#[test]
fn leases_are_bounded_in_number() {
    let mut core = Core::new(&Config::embedded());
    let mut first = None;
    for i in 0..MAX_LEASES {
        let granted = core.lease(lease(&format!("t{}", i % 7))).unwrap();
        first.get_or_insert(granted.lease);
    }
    let refused = core.lease(lease("one-more")).unwrap_err();
    assert_eq!(refused, LeaseError::TooMany);
    core.release_lease(first.unwrap()).unwrap();
    core.lease(lease("one-more")).expect("room again after a release");
}

/// The quota report lists tenants a page at a time, by name, and knows
/// only those holding something: tenant names come from clients.
#[test]
fn the_quota_report_pages_through_tenants_holding_something() {
    let mut core = Core::new(&Config::embedded());
    let mut leases = Vec::new();
    for name in ["d", "a", "c", "b", "e"] {
        leases.push(core.lease(lease(name)).unwrap().lease);
    }
    let tenants = |report: &QuotaReport| -> Vec<String> {
        report.lines.iter().filter(|l| l.level == "tenant").map(|l| l.name.clone()).collect()
    };
    let page = core.quota_report(TenantLines::Page { after: None, limit: 2 });
    assert_eq!(page.lines[0].level, "host");
    assert_eq!((tenants(&page), page.next.as_deref()), (vec!["a".into(), "b".into()], Some("b")));
    let page = core.quota_report(TenantLines::Page { after: Some("b"), limit: 2 });
    assert_eq!((tenants(&page), page.next.as_deref()), (vec!["c".into(), "d".into()], Some("d")));
    let page = core.quota_report(TenantLines::Page { after: Some("d"), limit: 2 });
    assert_eq!((tenants(&page), page.next), (vec!["e".into()], None));
    for id in leases {
        core.release_lease(id).unwrap();
    }
    let page = core.quota_report(TenantLines::Page { after: None, limit: 10 });
    assert!(tenants(&page).is_empty(), "released tenants are forgotten: {:?}", tenants(&page));
}

/// Tenants the configuration names are listed before their first stream,
/// in name order among those holding something, on every page.
#[test]
fn the_quota_report_lists_configured_tenants_holding_nothing() {
    const CONFIG: &str = r#"
[pools.echo]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 8

[tenants.b]
max_streams = 3

[tenants.d]
max_streams = 1
"#;
    let config = Config::parse(CONFIG, "test").unwrap();
    let mut core = Core::new(&config);
    for name in ["c", "b", "a"] {
        core.lease(lease(name)).unwrap();
    }
    let tenants = |report: &QuotaReport| -> Vec<(String, u32, u32, Option<u32>)> {
        report
            .lines
            .iter()
            .filter(|l| l.level == "tenant")
            .map(|l| (l.name.clone(), l.open_streams, l.leases, l.max_streams))
            .collect()
    };
    let all = core.quota_report(TenantLines::Page { after: None, limit: 10 });
    let expected = |name: &str, leases, max| (name.to_owned(), 0, leases, max);
    assert_eq!(
        tenants(&all),
        [expected("a", 1, None), expected("b", 1, Some(3)), expected("c", 1, None), expected("d", 0, Some(1))]
    );
    assert_eq!(all.next, None);
    let page = core.quota_report(TenantLines::Page { after: None, limit: 2 });
    assert_eq!((tenants(&page).len(), page.next.as_deref()), (2, Some("b")));
    let page = core.quota_report(TenantLines::Page { after: Some("b"), limit: 2 });
    let names: Vec<String> = tenants(&page).into_iter().map(|t| t.0).collect();
    assert_eq!((names, page.next), (vec!["c".to_owned(), "d".to_owned()], None));
    let page = core.quota_report(TenantLines::Page { after: Some("c"), limit: 1 });
    assert_eq!((tenants(&page), page.next), (vec![expected("d", 0, Some(1))], None));
}
