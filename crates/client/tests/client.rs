//! The client against a scripted daemon.

mod support;

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use streamlet_client::proto::conn::ReadError;
use streamlet_client::proto::frame::{FrameError, MAX_REPLY_LEN};
use streamlet_client::proto::{
    Closed, Encoding, EndReason, ErrorBody, ErrorCode, Event, OpenRequest, Opened, PoolStatus, ReplyBody, RequestBody,
    StatusReport, StatusRequest, StreamEnded, StreamId, WorkerId, WorkerList,
};
use streamlet_client::{Client, ClientError, CLIENT_NAME};
use support::FakeDaemon;

fn status_report() -> StatusReport {
    StatusReport {
        version: "0.1.0".into(),
        pid: 42,
        uptime_ms: 1000,
        socket: "/tmp/x.sock".into(),
        pools: vec![PoolStatus {
            name: "echo".into(),
            handler: "echo".into(),
            placement: "least_loaded".into(),
            workers: 1,
            ready: 1,
            streams: 0,
            capacity: 8,
            degraded_for_ms: None,
            spares: 0,
            slots: 2,
            errors: Default::default(),
            min: 1,
            max: 2,
            desired: 1,
            forecast: None,
            predicted_streams: None,
            autoscale: "reactive".into(),
            listening: Vec::new(),
        }],
    }
}

fn ended(stream: u64) -> Event {
    Event::StreamEnded(StreamEnded {
        stream: StreamId(stream),
        pool: "echo".into(),
        worker: WorkerId(1),
        reason: EndReason::Completed,
        bytes_in: 5,
        bytes_out: 5,
        bytes_exact: true,
    })
}

#[tokio::test]
async fn handshakes_and_asks_for_status_in_both_encodings() {
    for encoding in [Encoding::Postcard, Encoding::Json] {
        let daemon = FakeDaemon::start();
        let server = async {
            let mut conn = daemon.accept().await;
            assert_eq!(conn.hello.client.as_deref(), Some("test-client"));
            assert_eq!(conn.encoding, encoding);
            let (request, fd) = conn.request().await.unwrap();
            assert_eq!(request.id, 1, "ids start at 1");
            assert_eq!(request.body, RequestBody::Status(StatusRequest {}));
            assert!(fd.is_none());
            conn.reply(1, ReplyBody::Status(status_report())).await;
        };
        let client = async {
            let mut client = Client::connect_with(&daemon.path, encoding, "test-client").await.unwrap();
            assert_eq!(client.welcome().server, "streamletd test");
            assert_eq!(client.welcome().encoding, encoding);
            client.status().await.unwrap()
        };
        let ((), status) = tokio::join!(server, client);
        assert_eq!(status, status_report());
    }
}

#[tokio::test]
async fn connect_uses_postcard_and_the_library_name() {
    let daemon = FakeDaemon::start();
    let (conn, client) = tokio::join!(daemon.accept(), Client::connect(&daemon.path));
    client.unwrap();
    assert_eq!(conn.encoding, Encoding::Postcard);
    assert_eq!(conn.hello.client.as_deref(), Some(CLIENT_NAME));
}

#[tokio::test]
async fn an_error_reply_is_a_server_error_with_its_code() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept().await;
        let (request, _) = conn.request().await.unwrap();
        let error = ErrorBody::new(ErrorCode::UnknownPool, "pool \"x\" is not configured");
        conn.reply(request.id, ReplyBody::Error(error)).await;
        let (request, _) = conn.request().await.unwrap();
        assert_eq!(request.id, 2, "ids increase");
        conn.reply(request.id, ReplyBody::Workers(WorkerList { workers: vec![] })).await;
    };
    let client = async {
        let mut client = Client::connect(&daemon.path).await.unwrap();
        let err = client.workers(Some("x".into())).await.unwrap_err();
        assert!(matches!(&err, ClientError::Server(body) if body.code == ErrorCode::UnknownPool), "{err:?}");
        assert_eq!(err.code(), Some(ErrorCode::UnknownPool));
        assert_eq!(err.to_string(), "unknown_pool: pool \"x\" is not configured");
        // The connection is still good.
        assert!(client.workers(None).await.unwrap().is_empty());
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn events_that_arrive_before_a_reply_are_queued() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept().await;
        let (request, _) = conn.request().await.unwrap();
        conn.event(ended(1)).await;
        conn.event(ended(2)).await;
        conn.reply(request.id, ReplyBody::Closed(Closed { stream: StreamId(9) })).await;
        let (request, _) = conn.request().await.unwrap();
        conn.event(ended(3)).await;
        conn.reply(request.id, ReplyBody::Status(status_report())).await;
        conn.event(ended(4)).await;
    };
    let client = async {
        let mut client = Client::connect(&daemon.path).await.unwrap();
        assert_eq!(client.close(StreamId(9)).await.unwrap(), Closed { stream: StreamId(9) });
        assert_eq!(client.take_events(), [ended(1), ended(2)]);
        assert!(client.take_events().is_empty());
        client.status().await.unwrap();
        assert_eq!(client.next_event().await.unwrap(), ended(3), "queued first");
        assert_eq!(client.next_event().await.unwrap(), ended(4), "then read");
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn open_passes_the_connection_to_the_daemon() {
    let daemon = FakeDaemon::start();
    let (mut ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let server = async {
        let mut conn = daemon.accept().await;
        let (request, fd) = conn.request().await.unwrap();
        let RequestBody::Open(open) = request.body else { panic!("expected open, got {:?}", request.body) };
        assert_eq!(open.pool, "echo");
        assert_eq!(open.tenant.as_deref(), Some("acme"));
        let mut passed = std::os::unix::net::UnixStream::from(fd.expect("a descriptor with the open"));
        passed.write_all(b"hi").unwrap();
        let opened = Opened { stream: StreamId(7), pool: open.pool, worker: WorkerId(3), rate: None };
        conn.reply(request.id, ReplyBody::Opened(opened)).await;
    };
    let client = async {
        let mut client = Client::connect(&daemon.path).await.unwrap();
        let request = OpenRequest { tenant: Some("acme".into()), ..OpenRequest::new("echo") };
        client.open(request, theirs.as_fd()).await.unwrap()
    };
    let ((), opened) = tokio::join!(server, client);
    assert_eq!((opened.stream, opened.worker), (StreamId(7), WorkerId(3)));
    drop(theirs);
    let mut got = Vec::new();
    ours.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"hi");
}

#[tokio::test]
async fn pipelined_replies_come_out_of_recv_in_the_order_sent() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept().await;
        let (first, _) = conn.request().await.unwrap();
        let (second, _) = conn.request().await.unwrap();
        conn.reply(second.id, ReplyBody::Closed(Closed { stream: StreamId(2) })).await;
        conn.reply(first.id, ReplyBody::Closed(Closed { stream: StreamId(1) })).await;
    };
    let client = async {
        let mut client = Client::connect(&daemon.path).await.unwrap();
        let status = || RequestBody::Status(StatusRequest {});
        assert_eq!(client.send(status(), None).await.unwrap(), 1);
        assert_eq!(client.send(status(), None).await.unwrap(), 2);
        let ids: Vec<u64> = [client.recv().await.unwrap(), client.recv().await.unwrap()]
            .into_iter()
            .map(|message| match message {
                streamlet_client::proto::ServerMessage::Reply(reply) => reply.id,
                other => panic!("expected a reply, got {other:?}"),
            })
            .collect();
        assert_eq!(ids, [2, 1]);
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn a_reply_nobody_waits_for_is_unexpected_in_next_event() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept().await;
        conn.reply(42, ReplyBody::Closed(Closed { stream: StreamId(1) })).await;
    };
    let client = async {
        let mut client = Client::connect(&daemon.path).await.unwrap();
        client.next_event().await.unwrap_err()
    };
    let ((), err) = tokio::join!(server, client);
    assert!(
        matches!(&err, ClientError::Unexpected { expected: "an event", received } if received.contains("42")),
        "{err:?}"
    );
}

#[tokio::test]
async fn an_error_about_an_undecodable_frame_answers_the_waiting_request() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept().await;
        conn.request().await.unwrap();
        conn.reply(0, ReplyBody::Error(ErrorBody::new(ErrorCode::BadRequest, "bad frame"))).await;
    };
    let client = async { Client::connect(&daemon.path).await.unwrap().status().await.unwrap_err() };
    let ((), err) = tokio::join!(server, client);
    assert_eq!(err.code(), Some(ErrorCode::BadRequest));
}

#[tokio::test]
async fn a_refused_handshake_carries_the_daemons_error() {
    let daemon = FakeDaemon::start();
    let refuse = |_: &_| Err(ErrorBody::new(ErrorCode::UnsupportedVersion, "version 1 is not supported"));
    let (_, result) = tokio::join!(daemon.accept_with(refuse), Client::connect(&daemon.path));
    let err = result.unwrap_err();
    assert!(matches!(err, ClientError::Handshake(_)), "{err:?}");
    assert_eq!(err.code(), Some(ErrorCode::UnsupportedVersion));
}

/// Whatever answers at the socket's path may announce any frame size in its
/// welcome: the client still refuses a frame over its own limit on the
/// prefix, instead of waiting for (and buffering) what it announces.
#[tokio::test]
async fn a_frame_over_the_clients_limit_is_refused_whatever_the_welcome_announced() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept_announcing(|_| Ok(()), u32::MAX).await.unwrap();
        conn.request().await.unwrap();
        conn.send_raw(&(MAX_REPLY_LEN + 1).to_be_bytes()).await;
        conn
    };
    let client = async {
        let mut client = Client::connect(&daemon.path).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), client.status()).await
    };
    let (_conn, result) = tokio::join!(server, client);
    let err = result.expect("refused on the prefix, not waited for").unwrap_err();
    assert!(
        matches!(err, ClientError::Read(ReadError::Frame(FrameError::TooLarge { max: MAX_REPLY_LEN, .. }))),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_daemon_that_never_answers_the_hello_times_out() {
    let daemon = FakeDaemon::start();
    let (_connection, result) = tokio::join!(daemon.accept_silently(), Client::connect(&daemon.path));
    assert!(matches!(result, Err(ClientError::Timeout)), "{result:?}");
}

#[tokio::test]
async fn a_late_reply_is_dropped_after_its_request_timed_out() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept().await;
        let (first, _) = conn.request().await.unwrap();
        let (second, _) = conn.request().await.unwrap();
        conn.reply(first.id, ReplyBody::Closed(Closed { stream: StreamId(1) })).await;
        conn.reply(second.id, ReplyBody::Status(status_report())).await;
    };
    let client = async {
        let mut client = Client::connect(&daemon.path).await.unwrap();
        client.set_request_timeout(Some(Duration::from_millis(50)));
        assert!(matches!(client.close(StreamId(1)).await, Err(ClientError::Timeout)));
        client.set_request_timeout(None);
        assert_eq!(client.status().await.unwrap(), status_report());
    };
    tokio::join!(server, client);
}

#[tokio::test]
async fn a_daemon_that_hangs_up_is_closed() {
    let daemon = FakeDaemon::start();
    let server = async {
        let mut conn = daemon.accept().await;
        conn.request().await.unwrap();
    };
    let client = async { Client::connect(&daemon.path).await.unwrap().status().await.unwrap_err() };
    let ((), err) = tokio::join!(server, client);
    assert!(matches!(err, ClientError::Closed), "{err:?}");
    assert!(err.is_connection_lost());
}

#[tokio::test]
async fn a_missing_socket_names_the_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nobody.sock");
    let err = Client::connect(&path).await.unwrap_err();
    assert!(matches!(err, ClientError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains("is streamletd running, and on this path?"), "{text}");
}
