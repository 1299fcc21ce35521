//! Streams through the real daemon: placement, echo, close.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use streamlet_proto::{EndReason, Event, OpenRequest};

use crate::support::{echo_once, Daemon, Raw, TWO_BY_64};

fn open_request(tenant: &str) -> OpenRequest {
    OpenRequest { tenant: Some(tenant.into()), ..OpenRequest::new("echo") }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_streams_echo_spread_over_both_streamlets_and_close() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let mut clients = Vec::new();
    let mut placed: HashMap<u64, usize> = HashMap::new();
    for i in 0..100 {
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let opened = client.open(open_request(&format!("t{}", i % 3)), theirs.as_fd()).await.unwrap();
        drop(theirs);
        *placed.entry(opened.worker.0).or_default() += 1;
        echo_once(&mut mine, format!("stream {i} says hello").as_bytes());
        clients.push((opened.stream, mine));
    }
    assert_eq!(placed.len(), 2, "both streamlets serve: {placed:?}");
    assert!(placed.values().all(|n| *n == 50), "least-connections spreads evenly: {placed:?}");

    let workers = client.workers(None).await.unwrap();
    assert_eq!(workers.len(), 2);
    assert_eq!(workers.iter().map(|w| w.streams).collect::<Vec<_>>(), vec![50, 50]);
    let streams = client.streams(None).await.unwrap();
    assert_eq!(streams.len(), 100);
    assert!(streams.iter().any(|s| s.tenant == "t2"));

    // Byte counts reach the stream table through the streamlets' stats.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let streams = client.streams(None).await.unwrap();
    let first = streams.iter().find(|s| s.id == clients[0].0).unwrap();
    let sent = "stream 0 says hello".len() as u64;
    assert_eq!((first.bytes_in, first.bytes_out), (sent, sent), "{first:?}");

    // The clients hang up; every stream ends and the table empties.
    let ids: Vec<_> = clients.iter().map(|(id, _)| *id).collect();
    drop(clients);
    let mut ended = Vec::new();
    while ended.len() < 100 {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
        let Event::StreamEnded(e) = event else { panic!("expected stream_ended, got {:?}", event) };
        assert_eq!(e.reason, EndReason::Completed, "{e:?}");
        ended.push(e.stream);
    }
    ended.sort();
    assert_eq!(ended, ids);
    assert!(client.streams(None).await.unwrap().is_empty());
    let workers = client.workers(None).await.unwrap();
    assert!(workers.iter().all(|w| w.streams == 0), "{workers:?}");
}

#[tokio::test]
async fn close_ends_a_stream_with_reason_closed_and_the_client_sees_eof() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(open_request("a"), theirs.as_fd()).await.unwrap();
    drop(theirs);
    echo_once(&mut mine, b"ping");
    client.close(opened.stream).await.unwrap();
    let event = client.next_event().await.unwrap();
    let Event::StreamEnded(ended) = event else { panic!("expected stream_ended, got {event:?}") };
    assert_eq!(ended.stream, opened.stream);
    assert_eq!(ended.reason, EndReason::Closed);
    assert_eq!((ended.bytes_in, ended.bytes_out, ended.bytes_exact), (4, 4, true), "the streamlet's totals at the end");
    let mut buf = [0u8; 8];
    assert_eq!(std::io::Read::read(&mut mine, &mut buf).unwrap(), 0, "the client reads end of file");
    let again = client.close(opened.stream).await.unwrap_err();
    assert_eq!(again.code(), Some(streamlet_proto::ErrorCode::UnknownStream));
}

/// A gateway in another language speaks JSON: the same daemon, the same streams.
#[test]
fn a_json_gateway_opens_and_is_told_of_the_end() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut raw = Raw::json(&daemon.socket);
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":7,"body":{"open":{"pool":"echo","tenant":"json"}}}"#, theirs.as_fd());
    drop(theirs);
    let reply = raw.read().unwrap();
    assert_eq!(reply["reply"]["id"], 7, "{reply}");
    let stream = reply["reply"]["body"]["opened"]["stream"].as_u64().expect("opened");
    echo_once(&mut mine, b"json works");
    mine.shutdown(std::net::Shutdown::Write).unwrap();
    let event = raw.read().unwrap();
    let ended = &event["event"]["stream_ended"];
    assert_eq!(ended["stream"], stream, "{event}");
    assert_eq!(ended["reason"], "completed");
    assert_eq!(ended["bytes_in"], 10);
    assert_eq!(ended["bytes_exact"], true);
}

/// The seed's layer-filling example through the daemon: three streamlets of
/// five streams each fill layer by layer, and the sixteenth stream is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layered_placement_fills_every_streamlet_before_any_gets_more() {
    let config = TWO_BY_64
        .replace("workers = { min = 2, max = 2 }", "workers = { min = 3, max = 3 }")
        .replace("streams_per_worker = 64", "streams_per_worker = 5")
        .replace("placement = \"least-connections\"", "placement = \"layered\"");
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let mut held = Vec::new();
    let mut order = Vec::new();
    for _ in 0..15 {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let opened = client.open(open_request("t"), theirs.as_fd()).await.unwrap();
        order.push(opened.worker.0);
        held.push(mine);
    }
    let mut first_layer = order[..3].to_vec();
    first_layer.sort();
    assert_eq!(first_layer.len(), 3);
    first_layer.dedup();
    assert_eq!(first_layer.len(), 3, "one stream on each streamlet first: {order:?}");
    for layer in order.chunks(3) {
        let mut l = layer.to_vec();
        l.sort();
        l.dedup();
        assert_eq!(l.len(), 3, "every layer spans the three streamlets: {order:?}");
    }
    let (_m, theirs) = UnixStream::pair().unwrap();
    let err = client.open(open_request("t"), theirs.as_fd()).await.unwrap_err();
    assert_eq!(err.code(), Some(streamlet_proto::ErrorCode::NoCapacity));
    let status = client.status().await.unwrap();
    assert_eq!(status.pools[0].placement, "layered");
}

/// An open that asks to wait is placed when a slot frees, or refused when
/// its time is up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_that_asks_to_wait_gets_the_next_free_slot_or_its_error_in_time() {
    let (daemon, mut client, mut held) = crate::support::full_pool().await;
    // Too short a wait: no_capacity, after the wait, not at once.
    let (_m, theirs) = UnixStream::pair().unwrap();
    let started = std::time::Instant::now();
    let request = OpenRequest { wait_ms: Some(200), ..open_request("t") };
    let err = client.open(request, theirs.as_fd()).await.unwrap_err();
    assert_eq!(err.code(), Some(streamlet_proto::ErrorCode::NoCapacity));
    assert!(started.elapsed() >= Duration::from_millis(150), "it waited: {:?}", started.elapsed());

    // A longer wait is served when a stream ends.
    let socket = daemon.socket.clone();
    let waiter = tokio::spawn(async move {
        let mut other = streamlet_client::Client::connect(&socket).await.unwrap();
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let request = OpenRequest { wait_ms: Some(10_000), ..open_request("t") };
        let opened = other.open(request, theirs.as_fd()).await.unwrap();
        drop(theirs);
        echo_once(&mut mine, b"worth the wait");
        opened
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "no room yet");
    drop(held.pop());
    let opened = tokio::time::timeout(Duration::from_secs(10), waiter).await.unwrap().unwrap();
    assert_eq!(opened.pool, "echo");
}

/// A waiting open whose gateway hangs up is dropped: its client connection is
/// closed and nothing is placed for it when room appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_open_of_a_gateway_that_hung_up_is_dropped() {
    let (daemon, mut client, mut held) = crate::support::full_pool().await;
    let mut raw = Raw::json(&daemon.socket);
    let (waiting_client, theirs) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":1,"body":{"open":{"pool":"echo","wait_ms":10000}}}"#, theirs.as_fd());
    drop(theirs);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(raw);
    // The daemon let go of the waiting client's connection.
    waiting_client.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(std::io::Read::read(&mut &waiting_client, &mut [0u8; 1]).unwrap(), 0);
    // Room appears; nothing takes it.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.streams(None).await.unwrap().len(), 1);
}

/// `streams` answers a page at a time, by id, with where to go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_are_listed_a_page_at_a_time() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let mut held = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let (mine, theirs) = UnixStream::pair().unwrap();
        ids.push(client.open(open_request("pager"), theirs.as_fd()).await.unwrap().stream.0);
        held.push(mine);
    }
    let mut raw = Raw::json(&daemon.socket);
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    for page in 1.. {
        let request = serde_json::json!({"id": page, "body": {"streams": {"after": after, "limit": 2}}});
        raw.frame(request.to_string().as_bytes());
        let reply = raw.read().unwrap();
        let list = &reply["reply"]["body"]["streams"];
        let streams = list["streams"].as_array().unwrap();
        assert!(streams.len() <= 2, "{reply}");
        seen.extend(streams.iter().map(|s| s["id"].as_u64().unwrap()));
        after = list["next"].clone();
        if after.is_null() {
            break;
        }
        assert_eq!(after.as_u64(), seen.last().copied(), "next is the last id listed");
        assert!(page < 5, "paging did not end: {seen:?}");
    }
    assert_eq!(seen, ids, "every stream once, by id");
    assert_eq!(client.streams(None).await.unwrap().len(), 5, "the client pages through them all");
}
