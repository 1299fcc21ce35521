//! The core's state machine on its own: no daemon, no streamlet processes.

use streamlet_proto::{ErrorBody, LeaseRequest, QuotaReport, RateRequest, StreamId, WorkerId};

use super::*;
use crate::config::Config;
use crate::validate::{Lease, Open};

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

// The state machine: opens, ends, deaths and shutdown, with streamlets that
// are only the far end of their channel.

mod machine {
    use streamlet_proto::worker::{Ended, ToWorker};
    use streamlet_proto::{Encoding, EndReason, ErrorCode, Event, ExitCause, OpenRequest, WorkerState};

    use super::*;
    use crate::core::testkit::{client, events, pool, ready_in_core, Peer};
    use crate::events::{EventSink, Outgoing};

    fn open(tenant: &str) -> Open {
        crate::validate::open(OpenRequest { tenant: Some(tenant.into()), ..OpenRequest::new("echo") }).unwrap()
    }

    fn opened(outcome: OpenOutcome) -> Result<streamlet_proto::Opened, ErrorBody> {
        match outcome {
            OpenOutcome::Done(result) => result,
            OpenOutcome::Waiting(_) => panic!("it waits"),
        }
    }

    /// The stream id of the `Assign` the streamlet got next.
    async fn assigned(peer: &Peer) -> StreamId {
        match peer.next().await {
            (ToWorker::Assign(assign), Some(_)) => assign.stream,
            other => panic!("an Assign with its connection, not {other:?}"),
        }
    }

    fn ended(stream: StreamId, reason: EndReason) -> Ended {
        Ended { stream, reason, bytes_in: 3, bytes_out: 4 }
    }

    fn end_reasons(core: &mut Core) -> Vec<EndReason> {
        events(core)
            .into_iter()
            .filter_map(|e| match e {
                Event::StreamEnded(ended) => Some(ended.reason),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn a_stream_is_counted_from_its_hand_over_to_its_end() {
        let mut core = Core::new(&pool(1, 1, 2, ""));
        let peer = ready_in_core(&mut core, "echo", 0);
        let (_client, fd) = client();
        let done = opened(core.open(&open("acme"), fd, None, 1)).unwrap();
        assert_eq!((done.worker, done.rate), (peer.id, None));
        assert_eq!(assigned(&peer).await, done.stream);
        assert_eq!(core.stream_count(), 1);
        assert_eq!(core.bandwidth.tenants.held("acme"), 1);
        assert!(!core.stream_ended(WorkerId(77), ended(done.stream, EndReason::Completed)), "not that streamlet's");
        assert!(core.stream_ended(peer.id, ended(done.stream, EndReason::Completed)));
        assert!(!core.stream_ended(peer.id, ended(done.stream, EndReason::Completed)), "ended once");
        assert_eq!((core.stream_count(), core.bandwidth.tenants.held("acme")), (0, 0));
        assert!(core.fleet.workers[&peer.id].streams.is_empty());
        let log = events(&mut core);
        assert!(matches!(log.last(), Some(Event::StreamEnded(e)) if e.bytes_exact && e.bytes_out == 4), "{log:?}");
    }

    #[tokio::test]
    async fn a_closed_stream_ends_as_closed_whatever_its_streamlet_saw() {
        let mut core = Core::new(&pool(1, 1, 2, ""));
        let peer = ready_in_core(&mut core, "echo", 0);
        let (_client, fd) = client();
        let stream = opened(core.open(&open("acme"), fd, None, 1)).unwrap().stream;
        assigned(&peer).await;
        core.close(stream).unwrap();
        assert!(matches!(peer.next().await.0, ToWorker::Close { stream: s } if s == stream));
        core.close(stream).unwrap();
        assert!(peer.quiet().await, "told once");
        core.stream_ended(peer.id, ended(stream, EndReason::IoError { message: "reset".into() }));
        assert_eq!(end_reasons(&mut core), [EndReason::Closed]);
        assert_eq!(core.close(stream).unwrap_err().code, ErrorCode::UnknownStream);
        assert_eq!(core.pool_statuses()[0].errors.get("io_error"), None, "a close is no error");
    }

    #[tokio::test]
    async fn an_open_that_waits_is_answered_when_a_streamlet_is_ready() {
        let mut core = Core::new(&pool(1, 1, 2, ""));
        let (owner, mut replies) = EventSink::new(Encoding::Json);
        let (_client, fd) = client();
        let request = OpenRequest { wait_ms: Some(10_000), ..OpenRequest::new("echo") };
        let outcome = core.open(&crate::validate::open(request).unwrap(), fd, Some(owner), 42);
        let OpenOutcome::Waiting(mut answered) = outcome else { panic!("it waits for a streamlet") };
        assert!(answered.try_recv().is_err(), "not yet");
        let peer = ready_in_core(&mut core, "echo", 0);
        answered.try_recv().expect("answered once the streamlet is ready");
        let stream = assigned(&peer).await;
        let reply = std::iter::from_fn(|| replies.try_recv().ok())
            .find_map(|out| match out {
                Outgoing::Frame(frame) => serde_json::from_slice::<serde_json::Value>(&frame[4..]).ok(),
                _ => None,
            })
            .expect("a reply");
        assert_eq!(reply["reply"]["id"], 42, "{reply}");
        assert_eq!(reply["reply"]["body"]["opened"]["stream"], stream.0, "{reply}");
    }

    #[tokio::test]
    async fn with_migrate_a_dead_streamlets_streams_move_to_another() {
        let mut core = Core::new(&pool(2, 2, 4, "on_worker_exit = \"migrate\"\n"));
        let a = ready_in_core(&mut core, "echo", 0);
        let b = ready_in_core(&mut core, "echo", 1);
        let (_client, fd) = client();
        let done = opened(core.open(&open("acme"), fd, None, 1)).unwrap();
        let (dead, alive, slot) = if done.worker == a.id { (&a, &b, 0) } else { (&b, &a, 1) };
        assigned(dead).await;
        let cause = ExitCause::Signaled { signal: 9, core_dumped: false };
        let (respawn, _) = core.worker_exited(dead.id, cause);
        assert_eq!(respawn.map(|r| (r.pool, r.slot)), Some(("echo".to_owned(), slot)), "its slot is refilled");
        assert_eq!(assigned(alive).await, done.stream, "the other streamlet got the stream");
        let (infos, _) = core.stream_infos(None, None, 10).unwrap();
        assert_eq!(infos.iter().map(|s| s.worker).collect::<Vec<_>>(), [alive.id]);
        assert!(end_reasons(&mut core).is_empty(), "nothing ended");
        assert!(events(&mut core).iter().any(|e| matches!(e, Event::StreamMigrated(m) if m.to == alive.id)));
        assert_eq!(core.bandwidth.tenants.held("acme"), 1, "its tenant slot stays");
    }

    #[tokio::test]
    async fn without_migrate_a_dead_streamlets_streams_end_and_count_as_errors() {
        let mut core = Core::new(&pool(1, 1, 4, ""));
        let peer = ready_in_core(&mut core, "echo", 0);
        for _ in 0..2 {
            let (_client, fd) = client();
            opened(core.open(&open("acme"), fd, None, 1)).unwrap();
        }
        let cause = ExitCause::Exited { code: 3 };
        core.worker_exited(peer.id, cause.clone());
        assert_eq!(end_reasons(&mut core), vec![EndReason::WorkerDied { cause: cause.clone() }; 2]);
        assert_eq!((core.stream_count(), core.bandwidth.tenants.held("acme")), (0, 0));
        assert_eq!(core.pool_statuses()[0].errors.get("worker_died"), Some(&2));
        let (infos, _) = core.worker_infos(None).unwrap_or_default().into_iter().unzip::<_, _, Vec<_>, Vec<_>>();
        assert!(infos.is_empty(), "it left the table");
    }

    #[tokio::test]
    async fn a_ready_spare_fills_a_dead_streamlets_slot_at_once() {
        let mut core = Core::new(&pool(1, 1, 4, "spare = true\n"));
        let first = ready_in_core(&mut core, "echo", 0);
        let spare = ready_in_core(&mut core, "echo", SPARE_SLOT);
        assert_eq!(core.fleet.workers[&spare.id].state, WorkerState::Spare);
        let (respawn, _) = core.worker_exited(first.id, ExitCause::Exited { code: 1 });
        assert_eq!(respawn.map(|r| r.slot), Some(SPARE_SLOT), "what is spawned next is a new spare");
        assert_eq!(core.fleet.workers[&spare.id].state, WorkerState::Ready);
        let log = events(&mut core);
        let exited = log.iter().position(|e| matches!(e, Event::WorkerExited(x) if x.worker == first.id));
        let took =
            log.iter().position(|e| matches!(e, Event::WorkerReady(r) if r.worker == spare.id && r.startup_ms == 0));
        assert!(exited.is_some() && exited < took, "exit, then the spare's ready: {log:?}");
        let (_client, fd) = client();
        assert_eq!(opened(core.open(&open("acme"), fd, None, 1)).unwrap().worker, spare.id);
    }

    #[tokio::test]
    async fn an_admission_that_does_not_fit_holds_nothing() {
        let mut core = Core::new(&pool(1, 1, 4, "egress = \"1000\"\n"));
        let peer = ready_in_core(&mut core, "echo", 0);
        let request = |min| {
            let rate = Some(RateRequest { min, max: 1000 });
            crate::validate::open(OpenRequest { rate, ..OpenRequest::new("echo") }).unwrap()
        };
        let (_client, fd) = client();
        let first = opened(core.open(&request(800), fd, None, 1)).unwrap();
        assert!(first.rate.is_some_and(|r| r >= 800), "{first:?}");
        let (_client, fd) = client();
        let refused = opened(core.open(&request(800), fd, None, 2)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::Insufficient);
        assert_eq!(core.fleet.workers[&peer.id].streams.len(), 1, "its place was given back");
        assert_eq!(core.stream_count(), 1);
    }

    #[tokio::test]
    async fn shutdown_ends_every_stream_and_refuses_what_comes_after() {
        let mut core = Core::new(&pool(1, 1, 4, ""));
        let _peer = ready_in_core(&mut core, "echo", 0);
        let (owner, mut heard) = EventSink::new(Encoding::Json);
        let (_client, fd) = client();
        opened(core.open(&open("acme"), fd, Some(owner), 1)).unwrap();
        let links = core.begin_shutdown();
        assert_eq!((links.len(), core.stream_count()), (1, 0));
        let told = std::iter::from_fn(|| heard.try_recv().ok()).any(|out| match out {
            Outgoing::Event(frame) => {
                let event: serde_json::Value = serde_json::from_slice(&frame[4..]).unwrap();
                event["event"]["stream_ended"]["reason"] == "shutdown"
            }
            _ => false,
        });
        assert!(told, "the owner hears its stream ended with shutdown");
        let (_client, fd) = client();
        assert_eq!(opened(core.open(&open("acme"), fd, None, 2)).unwrap_err().code, ErrorCode::ShuttingDown);
        assert_eq!(core.lease(super::lease("acme")).unwrap_err(), LeaseError::ShuttingDown);
        assert!(!core.spawning_in("echo"));
    }
}
