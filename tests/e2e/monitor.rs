//! The crash-isolation monitor through the daemon: every kind of death for
//! real, migration across a SIGKILL, the operator's drain, kill and rolling
//! restart, and the crash-loop breaker.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use streamlet_client::Client;
use streamlet_proto::{EndReason, Event, ExitCause, OpenRequest, StreamEnded, StreamId, WorkerId, WorkerState};

use crate::support::{echo_once, hostile_worker, privileged, signal, Daemon};

/// Waits for the next event that `pick` accepts, for at most 15 s.
async fn next<T>(client: &mut Client, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, client.next_event()).await.expect("an event in time").unwrap();
        if let Some(picked) = pick(event) {
            return picked;
        }
    }
}

async fn ended(client: &mut Client, stream: StreamId) -> StreamEnded {
    next(client, |e| match e {
        Event::StreamEnded(ended) if ended.stream == stream => Some(ended),
        _ => None,
    })
    .await
}

async fn open(client: &mut Client, pool: &str, labels: &[(&str, &str)]) -> (StreamId, WorkerId, UnixStream) {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let opened = client.open(OpenRequest { labels, ..OpenRequest::new(pool) }, theirs.as_fd()).await.unwrap();
    mine.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    (opened.stream, opened.worker, mine)
}

/// One slot, so that every death lands in the same history; a short
/// heartbeat timeout; a breaker that never trips here.
fn one_slot_config() -> String {
    format!(
        r#"
[daemon]
worker_binary = "{}"
shutdown_timeout = "2s"

[pools.edge]
handler = {{ kind = "echo" }}
workers = {{ min = 1, max = 1 }}
streams_per_worker = 4
limits = {{ memory = "64MiB" }}
heartbeat_timeout = "500ms"
restart = {{ intensity = 50 }}
"#,
        hostile_worker().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_death_is_classified_and_its_slot_remembers_it() {
    if !privileged() {
        return;
    }
    let daemon = Daemon::start(&one_slot_config());
    let mut client = daemon.client().await;
    type Case = (&'static [(&'static str, &'static str)], fn(&ExitCause) -> bool);
    let cases: [Case; 5] = [
        (&[("behave", "exit"), ("code", "7")], |c| *c == ExitCause::Exited { code: 7 }),
        (&[("behave", "segv")], |c| matches!(c, ExitCause::Signaled { signal: libc::SIGSEGV, .. })),
        (&[("behave", "garbage")], |c| matches!(c, ExitCause::ProtocolError { .. })),
        (&[("behave", "block"), ("seconds", "5")], |c| matches!(c, ExitCause::Hung { silent_ms } if *silent_ms >= 500)),
        (&[("behave", "memory-bomb")], |c| *c == ExitCause::Oom),
    ];
    let mut seen = Vec::new();
    for (labels, expected) in cases {
        daemon.wait_until(|s| s.pools[0].ready == 1);
        let (stream, worker, _conn) = open(&mut client, "edge", labels).await;
        let end = ended(&mut client, stream).await;
        assert_eq!(end.worker, worker);
        let EndReason::WorkerDied { cause } = end.reason else { panic!("{labels:?}: {:?}", end.reason) };
        assert!(expected(&cause), "{labels:?} died of {cause}");
        seen.push((worker, cause));
    }

    // The replacement's slot remembers all five, newest first.
    daemon.wait_until(|s| s.pools[0].ready == 1);
    let workers = client.workers(None).await.unwrap();
    // (The ready one: a spare still starting is listed as starting.)
    let now = workers.iter().find(|w| w.state == WorkerState::Ready).unwrap().clone();
    assert_eq!(now.restarts, 5);
    assert_eq!(now.last_exit.as_ref(), Some(&seen[4].1));
    let detail = client.worker(now.id).await.unwrap();
    let remembered: Vec<(WorkerId, ExitCause)> = detail.deaths.iter().map(|d| (d.worker, d.cause.clone())).collect();
    seen.reverse();
    assert_eq!(remembered, seen);
    assert!(detail.deaths.iter().all(|d| d.streams == 1), "each served the one stream that killed it");

    // And the operator reads it at 3 a.m.
    let out = std::process::Command::new(crate::support::STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["worker", &now.id.0.to_string()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for cause in ["oom", "hung (silent for", "protocol error", "signal SIGSEGV", "exit code 7"] {
        assert!(text.contains(cause), "{cause} missing from:\n{text}");
    }
    let unknown = client.worker(WorkerId(999_999)).await.unwrap_err();
    assert!(unknown.to_string().contains("unknown_worker"), "{unknown}");
}

const MIGRATE: &str = r#"
[daemon]
shutdown_timeout = "2s"
stats_interval = "50ms"

[capacity]
egress = "10MB/s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 8
on_worker_exit = "migrate"
default_rate = { min = "1MB/s", max = "10MB/s" }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_migrate_a_client_keeps_echoing_across_a_sigkill_of_its_streamlet() {
    let daemon = Daemon::start(MIGRATE);
    let mut client = daemon.client().await;
    let mut watcher = daemon.client().await;
    watcher.subscribe().await.unwrap();
    let (stream, first, mut conn) = open(&mut client, "echo", &[]).await;
    echo_once(&mut conn, b"before the crash");
    // (Counters are as fresh as the streamlet's last report: wait for it.)
    while client.streams(None).await.unwrap()[0].bytes_in < 16 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let victim = client.workers(None).await.unwrap().into_iter().find(|w| w.id == first).unwrap();

    signal(victim.pid, libc::SIGKILL);
    // The stream's move is published first, then the death.
    let migrated = next(&mut watcher, |e| match e {
        Event::StreamMigrated(m) => Some(m),
        _ => None,
    })
    .await;
    assert_eq!((migrated.stream, migrated.from), (stream, first));
    assert_ne!(migrated.to, first);
    let exited = next(&mut watcher, |e| match e {
        Event::WorkerExited(x) if x.worker == first => Some(x),
        _ => None,
    })
    .await;
    assert_eq!(exited.cause, ExitCause::Signaled { signal: libc::SIGKILL, core_dumped: false });
    assert_eq!(exited.streams, 1);

    // Same connection, same stream id, another streamlet.
    echo_once(&mut conn, b"after the crash");
    let streams = client.streams(None).await.unwrap();
    assert_eq!(streams.len(), 1);
    assert_eq!((streams[0].id, streams[0].worker), (stream, migrated.to));
    assert_eq!(streams[0].rate, Some(10_000_000), "its quota came along, once");
    let quota = client.quota().await.unwrap();
    let host = quota.lines.iter().find(|l| l.level == "host").unwrap();
    assert_eq!((host.streams, host.reserved), (1, 1_000_000), "no quota leaked or doubled");
    // It ends normally later, with the bytes of both streamlets counted.
    drop(conn);
    let end = ended(&mut client, stream).await;
    assert_eq!(end.reason, EndReason::Completed);
    assert_eq!(end.bytes_in, ("before the crash".len() + "after the crash".len()) as u64);
    assert!(end.bytes_exact);
    let quota = client.quota().await.unwrap();
    let host = quota.lines.iter().find(|l| l.level == "host").unwrap();
    assert_eq!((host.streams, host.reserved, host.allocated), (0, 0, 0));
}

const TWO: &str = r#"
[daemon]
shutdown_timeout = "2s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 4
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drained_streamlet_takes_no_new_streams_and_leaves_when_empty() {
    let daemon = Daemon::start(TWO);
    let mut client = daemon.client().await;
    let (stream, worker, mut conn) = open(&mut client, "echo", &[]).await;
    client.drain(worker, None).await.unwrap();
    let listed = client.worker(worker).await.unwrap();
    assert_eq!(listed.info.state, WorkerState::Draining);
    for _ in 0..3 {
        let (_, other, _c) = open(&mut client, "echo", &[]).await;
        assert_ne!(other, worker, "a draining streamlet gets no new stream");
    }
    echo_once(&mut conn, b"still served");

    // Its last stream ends: it exits, and a new one takes the slot at once.
    drop(conn);
    let end = ended(&mut client, stream).await;
    assert_eq!(end.reason, EndReason::Completed);
    daemon.wait_until(|s| s.pools[0].ready == 2);
    let workers = client.workers(None).await.unwrap();
    assert!(workers.iter().all(|w| w.id != worker));
    let replacement = workers.iter().find(|w| w.restarts == 1).expect("the drained slot was filled");
    assert_eq!(replacement.last_exit, Some(ExitCause::Exited { code: 0 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_times_out_and_a_kill_are_the_operators() {
    let daemon = Daemon::start(TWO);
    let mut client = daemon.client().await;
    let (stream, worker, _conn) = open(&mut client, "echo", &[]).await;
    client.drain(worker, Some(300)).await.unwrap();
    let end = ended(&mut client, stream).await;
    assert_eq!(end.reason, EndReason::WorkerDied { cause: ExitCause::KilledByOperator });
    assert!(!end.bytes_exact, "a killed streamlet reports no totals: the counts are its last report's");

    daemon.wait_until(|s| s.pools[0].ready == 2);
    let target = client.workers(None).await.unwrap().iter().find(|w| w.state == WorkerState::Ready).unwrap().id;
    let started = Instant::now();
    client.kill(target).await.unwrap();
    // Gone, and its slot serving again (the spare, or a new streamlet).
    let detail = loop {
        let workers = client.workers(None).await.unwrap();
        let ready = workers.iter().filter(|w| w.state == WorkerState::Ready).count();
        if workers.iter().all(|w| w.id != target) && ready == 2 {
            break workers;
        }
        assert!(started.elapsed() < Duration::from_secs(5), "not replaced without a backoff: {workers:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert!(detail.iter().any(|w| w.last_exit == Some(ExitCause::KilledByOperator)));
    assert!(client.kill(target).await.unwrap_err().to_string().contains("unknown_worker"));
    assert!(client.drain(WorkerId(424_242), None).await.unwrap_err().to_string().contains("unknown_worker"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_replaces_every_streamlet_one_at_a_time() {
    // Migrate: the streamlet holding a stream is killed at its drain's
    // timeout, and the stream moves on.
    // (A long heartbeat timeout: a suite busy elsewhere must not starve one
    // into a hang and blur what this test counts.)
    let config = TWO.replace("min = 2, max = 2", "min = 3, max = 3")
        + "on_worker_exit = \"migrate\"\nheartbeat_timeout = \"30s\"\n";
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let mut watcher = daemon.client().await;
    watcher.subscribe().await.unwrap();
    let serving = |ws: &[streamlet_proto::WorkerInfo]| -> Vec<WorkerId> {
        ws.iter().filter(|w| w.state != WorkerState::Spare).map(|w| w.id).collect()
    };
    // (Once the spare is ready: while it starts, it is listed as starting,
    // and a restart leaves spares out.)
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let workers = client.workers(None).await.unwrap();
        if workers.iter().any(|w| w.state == WorkerState::Spare) {
            break serving(&workers);
        }
        assert!(Instant::now() < deadline, "no spare ready: {workers:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let (_, _, mut conn) = open(&mut client, "echo", &[]).await;
    let accepted = client.restart("echo".into()).await.unwrap();
    assert_eq!(accepted.workers, before);
    assert!(client.restart("echo".into()).await.is_err(), "one rolling restart at a time");

    // Each old one exits only after the previous one's replacement is ready,
    // and the pool never serves from fewer than two streamlets meanwhile.
    let (mut ready, mut exited) = (0, Vec::new());
    while exited.len() < 3 || ready < 3 {
        match next(&mut watcher, Some).await {
            // (The old spare is replaced too, outside the count.)
            Event::WorkerExited(x) if before.contains(&x.worker) => {
                assert_eq!(exited.len(), ready, "{} exited before the last replacement was ready", x.worker);
                exited.push(x.worker);
            }
            Event::WorkerReady(_) => ready += 1,
            _ => {}
        }
        let status = client.status().await.unwrap();
        assert!(status.pools[0].ready >= 2, "{:?}", status.pools[0]);
    }
    exited.sort_unstable();
    assert_eq!(exited, before, "every old streamlet went, once");
    let after = client.workers(None).await.unwrap();
    assert!(serving(&after).iter().all(|id| !before.contains(id)), "{after:?}");
    assert!(after.iter().all(|w| matches!(w.state, WorkerState::Ready | WorkerState::Spare)), "{after:?}");
    echo_once(&mut conn, b"served throughout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_degrades_the_pool_then_it_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = r#"
[daemon]
worker_binary = "/bin/false"
shutdown_timeout = "2s"

[pools.broken]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 1
restart = { intensity = 2, period = "10s", cooldown = "1s", jitter = 0.0 }
"#;
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, config).unwrap();
    let socket = dir.path().join("streamletd.sock");
    let mut cmd = std::process::Command::new(crate::support::STREAMLETD);
    cmd.arg("--config").arg(&path).arg("--socket").arg(&socket);
    let daemon = Daemon::spawn_unready(cmd, dir, socket);
    let mut watcher = daemon.client().await;
    watcher.subscribe().await.unwrap();

    let degraded = next(&mut watcher, |e| match e {
        Event::PoolDegraded(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!((degraded.pool.as_str(), degraded.deaths, degraded.cooldown_ms), ("broken", 3, 1_000));
    let status = watcher.status().await.unwrap();
    assert!(status.pools[0].degraded_for_ms.is_some_and(|ms| ms <= 1_000), "{:?}", status.pools[0]);
    let started = Instant::now();
    let recovered = next(&mut watcher, |e| match e {
        Event::PoolRecovered(r) => Some(r),
        _ => None,
    })
    .await;
    assert_eq!(recovered.pool, "broken");
    assert!(started.elapsed() <= Duration::from_millis(1_500), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spare_takes_a_dead_streamlets_slot_and_labels_at_once() {
    let config = r#"
[daemon]
shutdown_timeout = "2s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 4
worker_labels = [{ zone = "a" }, { zone = "b" }]
"#;
    let daemon = Daemon::start(config);
    daemon.wait_until(|s| s.pools[0].spares == 1);
    let mut client = daemon.client().await;
    let mut spare = None;
    while spare.is_none() {
        let workers = client.workers(None).await.unwrap();
        spare = workers.iter().find(|w| w.state == WorkerState::Spare).cloned();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let spare = spare.unwrap();
    assert!(spare.labels.is_empty(), "a spare has no slot yet: {spare:?}");
    let victim = client
        .workers(None)
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.labels.get("zone").is_some_and(|z| z == "b"))
        .unwrap();

    signal(victim.pid, libc::SIGKILL);
    let mut promoted = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while promoted.is_none() {
        assert!(Instant::now() < deadline, "the spare never took the slot");
        let workers = client.workers(None).await.unwrap();
        promoted = workers.into_iter().find(|w| w.id == spare.id && w.state == WorkerState::Ready);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let promoted = promoted.unwrap();
    assert_eq!(promoted.labels.get("zone").map(String::as_str), Some("b"), "it carries the slot's labels");
    assert_eq!(promoted.restarts, 1, "the slot's history came with it");
    assert!(matches!(promoted.last_exit, Some(ExitCause::Signaled { signal: libc::SIGKILL, .. })));
    // And a new spare stands behind it.
    daemon.wait_until(|s| s.pools[0].spares == 1 && s.pools[0].ready == 2);
    let (_, worker, mut conn) = open(&mut client, "echo", &[]).await;
    assert_ne!(worker, victim.id);
    echo_once(&mut conn, b"served");
}
