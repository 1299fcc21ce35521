//! The runtime over a real channel and real sockets, in-process.

use std::os::fd::AsFd;
use std::time::Duration;

use streamlet_proto::channel::{seqpacket_pair, Channel};
use streamlet_proto::worker::{Assign, Ended, FromWorker, HandlerSpec, Init, ToWorker};
use streamlet_proto::{EndReason, StreamId, WorkerId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

async fn recv(daemon: &Channel) -> FromWorker {
    let (message, fd) = tokio::time::timeout(Duration::from_secs(5), daemon.recv::<FromWorker>())
        .await
        .expect("streamlet answered in time")
        .unwrap()
        .expect("channel open");
    assert!(fd.is_none());
    message
}

fn assign(id: u64) -> ToWorker {
    ToWorker::Assign(Assign {
        stream: StreamId(id),
        tenant: "t".into(),
        labels: Default::default(),
        rate: None,
        ingress: None,
    })
}

#[tokio::test]
async fn serves_echo_reports_ends_and_exits_when_the_daemon_goes() {
    let (ours, theirs) = seqpacket_pair().unwrap();
    let daemon = Channel::new(ours).unwrap();
    let worker = tokio::spawn(async move { streamlet_worker::run(theirs, &streamlet_worker::builtin_handler).await });

    let init = Init {
        worker: WorkerId(1),
        pool: "echo".into(),
        handler: HandlerSpec::Echo { framing: None },
        stats_interval_ms: 0,
        heartbeat_interval_ms: 0,
    };
    daemon.send(&ToWorker::Init(init), None).await.unwrap();
    assert!(matches!(recv(&daemon).await, FromWorker::Ready { .. }));

    // Stream 1: echoes, then the client closes its side.
    let (mut client, server) = UnixStream::pair().unwrap();
    daemon.send(&assign(1), Some(server.as_fd())).await.unwrap();
    drop(server);
    client.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    client.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello");
    client.shutdown().await.unwrap();
    assert_eq!(client.read(&mut buf).await.unwrap(), 0, "echo shuts its side after the client's");
    assert_eq!(
        recv(&daemon).await,
        FromWorker::Ended(Ended { stream: StreamId(1), reason: EndReason::Completed, bytes_in: 5, bytes_out: 5 })
    );

    // Stream 2: closed by the daemon.
    let (mut client2, server2) = UnixStream::pair().unwrap();
    daemon.send(&assign(2), Some(server2.as_fd())).await.unwrap();
    drop(server2);
    client2.write_all(b"abc").await.unwrap();
    client2.read_exact(&mut buf[..3]).await.unwrap();
    daemon.send(&ToWorker::Close { stream: StreamId(2) }, None).await.unwrap();
    match recv(&daemon).await {
        FromWorker::Ended(e) => {
            assert_eq!(e.stream, StreamId(2));
            assert_eq!(e.reason, EndReason::Closed);
            assert_eq!((e.bytes_in, e.bytes_out), (3, 3));
        }
        other => panic!("expected Ended, got {other:?}"),
    }
    let n = tokio::time::timeout(Duration::from_secs(5), client2.read(&mut buf)).await.unwrap().unwrap();
    assert_eq!(n, 0, "a closed stream's connection is closed by the streamlet");

    drop(daemon);
    let outcome = tokio::time::timeout(Duration::from_secs(5), worker).await.unwrap().unwrap();
    assert!(outcome.is_ok(), "{outcome:?}");
}

#[tokio::test]
async fn an_assign_without_a_descriptor_is_a_protocol_error() {
    let (ours, theirs) = seqpacket_pair().unwrap();
    let daemon = Channel::new(ours).unwrap();
    let worker = tokio::spawn(async move { streamlet_worker::run(theirs, &streamlet_worker::builtin_handler).await });
    let init = Init {
        worker: WorkerId(1),
        pool: "echo".into(),
        handler: HandlerSpec::Echo { framing: None },
        stats_interval_ms: 0,
        heartbeat_interval_ms: 0,
    };
    daemon.send(&ToWorker::Init(init), None).await.unwrap();
    recv(&daemon).await;
    daemon.send(&assign(9), None).await.unwrap();
    let err = worker.await.unwrap().unwrap_err();
    assert!(err.to_string().contains("without a descriptor"), "{err}");
}

#[tokio::test]
async fn stats_report_moving_counters() {
    let (ours, theirs) = seqpacket_pair().unwrap();
    let daemon = Channel::new(ours).unwrap();
    tokio::spawn(async move { streamlet_worker::run(theirs, &streamlet_worker::builtin_handler).await });
    let init = Init {
        worker: WorkerId(1),
        pool: "echo".into(),
        handler: HandlerSpec::Echo { framing: None },
        stats_interval_ms: 20,
        heartbeat_interval_ms: 0,
    };
    daemon.send(&ToWorker::Init(init), None).await.unwrap();
    recv(&daemon).await;
    let (mut client, server) = UnixStream::pair().unwrap();
    daemon.send(&assign(4), Some(server.as_fd())).await.unwrap();
    client.write_all(&[1; 100]).await.unwrap();
    client.read_exact(&mut [0; 100]).await.unwrap();
    loop {
        if let FromWorker::Stats { streams } = recv(&daemon).await {
            if let Some(c) = streams.iter().find(|c| c.stream == StreamId(4)) {
                if c.bytes_in == 100 {
                    assert_eq!(c.bytes_out, 100);
                    break;
                }
            }
        }
    }
}

#[tokio::test]
async fn heartbeats_come_at_the_asked_interval_and_not_at_all_for_zero() {
    for (interval, expected) in [(20u32, true), (0, false)] {
        let (ours, theirs) = seqpacket_pair().unwrap();
        let daemon = Channel::new(ours).unwrap();
        tokio::spawn(async move { streamlet_worker::run(theirs, &streamlet_worker::builtin_handler).await });
        let init = Init {
            worker: WorkerId(1),
            pool: "echo".into(),
            handler: HandlerSpec::Echo { framing: None },
            stats_interval_ms: 0,
            heartbeat_interval_ms: interval,
        };
        daemon.send(&ToWorker::Init(init), None).await.unwrap();
        assert!(matches!(recv(&daemon).await, FromWorker::Ready { .. }));
        let beats = async {
            for _ in 0..5 {
                assert_eq!(recv(&daemon).await, FromWorker::Heartbeat);
            }
        };
        // Five beats at 20 ms come well within a second; none come for 0.
        let came = tokio::time::timeout(Duration::from_secs(1), beats).await.is_ok();
        assert_eq!(came, expected, "interval {interval}");
    }
}
