//! Control connections that say nothing and hold nothing are closed after
//! `daemon.idle_timeout`; those that hold a stream or a subscription are not.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use streamlet_proto::OpenRequest;

use crate::support::{error_code, Daemon, Raw, TWO_BY_64};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_that_hold_nothing_are_closed() {
    let daemon = Daemon::start(&TWO_BY_64.replace("[daemon]\n", "[daemon]\nidle_timeout = \"1s\"\n"));
    let started = Instant::now();
    // Silent, holding nothing: told why, then closed.
    let mut silent = Raw::json(&daemon.socket);
    // Holding a stream: kept, however silent.
    let mut client = daemon.client().await;
    let (mine, theirs) = UnixStream::pair().unwrap();
    client.open(OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
    // Subscribed: kept.
    let mut subscriber = Raw::json(&daemon.socket);
    subscriber.frame(br#"{"id":1,"body":{"subscribe":{}}}"#);
    assert!(subscriber.read().is_some());
    // Talking every half second: kept.
    let mut talker = Raw::json(&daemon.socket);
    let talking = std::thread::spawn(move || {
        for id in 2..10 {
            talker.frame(format!(r#"{{"id":{id},"body":{{"status":{{}}}}}}"#).as_bytes());
            assert!(talker.read().is_some_and(|r| r.pointer("/reply/body/status").is_some()), "the talker is kept");
            std::thread::sleep(Duration::from_millis(400));
        }
    });

    let reply = silent.read().expect("told why");
    assert_eq!(error_code(&reply), Some("idle"), "{reply}");
    assert_eq!(reply["reply"]["id"], 0);
    assert!(silent.closed());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "closed after {waited:?}");

    tokio::task::spawn_blocking(move || talking.join().unwrap()).await.unwrap();
    // Past three timeouts: the others are still served.
    client.status().await.expect("the connection holding a stream is kept");
    subscriber.frame(br#"{"id":9,"body":{"status":{}}}"#);
    assert!(subscriber.read().unwrap().pointer("/reply/body/status").is_some(), "the subscriber is kept");
    drop(mine);
}
