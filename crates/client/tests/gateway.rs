//! The TCP gateway against a scripted daemon.

mod support;

use std::net::TcpStream as StdTcpStream;
use std::time::Duration;

use streamlet_client::gateway::{Gateway, GatewayEvent};
use streamlet_client::proto::{
    EndReason, ErrorBody, ErrorCode, Event, Opened, ReplyBody, RequestBody, StreamEnded, StreamId, WorkerId,
};
use support::{Accepted, FakeDaemon};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

const PATIENCE: Duration = Duration::from_secs(10);

async fn start_gateway(socket: std::path::PathBuf) -> (std::net::SocketAddr, UnboundedReceiver<GatewayEvent>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = unbounded_channel();
    let gateway = Gateway::new(socket, "echo").tenant(Some("acme".into())).events(tx);
    tokio::spawn(gateway.run(listener));
    (addr, rx)
}

async fn next(events: &mut UnboundedReceiver<GatewayEvent>) -> GatewayEvent {
    tokio::time::timeout(PATIENCE, events.recv()).await.expect("a gateway event in time").unwrap()
}

/// Serves one `Open`: checks it, greets the client through the passed
/// descriptor, closes that copy, replies and reports the stream's end.
async fn serve_open(conn: &mut Accepted, stream: u64) {
    let (request, fd) = conn.request().await.unwrap();
    let RequestBody::Open(open) = request.body else { panic!("expected open, got {:?}", request.body) };
    assert_eq!(open.pool, "echo");
    assert_eq!(open.tenant.as_deref(), Some("acme"));
    assert!(open.labels.contains_key("peer"), "{:?}", open.labels);
    let connection = StdTcpStream::from(fd.expect("the connection with the open"));
    std::io::Write::write_all(&mut &connection, b"hello").unwrap();
    drop(connection);
    let opened = Opened { stream: StreamId(stream), pool: open.pool.clone(), worker: WorkerId(1), rate: None };
    conn.reply(request.id, ReplyBody::Opened(opened)).await;
    let ended = StreamEnded {
        stream: StreamId(stream),
        pool: open.pool,
        worker: WorkerId(1),
        reason: EndReason::Completed,
        bytes_in: 0,
        bytes_out: 5,
        bytes_exact: true,
    };
    conn.event(Event::StreamEnded(ended)).await;
}

async fn read_all(mut tcp: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut got)).await.unwrap().unwrap();
    got
}

#[tokio::test]
async fn places_connections_and_reports_their_end() {
    let daemon = FakeDaemon::start();
    let (addr, mut events) = start_gateway(daemon.path.clone()).await;
    let mut conn = daemon.accept().await;
    assert_eq!(conn.hello.client.as_deref(), Some("streamlet-gateway"));

    let tcp = TcpStream::connect(addr).await.unwrap();
    let local = tcp.local_addr().unwrap();
    serve_open(&mut conn, 7).await;
    // Only the daemon's copy wrote and closed: the gateway closed its own.
    assert_eq!(read_all(tcp).await, b"hello");
    match next(&mut events).await {
        GatewayEvent::Placed { peer, opened } => {
            assert_eq!(peer, local);
            assert_eq!(opened.stream, StreamId(7));
        }
        other => panic!("expected placed, got {other:?}"),
    }
    assert!(matches!(next(&mut events).await, GatewayEvent::Ended(e) if e.stream == StreamId(7)));

    drop(conn);
    assert!(matches!(next(&mut events).await, GatewayEvent::Reconnecting { .. }));
}

#[tokio::test]
async fn a_daemon_error_refuses_the_connection() {
    let daemon = FakeDaemon::start();
    let (addr, mut events) = start_gateway(daemon.path.clone()).await;
    let mut conn = daemon.accept().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (request, fd) = conn.request().await.unwrap();
    drop(fd);
    conn.reply(request.id, ReplyBody::Error(ErrorBody::new(ErrorCode::NoCapacity, "pool echo is full"))).await;
    match next(&mut events).await {
        GatewayEvent::Refused { error, .. } => assert_eq!(error.code, ErrorCode::NoCapacity),
        other => panic!("expected refused, got {other:?}"),
    }
    assert!(read_all(tcp).await.is_empty(), "the refused connection is closed");
}

#[tokio::test]
async fn refuses_while_the_daemon_is_away_then_reconnects() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamletd.sock");
    let (addr, mut events) = start_gateway(path.clone()).await;
    assert!(matches!(next(&mut events).await, GatewayEvent::Reconnecting { .. }));

    let tcp = TcpStream::connect(addr).await.unwrap();
    let refused = loop {
        match next(&mut events).await {
            GatewayEvent::Reconnecting { .. } => continue,
            other => break other,
        }
    };
    match refused {
        GatewayEvent::Refused { error, .. } => assert_eq!(error.code, ErrorCode::Internal),
        other => panic!("expected refused, got {other:?}"),
    }
    assert!(read_all(tcp).await.is_empty());

    let daemon = FakeDaemon::bind(path, dir);
    let mut conn = daemon.accept().await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    serve_open(&mut conn, 1).await;
    assert_eq!(read_all(tcp).await, b"hello");
    loop {
        match next(&mut events).await {
            GatewayEvent::Placed { opened, .. } => break assert_eq!(opened.stream, StreamId(1)),
            GatewayEvent::Reconnecting { .. } => continue,
            other => panic!("expected placed, got {other:?}"),
        }
    }
}
