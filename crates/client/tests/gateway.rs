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
    start(Gateway::new(socket, "echo").peer_label(true)).await
}

async fn start(gateway: Gateway) -> (std::net::SocketAddr, UnboundedReceiver<GatewayEvent>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = unbounded_channel();
    tokio::spawn(gateway.tenant(Some("acme".into())).events(tx).run(listener));
    (addr, rx)
}

fn opened(stream: u64) -> ReplyBody {
    ReplyBody::Opened(Opened { stream: StreamId(stream), pool: "echo".into(), worker: WorkerId(1), rate: None })
}

/// `n` clients connected, one after the other, each with its local address.
async fn clients(addr: std::net::SocketAddr, n: usize) -> Vec<(TcpStream, std::net::SocketAddr)> {
    let mut all = Vec::new();
    for _ in 0..n {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let local = tcp.local_addr().unwrap();
        all.push((tcp, local));
    }
    all
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

/// The opens go out before any reply comes, and each reply settles its own
/// connection whatever the order the daemon answers in.
#[tokio::test]
async fn opens_are_pipelined_and_each_reply_settles_its_own_connection() {
    let daemon = FakeDaemon::start();
    let (addr, mut events) = start(Gateway::new(daemon.path.clone(), "echo")).await;
    let mut conn = daemon.accept().await;
    let clients = clients(addr, 3).await;
    let mut requests = Vec::new();
    for _ in 0..3 {
        // All three arrive with no reply sent yet.
        let (request, fd) = tokio::time::timeout(PATIENCE, conn.request()).await.unwrap().unwrap();
        let RequestBody::Open(open) = &request.body else { panic!("expected open, got {:?}", request.body) };
        assert!(open.labels.is_empty(), "no peer label unless asked: {:?}", open.labels);
        // Which client it is, as the daemon would see it.
        let peer = StdTcpStream::from(fd.expect("the connection")).peer_addr().unwrap();
        requests.push((request.id, peer));
    }
    // Answered last first, the middle one refused.
    conn.reply(requests[2].0, opened(30)).await;
    let refusal = ErrorBody::new(ErrorCode::NoCapacity, "full");
    conn.reply(requests[1].0, ReplyBody::Error(refusal)).await;
    conn.reply(requests[0].0, opened(10)).await;
    let mut settled = Vec::new();
    for _ in 0..3 {
        settled.push(match next(&mut events).await {
            GatewayEvent::Placed { peer, opened } => (peer, Some(opened.stream.0)),
            GatewayEvent::Refused { peer, error } => {
                assert_eq!(error.code, ErrorCode::NoCapacity);
                (peer, None)
            }
            other => panic!("expected placed or refused, got {other:?}"),
        });
    }
    let locals: Vec<_> = clients.iter().map(|(_, local)| *local).collect();
    assert_eq!(requests.iter().map(|(_, peer)| *peer).collect::<Vec<_>>(), locals, "sent in accept order");
    assert_eq!(settled, [(locals[2], Some(30)), (locals[1], None), (locals[0], Some(10))]);
}

/// Past its bound, a connection waits in the listener's queue until a reply
/// makes room.
#[tokio::test]
async fn opens_in_flight_are_bounded() {
    let daemon = FakeDaemon::start();
    let (addr, mut events) = start(Gateway::new(daemon.path.clone(), "echo").in_flight(2)).await;
    let mut conn = daemon.accept().await;
    let _clients = clients(addr, 3).await;
    let (first, _) = conn.request().await.unwrap();
    let (second, _) = conn.request().await.unwrap();
    let third = tokio::time::timeout(Duration::from_millis(300), conn.request()).await;
    assert!(third.is_err(), "a third open went out with two in flight");
    conn.reply(first.id, opened(1)).await;
    let (third, fd) = tokio::time::timeout(PATIENCE, conn.request()).await.unwrap().unwrap();
    assert!(fd.is_some() && third.id > second.id, "the waiting connection goes once there is room");
    assert!(matches!(next(&mut events).await, GatewayEvent::Placed { .. }));
}

/// An open whose reply does not come in time takes the daemon connection
/// down with it: every open in flight is refused, and the gateway connects
/// again.
#[tokio::test]
async fn an_open_unanswered_in_time_gives_up_on_the_daemon_connection() {
    let daemon = FakeDaemon::start();
    let gateway = Gateway::new(daemon.path.clone(), "echo").open_timeout(Duration::from_millis(300));
    let (addr, mut events) = start(gateway).await;
    let mut conn = daemon.accept().await;
    let clients = clients(addr, 2).await;
    conn.request().await.unwrap();
    conn.request().await.unwrap();
    let mut refused = Vec::new();
    loop {
        match next(&mut events).await {
            GatewayEvent::Refused { peer, error } => {
                assert_eq!(error.code, ErrorCode::Internal);
                assert!(error.message.contains("lost before its reply"), "{}", error.message);
                refused.push(peer);
            }
            GatewayEvent::Reconnecting { error } => {
                assert!(error.contains("time"), "{error}");
                break;
            }
            other => panic!("expected refusals, got {other:?}"),
        }
    }
    assert_eq!(refused, clients.iter().map(|(_, local)| *local).collect::<Vec<_>>());
    let _again = tokio::time::timeout(PATIENCE, daemon.accept()).await.expect("it connects again");
}
