//! Bad input gets a typed error or a clean close, and hurts nobody else.

use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;

use streamlet_proto::OpenRequest;

use crate::support::{echo_once, error_code, Daemon, Raw, TWO_BY_64};

/// A stream opened before the abuse, checked after it.
struct Witness {
    conn: UnixStream,
}

impl Witness {
    async fn open(daemon: &Daemon) -> Witness {
        let mut client = daemon.client().await;
        let (conn, theirs) = UnixStream::pair().unwrap();
        let request = OpenRequest::new("echo");
        client.open(request, theirs.as_fd()).await.unwrap();
        Witness { conn }
    }

    async fn still_fine(&mut self, daemon: &Daemon) {
        self.still_fine_with(daemon, 1).await;
    }

    /// The witness echoes, and the daemon holds `streams` streams on two
    /// ready streamlets.
    async fn still_fine_with(&mut self, daemon: &Daemon, streams: u32) {
        echo_once(&mut self.conn, b"unaffected");
        let status = daemon.client().await.status().await.unwrap();
        assert_eq!(status.pools[0].ready, 2);
        assert_eq!(status.pools[0].streams, streams);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_four_gib_length_prefix_is_frame_too_large_and_closed() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut witness = Witness::open(&daemon).await;
    let mut raw = Raw::json(&daemon.socket);
    raw.sock.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("frame_too_large"), "{reply}");
    assert_eq!(reply["reply"]["id"], 0);
    assert!(raw.closed());
    // Before the handshake too, in the handshake's shape.
    let mut raw = crate::support::Raw::connect(&daemon.socket);
    raw.sock.write_all(&[0xff, 0xff, 0xff, 0xff]).unwrap();
    let reply = raw.read().unwrap();
    assert_eq!(reply["error"]["code"], "frame_too_large", "{reply}");
    assert!(raw.closed());
    witness.still_fine(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_bytes_get_an_error_and_a_close_in_both_encodings() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut witness = Witness::open(&daemon).await;
    let garbage: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();

    // Instead of a hello.
    let mut raw = Raw::connect(&daemon.socket);
    raw.frame(&garbage);
    let reply = raw.read().unwrap();
    assert_eq!(reply["error"]["code"], "bad_request", "{reply}");
    assert!(raw.closed());

    // After a JSON hello.
    let mut raw = Raw::json(&daemon.socket);
    raw.frame(&garbage);
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("bad_request"), "{reply}");
    assert!(raw.closed());

    // After a postcard hello: the error comes in postcard.
    let mut raw = Raw::connect(&daemon.socket);
    raw.frame(br#"{"version":1,"encoding":"postcard"}"#);
    assert!(raw.read().unwrap().get("welcome").is_some());
    raw.frame(&[0xff; 40]);
    let mut head = [0u8; 4];
    std::io::Read::read_exact(&mut raw.sock, &mut head).unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    std::io::Read::read_exact(&mut raw.sock, &mut body).unwrap();
    let reply: streamlet_proto::ServerMessage = streamlet_proto::Encoding::Postcard.decode(&body).unwrap();
    match reply {
        streamlet_proto::ServerMessage::Reply(r) => match r.body {
            streamlet_proto::ReplyBody::Error(e) => assert_eq!(e.code, streamlet_proto::ErrorCode::BadRequest),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(raw.closed());
    witness.still_fine(&daemon).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_frame_and_a_vanishing_client_are_closed_cleanly() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut witness = Witness::open(&daemon).await;

    let mut raw = Raw::json(&daemon.socket);
    raw.sock.write_all(&[0, 0, 0, 50, b'{', b'"']).unwrap();
    raw.sock.shutdown(std::net::Shutdown::Write).unwrap();
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("bad_request"), "{reply}");
    assert!(reply["reply"]["body"]["error"]["message"].as_str().unwrap().contains("closed inside a frame"));
    assert!(raw.closed());

    // Half an Open with its descriptor, then gone.
    let raw = Raw::json(&daemon.socket);
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let payload = br#"{"id":1,"body":{"open":{"pool":"echo"}}}"#;
    let mut bytes = streamlet_proto::frame::header(payload.len()).to_vec();
    bytes.extend_from_slice(&payload[..10]);
    streamlet_proto::fdpass::send_with_fds(raw.sock.as_fd(), &bytes, &[theirs.as_fd()]).unwrap();
    drop(raw);

    witness.still_fine(&daemon).await;

    // A whole Open, and gone before the reply: the stream is the daemon's
    // now, and it serves.
    let mut raw = Raw::json(&daemon.socket);
    raw.frame_with_fd(payload, theirs.as_fd());
    drop(raw);
    drop(theirs);
    daemon.wait_until(|s| s.pools[0].streams == 2);
    let mut mine = _mine;
    echo_once(&mut mine, b"orphaned but served");
    witness.still_fine_with(&daemon, 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_errors_are_typed_and_the_connection_goes_on() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut witness = Witness::open(&daemon).await;
    let mut raw = Raw::json(&daemon.socket);

    let (_a, b) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":1,"body":{"open":{"pool":"nope"}}}"#, b.as_fd());
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("unknown_pool"), "{reply}");
    assert!(reply.to_string().contains("nope") && reply.to_string().contains("echo"), "names both pools: {reply}");

    raw.frame(br#"{"id":2,"body":{"open":{"pool":"echo"}}}"#);
    assert_eq!(error_code(&raw.read().unwrap()), Some("missing_fd"));

    let (pipe_r, _pipe_w) = std::io::pipe().unwrap();
    raw.frame_with_fd(br#"{"id":3,"body":{"open":{"pool":"echo"}}}"#, pipe_r.as_fd());
    assert_eq!(error_code(&raw.read().unwrap()), Some("bad_fd"));

    let listener = std::os::unix::net::UnixListener::bind(daemon.dir.path().join("l.sock")).unwrap();
    raw.frame_with_fd(br#"{"id":4,"body":{"open":{"pool":"echo"}}}"#, listener.as_fd());
    assert_eq!(error_code(&raw.read().unwrap()), Some("bad_fd"), "a listening socket is no client connection");

    raw.frame(br#"{"id":5,"body":{"workers":{"pool":"nope"}}}"#);
    assert_eq!(error_code(&raw.read().unwrap()), Some("unknown_pool"));

    raw.frame(br#"{"id":6,"body":{"reboot":{}}}"#);
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("bad_request"), "an unknown request kind");
    assert_eq!(reply["reply"]["id"], 6);

    // An open with a malformed field is refused with its id and still takes
    // its descriptor: the next open must not get that one.
    let (_c, d) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":8,"body":{"open":{"pool":5}}}"#, d.as_fd());
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("bad_request"), "{reply}");
    assert_eq!(reply["reply"]["id"], 8);
    raw.frame(br#"{"id":9,"body":{"open":{"pool":"echo"}}}"#);
    assert_eq!(error_code(&raw.read().unwrap()), Some("missing_fd"));

    // Waits and TTLs from a client never overflow the daemon's clock.
    let (_e, f) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":10,"body":{"open":{"pool":"echo","wait_ms":18446744073709551615}}}"#, f.as_fd());
    assert_eq!(error_code(&raw.read().unwrap()), Some("bad_request"));
    raw.frame(br#"{"id":11,"body":{"lease":{"pool":"echo","rate":{"min":1,"max":2},"ttl_ms":18446744073709551615}}}"#);
    let reply = raw.read().unwrap();
    assert_eq!(reply["reply"]["id"], 11, "{reply}");

    raw.frame(br#"{"id":7,"body":{"status":{}}}"#);
    let reply = raw.read().unwrap();
    assert_eq!(reply["reply"]["id"], 7);
    assert!(reply["reply"]["body"]["status"].is_object(), "the connection still serves: {reply}");
    witness.still_fine(&daemon).await;
}

#[test]
fn a_handshake_with_an_unknown_version_or_encoding_is_refused_clearly() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut raw = Raw::connect(&daemon.socket);
    raw.frame(br#"{"version":42,"encoding":"json"}"#);
    let reply = raw.read().unwrap();
    assert_eq!(reply["error"]["code"], "unsupported_version", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("42"));
    assert!(raw.closed());

    let mut raw = Raw::connect(&daemon.socket);
    raw.frame(br#"{"version":1,"encoding":"xml"}"#);
    assert_eq!(raw.read().unwrap()["error"]["code"], "unsupported_encoding");
    assert!(raw.closed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_capacity_when_every_streamlet_is_full() {
    let (_daemon, mut client, _held) = crate::support::full_pool().await;
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let request = OpenRequest::new("echo");
    let err = client.open(request, theirs.as_fd()).await.unwrap_err();
    assert_eq!(err.code(), Some(streamlet_proto::ErrorCode::NoCapacity), "{err}");
    assert!(err.to_string().contains("full"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_open_is_refused_and_the_pool_keeps_serving() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let labels = (0..40).map(|i| (format!("k{i}"), "v".repeat(1500))).collect();
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let request = OpenRequest { tenant: Some("t".repeat(200)), labels, ..OpenRequest::new("echo") };
    let err = client.open(request, theirs.as_fd()).await.unwrap_err();
    assert_eq!(err.code(), Some(streamlet_proto::ErrorCode::BadRequest), "{err}");
    // A NUL could not go into a command's environment: refused up front.
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let labels = [("zone".to_owned(), "a\0b".to_owned())].into();
    let err = client.open(OpenRequest { labels, ..OpenRequest::new("echo") }, theirs.as_fd()).await.unwrap_err();
    assert!(err.to_string().contains("NUL"), "{err}");
    let status = client.status().await.unwrap();
    assert_eq!(status.pools[0].ready, 2, "no streamlet was taken out of service");
    let mut witness = Witness::open(&daemon).await;
    witness.still_fine(&daemon).await;
}

/// PROTOCOL.md's promise for an open's rate: `max` above 0, `min` at most
/// 2^40, `min` not above `max`; anything else is `bad_request` naming the
/// field, before the pool is even looked at. (A `max` of 0 was paced at
/// 1 byte per second, and a `min` over 2^40 admitted.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opens_rate_outside_its_bounds_is_a_bad_request_naming_the_field() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut witness = Witness::open(&daemon).await;
    let mut raw = Raw::json(&daemon.socket);
    let refused = |raw: &mut Raw, id: u64, rate: &str, pool: &str| {
        let (_mine, theirs) = UnixStream::pair().unwrap();
        let open = format!(r#"{{"id":{id},"body":{{"open":{{"pool":"{pool}","rate":{rate}}}}}}}"#);
        raw.frame_with_fd(open.as_bytes(), theirs.as_fd());
        let reply = raw.read().unwrap();
        assert_eq!(reply["reply"]["id"], id, "{reply}");
        assert_eq!(error_code(&reply), Some("bad_request"), "{rate}: {reply}");
        reply["reply"]["body"]["error"]["message"].as_str().unwrap().to_owned()
    };
    let message = refused(&mut raw, 1, r#"{"min":0,"max":0}"#, "echo");
    assert!(message.starts_with("rate.max is 0"), "{message}");
    let message = refused(&mut raw, 2, r#"{"min":1099511627777,"max":18446744073709551615}"#, "echo");
    assert!(message.starts_with("rate.min 1099511627777") && message.contains("1099511627776"), "{message}");
    let message = refused(&mut raw, 3, r#"{"min":6,"max":5}"#, "echo");
    assert!(message.starts_with("rate.min 6 is above rate.max 5"), "{message}");
    // The request's own fields first: a bad rate to a pool that does not
    // exist is still a bad rate.
    let message = refused(&mut raw, 4, r#"{"min":0,"max":0}"#, "nope");
    assert!(message.starts_with("rate.max"), "{message}");

    // At the bounds: opened, and paced at its max (no capacity to share).
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let open = br#"{"id":5,"body":{"open":{"pool":"echo","rate":{"min":1099511627776,"max":1099511627776}}}}"#;
    raw.frame_with_fd(open, theirs.as_fd());
    let reply = raw.read().unwrap();
    assert_eq!(reply["reply"]["body"]["opened"]["rate"], 1_099_511_627_776u64, "{reply}");
    let (_mine, theirs) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":6,"body":{"open":{"pool":"echo","rate":{"min":0,"max":1}}}}"#, theirs.as_fd());
    let reply = raw.read().unwrap();
    assert_eq!(reply["reply"]["body"]["opened"]["rate"], 1, "{reply}");
    witness.still_fine_with(&daemon, 3).await;
}

/// A descriptor sent with a frame that takes none is closed, and the next
/// open gets its own descriptor, not that one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_goes_only_to_the_frame_that_carried_it() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut raw = Raw::json(&daemon.socket);
    let (stray_peer, stray) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":1,"body":{"status":{}}}"#, stray.as_fd());
    drop(stray);
    assert!(raw.read().unwrap()["reply"]["body"]["status"].is_object());
    // An open without a descriptor must not take the stray one.
    raw.frame(br#"{"id":2,"body":{"open":{"pool":"echo"}}}"#);
    assert_eq!(error_code(&raw.read().unwrap()), Some("missing_fd"));
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    raw.frame_with_fd(br#"{"id":3,"body":{"open":{"pool":"echo"}}}"#, theirs.as_fd());
    drop(theirs);
    assert!(raw.read().unwrap()["reply"]["body"]["opened"].is_object());
    echo_once(&mut mine, b"my own connection");
    // The stray descriptor was closed by the daemon: its peer reads end of file.
    stray_peer.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    assert_eq!(std::io::Read::read(&mut &stray_peer, &mut [0u8; 1]).unwrap(), 0);
}

#[test]
fn too_many_queued_descriptors_close_the_connection() {
    let daemon = Daemon::start(TWO_BY_64);
    let raw = Raw::json(&daemon.socket);
    let keep: Vec<_> = (0..16).map(|_| UnixStream::pair().unwrap()).collect();
    let fds: Vec<_> = keep.iter().map(|(a, _)| a.as_fd()).collect();
    // One frame announced, its bytes dribbled out with 16 descriptors a time.
    std::io::Write::write_all(&mut &raw.sock, &[0, 0, 1, 0]).unwrap();
    for _ in 0..5 {
        if streamlet_proto::fdpass::send_with_fds(raw.sock.as_fd(), b"x", &fds).is_err() {
            break;
        }
    }
    let mut raw = raw;
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("bad_request"), "{reply}");
    assert!(reply.to_string().contains("descriptors"), "{reply}");
    assert!(raw.closed());
}
