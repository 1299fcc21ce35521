//! `events`: the daemon's log of lifecycle events, `streamletctl events`,
//! following it, and what becomes of a subscriber that stops reading.

use std::io::{BufRead, BufReader};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use streamlet_proto::{Event, OpenRequest};

use crate::support::{signal, Daemon, Raw, STREAMLETCTL, TWO_BY_64};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_keeps_lifecycle_events_in_order_and_follow_misses_none() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let log = client.events(None, false).await.unwrap();
    let kinds: Vec<&str> = log
        .events
        .iter()
        .map(|e| match e.event {
            Event::WorkerSpawned(_) => "spawned",
            Event::WorkerReady(_) => "ready",
            _ => "other",
        })
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "spawned").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == "ready").count(), 2, "{kinds:?}");
    assert!(log.events.windows(2).all(|w| w[1].seq == w[0].seq + 1), "numbered without gaps");
    assert!(!log.following);

    // Follow from here; a stream's life shows, and nothing of the log twice.
    let mut watcher = daemon.client().await;
    let start = watcher.events(Some(1), true).await.unwrap();
    assert_eq!(start.events.len(), 1);
    assert!(start.following);
    let (mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
    drop(mine);
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen.iter().any(|e| matches!(e, Event::StreamEnded(_))) {
        let left = deadline.saturating_duration_since(Instant::now());
        seen.push(tokio::time::timeout(left, watcher.next_event()).await.expect("events in time").unwrap());
    }
    match &seen[..] {
        [Event::StreamOpened(o), Event::StreamEnded(e)] => {
            assert_eq!((o.stream, o.worker, o.tenant.as_str()), (opened.stream, opened.worker, "default"));
            assert_eq!(e.stream, opened.stream);
        }
        other => panic!("expected the stream's opening then its end: {other:?}"),
    }
    // The log has them too, after what came before.
    let log = client.events(Some(2), false).await.unwrap();
    assert!(matches!(log.events[0].event, Event::StreamOpened(_)));
    assert!(matches!(log.events[1].event, Event::StreamEnded(_)));
    assert_eq!(log.events[0].seq, start.events[0].seq + 1);
}

#[test]
fn streamletctl_events_prints_the_log_and_follows_it() {
    let daemon = Daemon::start(TWO_BY_64);
    let out = Command::new(STREAMLETCTL).arg("--socket").arg(&daemon.socket).arg("events").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains("worker_ready ")).count(), 2, "{text}");
    assert!(
        text.lines().all(|l| l.as_bytes()[2] == b':' && l.as_bytes()[8] == b'.'),
        "each starts with the time: {text}"
    );

    let mut follow = Command::new(STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["--json", "events", "-f", "--recent", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap());
        }
    });
    // (It may subscribe only after the first open: open streams until one
    // is seen from its opening to its end.)
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let whole_stream = |lines: &[String]| {
        lines.iter().any(|l| l.contains("\"stream_opened\"")) && lines.iter().any(|l| l.contains("\"stream_ended\""))
    };
    while !whole_stream(&lines) {
        assert!(Instant::now() < deadline, "no stream_ended followed: {lines:?}");
        let opened = std::process::Command::new(STREAMLETCTL)
            .arg("--socket")
            .arg(&daemon.socket)
            .args(["open", "--pool", "echo"])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(opened.status.success(), "{}", String::from_utf8_lossy(&opened.stderr));
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            lines.push(line);
        }
    }
    for line in &lines {
        let value: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["at_ms"].is_u64() && value["event"].is_object(), "{line}");
    }
    assert!(lines.iter().any(|l| l.contains("\"stream_opened\"")), "{lines:?}");
    signal(follow.id(), libc::SIGINT);
    assert!(follow.wait().unwrap().success(), "Ctrl-C ends it cleanly");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_dropped_with_a_notice_and_the_daemon_goes_on() {
    let daemon = Daemon::start(&TWO_BY_64.replace("streams_per_worker = 64", "streams_per_worker = 1000"));
    let mut slow = Raw::json(&daemon.socket);
    slow.frame(br#"{"id":1,"body":{"subscribe":{}}}"#);
    // Thousands of streams' events, none of them read: past 4 MiB queued,
    // the daemon drops the subscriber.
    let mut client = daemon.client().await;
    let started = Instant::now();
    let mut opened = 0;
    loop {
        let (mine, theirs) = UnixStream::pair().unwrap();
        client.open(OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
        drop(mine);
        opened += 1;
        if opened % 500 == 0 {
            let status = client.status().await.unwrap();
            assert_eq!(status.pools[0].ready, 2, "the daemon serves on");
        }
        if opened >= 40_000 || started.elapsed() > Duration::from_secs(60) {
            break;
        }
        if opened % 2_000 == 0 && slow_is_closed(&slow) {
            break;
        }
    }
    // Its frames, read now: the subscription's events, then the notice, then
    // the end.
    slow.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut last = None;
    let mut frames = 0;
    while let Some(frame) = slow.read() {
        frames += 1;
        last = Some(frame);
    }
    let last = last.expect("frames");
    assert!(last.pointer("/event/subscriber_dropped/unread").is_some_and(|u| u.as_u64() > Some(4 << 20)), "{last}");
    assert!(frames > 1_000, "{frames} frames");
    // Others are untouched.
    assert_eq!(client.status().await.unwrap().pools[0].ready, 2);
}

/// Whether the daemon has shut its side of the slow connection down
/// (without reading what is queued).
fn slow_is_closed(raw: &Raw) -> bool {
    let mut pollfd =
        libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&raw.sock), events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: poll on one valid descriptor, no wait.
    let n = unsafe { libc::poll(&mut pollfd, 1, 0) };
    n > 0 && pollfd.revents & libc::POLLRDHUP != 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_churn_does_not_push_the_streamlets_events_out_of_the_log() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    // Over 1024 stream events: 600 streams, opened and ended. (Each waits
    // for room: on a loaded host the ends may trail the opens by more than
    // the pool's 128 slots.)
    for _ in 0..600 {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let request = OpenRequest { wait_ms: Some(10_000), ..OpenRequest::new("echo") };
        client.open(request, theirs.as_fd()).await.unwrap();
        drop(mine);
    }
    daemon.wait_until(|s| s.pools[0].streams == 0);
    let log = client.events(None, false).await.unwrap();
    let ready = log.events.iter().filter(|e| matches!(e.event, Event::WorkerReady(_))).count();
    assert_eq!(ready, 2, "the streamlets' start is still in the log");
    let streams =
        log.events.iter().filter(|e| matches!(e.event, Event::StreamOpened(_) | Event::StreamEnded(_))).count();
    assert_eq!(streams, streamlet_proto::EVENT_LOG_LEN, "the stream events are bounded on their own");
    assert!(log.events.windows(2).all(|w| w[0].seq < w[1].seq), "merged in order");
}
