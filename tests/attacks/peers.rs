//! Hostile peers of the control socket. Whatever one sends, attaches or
//! leaves unread, the daemon's other clients are answered within
//! [`PROBE_BOUND`], its memory stays bounded, and it serves on.

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd};
use std::time::Duration;

use streamlet_proto::fdpass::send_with_fds;

use crate::support::{error_code, Daemon, Probe, Raw, PROBE_BOUND, TWO_BY_64};

/// A TCP connection whose last close waits out a linger of `secs`: lingering
/// on, and a send queue its peer (kept open, never reading) does not drain.
struct Lingering {
    client: TcpStream,
    _server: TcpStream,
}

fn lingering(secs: i32) -> Lingering {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    client.set_nonblocking(true).unwrap();
    let chunk = vec![0u8; 65536];
    while (&client).write(&chunk).is_ok() {}
    let on = libc::linger { l_onoff: 1, l_linger: secs };
    // SAFETY: setsockopt with a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&on as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    Lingering { client, _server: server }
}

/// Sends `frame` with `l`'s client attached to its first byte, and closes
/// the test's own copy before the rest of the frame goes: the daemon's copy
/// (received, or queued in its socket) is then the last. Returns the peer
/// end, to keep open for as long as the close should block.
fn hand_over(sock: &std::os::unix::net::UnixStream, frame: &[u8], l: Lingering) -> TcpStream {
    assert_eq!(send_with_fds(sock.as_fd(), &frame[..1], &[l.client.as_fd()]).unwrap(), 1);
    drop(l.client);
    (&*sock).write_all(&frame[1..]).unwrap();
    l._server
}

fn json_frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = streamlet_proto::frame::header(payload.len()).to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// Descriptors whose last close would block for seconds, handed over every
/// way that does not make a stream: none of them stalls the daemon.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lingering_descriptors_never_stall_the_daemon() {
    let _one = crate::one_at_a_time().await;
    let daemon = Daemon::start(TWO_BY_64);
    let probe = Probe::start(&daemon.socket);
    let mut held = Vec::new();

    // With an open the daemon refuses.
    let mut raw = Raw::json(&daemon.socket);
    let open = json_frame(br#"{"id":1,"body":{"open":{"pool":"nope"}}}"#);
    held.push(hand_over(&raw.sock, &open, lingering(10)));
    let reply = raw.read().unwrap();
    assert_eq!(error_code(&reply), Some("unknown_pool"), "{reply}");

    // As a stray descriptor on a `status` (closed when the next frame is read).
    held.push(hand_over(&raw.sock, &json_frame(br#"{"id":2,"body":{"status":{}}}"#), lingering(10)));
    assert!(raw.read().unwrap().pointer("/reply/body/status").is_some());
    raw.frame(br#"{"id":3,"body":{"status":{}}}"#);
    assert!(raw.read().is_some());

    // Before the handshake: the socket itself refuses any (SO_PASSRIGHTS).
    let early = Raw::connect(&daemon.socket);
    let (pipe, _) = std::io::pipe().unwrap();
    let refused = send_with_fds(early.sock.as_fd(), &[0], &[pipe.as_fd()]).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EPERM), "{refused}");

    // Still queued when the daemon closes the connection for garbage
    // (closing a socket closes what is queued in it).
    let mut doomed = Raw::json(&daemon.socket);
    held.push(hand_over(&doomed.sock, &[0, 0, 0, 3, 0xff, 0xfe, 0xfd], lingering(10)));
    assert_eq!(error_code(&doomed.read().unwrap()), Some("bad_request"));
    assert!(doomed.closed());

    // Many, one after another.
    for id in 10..30 {
        let open = json_frame(format!(r#"{{"id":{id},"body":{{"open":{{"pool":"nope"}}}}}}"#).as_bytes());
        held.push(hand_over(&raw.sock, &open, lingering(10)));
        assert!(raw.read().is_some());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
    drop(held);
}

/// A Unix socket listening with a backlog of 0 that never accepts: one
/// connection fills its backlog.
fn unix_listener_backlog_0(path: &std::path::Path) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    // SAFETY: socket, bind and listen on a descriptor we own, with a filled
    // sockaddr_un of its size.
    unsafe {
        let fd =
            std::os::fd::OwnedFd::from_raw_fd(libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0));
        let mut sun: libc::sockaddr_un = std::mem::zeroed();
        sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
        for (dst, src) in sun.sun_path.iter_mut().zip(path.as_os_str().as_encoded_bytes()) {
            *dst = *src as libc::c_char;
        }
        let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
        assert_eq!(libc::bind(fd.as_raw_fd(), (&sun as *const libc::sockaddr_un).cast(), len), 0);
        assert_eq!(libc::listen(fd.as_raw_fd(), 0), 0);
        fd
    }
}

/// A relay upstream whose backlog is full and who never accepts: the open
/// stalls no one, holds nothing while it waits, is refused as
/// `upstream_unavailable` after about a second, and goes through once the
/// upstream takes connections again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_upstream_that_never_accepts_stalls_no_one() {
    let _one = crate::one_at_a_time().await;
    use std::os::unix::net::UnixStream;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upstream.sock");
    let listener = unix_listener_backlog_0(&path);
    let mut filler = Vec::new();
    // Fill the backlog (non-blocking: a blocking connect would wait).
    for _ in 0..4 {
        // SAFETY: socket(2), then connect with a filled sockaddr_un.
        unsafe {
            use std::os::fd::FromRawFd;
            let fd = std::os::fd::OwnedFd::from_raw_fd(libc::socket(
                libc::AF_UNIX,
                libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            ));
            let mut sun: libc::sockaddr_un = std::mem::zeroed();
            sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (dst, src) in sun.sun_path.iter_mut().zip(path.as_os_str().as_encoded_bytes()) {
                *dst = *src as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            libc::connect(fd.as_raw_fd(), (&sun as *const libc::sockaddr_un).cast(), len);
            filler.push(fd);
        }
    }
    let config = format!(
        "[daemon]\nshutdown_timeout = \"2s\"\n\n[pools.relay]\nhandler = {{ kind = \"relay\", upstream = \"unix:{}\" }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n",
        path.display()
    );
    let daemon = Daemon::start(&config);
    let probe = Probe::start(&daemon.socket);
    let mut client = daemon.client().await;
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let started = std::time::Instant::now();
    let refused = client.open(streamlet_proto::OpenRequest::new("relay"), theirs.as_fd()).await.unwrap_err();
    let waited = started.elapsed();
    assert!(refused.to_string().contains("upstream_unavailable"), "{refused}");
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(5), "refused after {waited:?}");
    let status = client.status().await.unwrap();
    assert_eq!(status.pools[0].streams, 0, "nothing held for it");
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");

    // The upstream accepts again, after the open began to wait: it goes through.
    let opening = {
        let socket = daemon.socket.clone();
        tokio::spawn(async move {
            let mut client = streamlet_client::Client::connect(&socket).await.unwrap();
            let (mine, theirs) = UnixStream::pair().unwrap();
            let result = client.open(streamlet_proto::OpenRequest::new("relay"), theirs.as_fd()).await;
            (result, mine)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let accepting = std::thread::spawn(move || {
        let listener = std::os::unix::net::UnixListener::from(listener);
        listener.set_nonblocking(false).unwrap();
        let mut held = Vec::new();
        for _ in 0..6 {
            match listener.accept() {
                Ok((conn, _)) => held.push(conn),
                Err(_) => break,
            }
        }
        held
    });
    let (result, _mine) = tokio::time::timeout(Duration::from_secs(5), opening).await.unwrap().unwrap();
    result.expect("opened once the upstream took the connection");
    drop(filler);
    drop(accepting);
}

/// Pipelines `request` on every connection of `hogs` (never reading a
/// reply) until no socket takes more for a second: the daemon stopped
/// reading them all. Then waits until the daemon's size settles.
async fn flood(daemon: &Daemon, hogs: &mut [Raw], request: &[u8]) {
    let burst: Vec<u8> = request.iter().copied().cycle().take(request.len() * 20_000).collect();
    let mut sent = vec![0usize; hogs.len()];
    for raw in hogs.iter() {
        raw.sock.set_nonblocking(true).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut idle_since = std::time::Instant::now();
    while std::time::Instant::now() < deadline && idle_since.elapsed() < Duration::from_secs(1) {
        let mut progress = false;
        for (raw, sent) in hogs.iter().zip(&mut sent) {
            while *sent < burst.len() {
                match (&raw.sock).write(&burst[*sent..]) {
                    Ok(n) if n > 0 => {
                        *sent += n;
                        progress = true;
                    }
                    _ => break,
                }
            }
        }
        if progress {
            idle_since = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut last, mut steady) = (0, 0);
    for _ in 0..120 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = crate::support::rss(daemon.pid());
        steady = if now.abs_diff(last) < 1 << 20 { steady + 1 } else { 0 };
        if steady == 4 {
            break;
        }
        last = now;
    }
}

/// A hundred clients that pipeline requests and never read a reply. As
/// `nobody` (a gateway): the others are answered within the bound all along
/// (listings share a part of the thread), and the daemon grows by at most
/// what one uid's connections may leave unread together. As
/// root (an admin, whose listings are not held back): the daemon grows by at
/// most what all connections together may leave unread, and the slowest
/// readers are closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_never_read_do_not_grow_the_daemon() {
    let _one = crate::one_at_a_time().await;
    if !crate::support::privileged() {
        return;
    }
    let config = TWO_BY_64.replace("min = 2, max = 2", "min = 4, max = 4").replace("= 64", "= 500");
    let daemon = crate::support::daemon_for_nobody(&config, "gateway");
    // 2,000 streams: each `streams` reply is large (about 450 KB).
    let mut client = daemon.client().await;
    let mut held = Vec::new();
    for _ in 0..2_000 {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        client.open(streamlet_proto::OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
        held.push(mine);
    }
    let request = json_frame(br#"{"id":1,"body":{"streams":{}}}"#);
    let before = crate::support::rss(daemon.pid());

    let probe = Probe::start(&daemon.socket);
    let nobody = crate::support::NOBODY;
    let mut hogs: Vec<Raw> = (0..100).map(|_| Raw::json_as(&daemon.socket, nobody, nobody)).collect();
    flood(&daemon, &mut hogs, &request).await;
    let slowest = probe.finish();
    let grown = crate::support::rss(daemon.pid()).saturating_sub(before);
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
    // One uid's connections together hold at most 16 MiB unread (UID_BUDGET);
    // the rest is the allocator's.
    assert!(grown < 32 << 20, "the daemon grew by {} MiB", grown >> 20);
    eprintln!(
        "100 gateways that never read: the slowest other answer took {slowest:?}; the daemon grew by {} MiB",
        grown >> 20
    );
    drop(hogs);

    let before = crate::support::rss(daemon.pid());
    let mut hogs: Vec<Raw> = (0..100).map(|_| Raw::json(&daemon.socket)).collect();
    flood(&daemon, &mut hogs, &request).await;
    // Until the total is reached and the slowest are closed (then a moment
    // for the daemon to settle).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !hogs.iter().any(|raw| peer_closed(&raw.sock)) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = crate::support::rss(daemon.pid()).saturating_sub(before);
    let closed = hogs.iter().filter(|raw| peer_closed(&raw.sock)).count();
    eprintln!("100 admins that never read: the daemon grew by {} MiB; {closed} were closed", grown >> 20);
    assert!(grown < 128 << 20, "the daemon grew by {} MiB", grown >> 20);
    assert!(closed > 0, "past the total, the slowest readers are closed");
    assert!(daemon.client().await.status().await.is_ok());
    drop(held);
}

/// Whether the daemon shut its side of `sock` (without reading it).
fn peer_closed(sock: &std::os::unix::net::UnixStream) -> bool {
    let mut pollfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: poll on one valid descriptor, no wait.
    let n = unsafe { libc::poll(&mut pollfd, 1, 0) };
    n > 0 && pollfd.revents & (libc::POLLRDHUP | libc::POLLHUP) != 0
}

/// A uid no account has, in nobody's group: it reaches the socket through
/// the group.
const STRANGER: u32 = 65533;

/// Idle connections, handshaken or half-open, by as many as a uid may
/// hold: the operator (root) still connects and is answered at once, and so
/// does another uid; the one past the uid's share is told why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_lock_no_one_out() {
    let _one = crate::one_at_a_time().await;
    if !crate::support::privileged() {
        return;
    }
    crate::support::raise_nofile();
    let daemon = crate::support::daemon_for_nobody(TWO_BY_64, "gateway");
    let nobody = crate::support::NOBODY;
    let probe = Probe::start_fresh(&daemon.socket);
    // Handshaken, then idle.
    let mut idle: Vec<Raw> = (0..128).map(|_| Raw::json_as(&daemon.socket, nobody, nobody)).collect();
    // Half-open: never a hello.
    let mut half: Vec<std::os::unix::net::UnixStream> =
        (0..128).map(|_| crate::support::connect_as(&daemon.socket, nobody, nobody).unwrap()).collect();
    // One more is past the uid's share: refused, and told why.
    let mut refused = Raw { sock: crate::support::connect_as(&daemon.socket, nobody, nobody).unwrap() };
    refused.sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let reply = refused.read().expect("told why");
    assert_eq!(reply["error"]["code"], "overloaded", "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains(&format!("uid {nobody}")), "{reply}");
    // Another uid still gets in, and so does root.
    let mut other = Raw::json_as(&daemon.socket, STRANGER, nobody);
    other.frame(br#"{"id":1,"body":{"status":{}}}"#);
    assert!(other.read().unwrap().pointer("/reply/body/status").is_some());
    let started = std::time::Instant::now();
    let ctl = std::process::Command::new(crate::support::STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("status")
        .output()
        .unwrap();
    assert!(ctl.status.success(), "{}", String::from_utf8_lossy(&ctl.stderr));
    assert!(started.elapsed() < Duration::from_secs(2), "streamletctl took {:?}", started.elapsed());
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "a fresh connection's status took {slowest:?}");
    idle.clear();
    half.clear();
}

/// What every hand-written Python streamlet below starts with: the channel
/// on fd 3, its `Init` read, `Ready` sent, and heartbeats from a thread.
const PREAMBLE: &str = r#"#!/usr/bin/python3
import os, socket, threading, time
s = socket.socket(fileno=3)
s.recv(65536)
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
s.send(b"\x00" + varint(os.getpid()))
def heartbeats():
    while True:
        s.send(b'\x03')
        time.sleep(0.2)
threading.Thread(target=heartbeats, daemon=True).start()
"#;

/// A streamlet program: [`PREAMBLE`], then what it does.
fn streamlet(body: &str) -> String {
    format!("{PREAMBLE}{body}")
}

/// A streamlet (a Python program speaking the channel by hand) that reports
/// the end of a stream it never had, 100,000 times, heartbeating meanwhile.
const LIAR: &str = r#"lie = b'\x01' + varint(999) + b'\x00\x01\x01'
for _ in range(100000):
    s.send(lie)
time.sleep(60)
"#;

/// Warnings a peer or a streamlet can cause at will (refused requests, a
/// streamlet's lies) are logged a few times each, then counted: one line
/// sums up the rest when the window ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_refusals_and_lies_is_counted_not_logged() {
    let _one = crate::one_at_a_time().await;
    if !crate::support::privileged() {
        return;
    }
    let scripts = tempfile::Builder::new().prefix("streamlet-attack-").tempdir_in("/run").unwrap();
    std::fs::set_permissions(scripts.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let liar = scripts.path().join("liar");
    std::fs::write(&liar, streamlet(LIAR)).unwrap();
    std::fs::set_permissions(&liar, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let nobody = crate::support::NOBODY;
    let config = format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"1s\"\n\n[pools.liar]\nhandler = {{ kind = \"echo\" }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n\n\
         [access]\nsocket_group = {nobody}\ndefault = \"none\"\n",
        liar.display()
    );
    let (daemon, log) = crate::support::start_logged(&config, "info");
    std::fs::set_permissions(daemon.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let probe = Probe::start(&daemon.socket);

    // 20,000 requests its role may not make, read as they are answered.
    let mut raw = Raw::json_as(&daemon.socket, nobody, nobody);
    let reader = raw.sock.try_clone().unwrap();
    let drain = std::thread::spawn(move || {
        let mut reader = Raw { sock: reader };
        (0..20_000).filter(|_| reader.read().is_some_and(|r| error_code(&r) == Some("unauthorized"))).count()
    });
    let request = json_frame(br#"{"id":1,"body":{"status":{}}}"#);
    for _ in 0..20 {
        raw.sock.write_all(&request.repeat(1_000)).unwrap();
    }
    assert_eq!(tokio::task::spawn_blocking(move || drain.join().unwrap()).await.unwrap(), 20_000);
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");

    // The streamlet's 100,000 lies, and the refusals: a few lines each.
    let text = || std::fs::read_to_string(&log).unwrap();
    let lines = |what: &str| text().lines().filter(|l| l.contains(what)).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !text().contains("more ended_unknown warnings") || !text().contains("more unauthorized warnings") {
        assert!(std::time::Instant::now() < deadline, "no summary line within 20 s:\n{}", text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(lines("unauthorized request refused") <= 5, "{}", text());
    assert!(lines("which it does not serve") <= 5, "{}", text());
    let summary = text().lines().find(|l| l.contains("more unauthorized warnings")).unwrap().to_owned();
    assert!(summary.contains(&format!("uid {nobody}")), "{summary}");
    assert!(
        std::fs::metadata(&log).unwrap().len() < 64 << 10,
        "the log grew to {} bytes",
        std::fs::metadata(&log).unwrap().len()
    );
    let workers = daemon.client().await.workers(None).await.unwrap();
    assert_eq!(workers[0].restarts, 0, "lies about streams it does not serve are ignored, not punished");
}

/// A scrape of `/metrics` on `socket` (a fresh connection): its status line
/// and how long it took.
fn scrape(socket: &std::path::Path) -> (String, Duration) {
    use std::io::Read;
    let started = std::time::Instant::now();
    let mut conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: streamletd\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = conn.read_to_string(&mut response);
    (response.lines().next().unwrap_or_default().to_owned(), started.elapsed())
}

/// Idle connections to the metrics listener, more than it serves at once,
/// and requests that try to bring descriptors along (the socket refuses
/// them): every scrape gets through, at once, and the control socket's
/// clients do not notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_serves_a_scraper_whatever_else_connects() {
    let _one = crate::one_at_a_time().await;
    let scratch = tempfile::tempdir().unwrap();
    let metrics = scratch.path().join("metrics.sock");
    let config = format!("{TWO_BY_64}\n[metrics]\nlisten = {:?}\n", format!("unix:{}", metrics.display()));
    let daemon = Daemon::start(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !metrics.exists() {
        assert!(std::time::Instant::now() < deadline, "no metrics socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let probe = Probe::start(&daemon.socket);
    let mut idle = Vec::new();
    for round in 0..5 {
        // Sixty-four connections that never send a request.
        for _ in 0..64 {
            idle.push(std::os::unix::net::UnixStream::connect(&metrics).unwrap());
        }
        // A request with a lingering descriptor attached: the socket refuses
        // the descriptor (it takes none), the request is sent without.
        let conn = std::os::unix::net::UnixStream::connect(&metrics).unwrap();
        let (pipe, _) = std::io::pipe().unwrap();
        let refused = send_with_fds(conn.as_fd(), b"G", &[pipe.as_fd()]).unwrap_err();
        assert_eq!(refused.raw_os_error(), Some(libc::EPERM), "{refused}");
        (&conn).write_all(b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
        idle.push(conn);
        let (status, took) = scrape(&metrics);
        assert_eq!(status, "HTTP/1.1 200 OK", "round {round}");
        assert!(took < Duration::from_secs(1), "round {round}: the scrape took {took:?}");
    }
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
    drop(idle);
}

/// A daemon whose descriptor limit is low (300, hard and soft): opens past
/// what it allows are refused as `overloaded`, one by one, before the
/// kernel would drop a descriptor; the gateway's connection stays, a new
/// connection is still accepted, and streams fit again once some end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_refuses_opens_not_connections() {
    use std::os::unix::process::CommandExt;
    let _one = crate::one_at_a_time().await;
    crate::support::raise_nofile();
    let config = TWO_BY_64.replace("= 64", "= 500");
    let (dir, socket) = {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("streamletd.sock");
        (dir, socket)
    };
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, &config).unwrap();
    let log = dir.path().join("streamletd.log");
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"export STREAMLET_LOG=info; exec "$0" "$@" 2>"$LOG_FILE""#)
        .arg(crate::support::STREAMLETD)
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(&socket)
        .env("LOG_FILE", &log);
    // SAFETY: setrlimit in the child before exec: a system call only.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 300, rlim_max: 300 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let daemon = Daemon::spawn(cmd, dir, socket);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("the descriptor limit (RLIMIT_NOFILE 300) allows about"), "{said}");

    let mut gateway = daemon.client().await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..400 {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        match gateway.open(streamlet_proto::OpenRequest::new("echo"), theirs.as_fd()).await {
            Ok(_) => held.push(mine),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains("overloaded") && e.contains("descriptors"), "{e}");
                refused += 1;
            }
        }
    }
    assert!(held.len() >= 64, "only {} streams fit", held.len());
    eprintln!("under a limit of 300 descriptors: {} streams opened, {refused} refused", held.len());
    assert!(refused > 0, "all 400 fit under a limit of 300?");
    // The gateway's connection stays, a new one is accepted.
    gateway.status().await.expect("the gateway's connection is still served");
    daemon.client().await.status().await.expect("a new connection is accepted");
    // Some end: streams fit again.
    let ended = held.len() / 2;
    held.truncate(held.len() - ended);
    daemon.wait_until(|s| s.pools[0].streams as usize == held.len());
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    gateway.open(streamlet_proto::OpenRequest::new("echo"), theirs.as_fd()).await.expect("room again");
    held.push(mine);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(!said.contains("MSG_CTRUNC") && !said.contains("more than 16"), "{said}");
    assert!(!said.contains("accept failed"), "{said}");
}

/// A streamlet (Python, speaking the channel by hand) that reports each
/// stream ended (the daemon closes its copy), keeps the descriptor, and a
/// moment later puts it in the queue of a Unix socket of its own and sends
/// that socket to the daemon: the last copy of the stream's connection is
/// then inside a descriptor the daemon must close.
const SENDS_DESCRIPTORS_BACK: &str = r#"#!/usr/bin/python3
import array, os, socket, time
s = socket.socket(fileno=3)
s.recv(65536)
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
ready = b"\x00" + varint(os.getpid())
s.send(ready)
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(4))
    if msg and msg[0] == 1 and anc:
        fd = array.array('i', anc[0][2][:4])[0]
        stream, shift, i = 0, 0, 1
        while True:
            b = msg[i]
            stream |= (b & 0x7f) << shift
            i += 1
            shift += 7
            if not b & 0x80:
                break
        s.send(b'\x01' + varint(stream) + b'\x00\x00\x00')
        time.sleep(0.3)
        x, y = socket.socketpair()
        x.sendmsg([b'x'], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [fd]))])
        os.close(fd)
        x.close()
        s.sendmsg([ready], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [y.fileno()]))])
        y.close()
        time.sleep(60)
"#;

/// A lingering client connection that a streamlet hands back to the daemon,
/// queued inside a socket of its own: closing that socket closes it, off the
/// daemon's thread. (So is the streamlet's channel itself, when the
/// streamlet is gone, for whatever it left queued there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_handed_back_by_a_streamlet_stalls_no_one() {
    let _one = crate::one_at_a_time().await;
    let scripts = tempfile::Builder::new().prefix("streamlet-attack-").tempdir_in("/run").unwrap();
    std::fs::set_permissions(scripts.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let worker = scripts.path().join("sends-back");
    std::fs::write(&worker, SENDS_DESCRIPTORS_BACK).unwrap();
    std::fs::set_permissions(&worker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"1s\"\n\n[pools.back]\nhandler = {{ kind = \"echo\" }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n",
        worker.display()
    );
    let daemon = Daemon::start(&config);
    let probe = Probe::start(&daemon.socket);
    let mut raw = Raw::json(&daemon.socket);
    let l = lingering(10);
    raw.frame_with_fd(br#"{"id":1,"body":{"open":{"pool":"back"}}}"#, l.client.as_fd());
    assert!(raw.read().unwrap().pointer("/reply/body/opened").is_some());
    // The stream ends at once (the daemon's copy goes, lingering turned off
    // on the way); the gateway, colluding, turns it on again and lets go of
    // its own copy: the streamlet's is the last.
    daemon.wait_until(|s| s.pools[0].streams == 0);
    let on = libc::linger { l_onoff: 1, l_linger: 10 };
    // SAFETY: setsockopt with a linger struct of the size given.
    let rc = unsafe {
        libc::setsockopt(
            l.client.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&on as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let Lingering { client, _server } = l;
    drop(client);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut client = daemon.client().await;
    while client.workers(None).await.unwrap().iter().all(|w| w.restarts == 0) {
        assert!(std::time::Instant::now() < deadline, "the streamlet was not killed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
}

/// A streamlet that writes to its stderr as fast as it can.
const CHATTERBOX: &str = r#"line = b"x" * 99 + b"\n"
while True:
    os.write(2, line * 40)
"#;

/// The same, without a single newline.
const RAMBLER: &str = r#"chunk = b"x" * 65536
while True:
    os.write(2, chunk)
"#;

/// The daemon's CPU time so far (user and system), from /proc.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap().split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A streamlet that floods its stderr, in lines or in one endless line,
/// costs the daemon a few lines a second and almost none of its thread:
/// past its lines or its bytes, the daemon stops reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamlet_flooding_its_stderr_costs_the_daemon_little() {
    let _one = crate::one_at_a_time().await;
    for script in [CHATTERBOX, RAMBLER] {
        stderr_flood(&streamlet(script)).await;
    }
}

async fn stderr_flood(script: &str) {
    let scripts = tempfile::Builder::new().prefix("streamlet-attack-").tempdir_in("/run").unwrap();
    std::fs::set_permissions(scripts.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let worker = scripts.path().join("chatterbox");
    std::fs::write(&worker, script).unwrap();
    std::fs::set_permissions(&worker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"1s\"\n\n[pools.chatty]\nhandler = {{ kind = \"echo\" }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n",
        worker.display()
    );
    let (daemon, log) = crate::support::start_logged(&config, "warn");
    let probe = Probe::start(&daemon.socket);
    let before = cpu_time(daemon.pid());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = cpu_time(daemon.pid()) - before;
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
    assert!(used < Duration::from_millis(600), "the daemon spent {used:?} of 3 s");
    let lines = std::fs::read_to_string(&log).unwrap().lines().filter(|l| l.contains("streamlet: xxx")).count();
    assert!(lines <= 4 * 20, "{lines} lines logged in about 3 s");
    assert_eq!(daemon.client().await.workers(None).await.unwrap()[0].restarts, 0, "not punished for it");
}

/// Peers that may not open streams cannot hand the daemon a descriptor at
/// all: their connections refuse them (SO_PASSRIGHTS), before the handshake
/// too; a gateway's connection takes them once it has said hello.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_gateways_can_hand_over_descriptors() {
    let _one = crate::one_at_a_time().await;
    if !crate::support::privileged() {
        return;
    }
    let nobody = crate::support::NOBODY;
    let config = format!(
        "{TWO_BY_64}\n[access]\nsocket_group = {nobody}\ndefault = \"none\"\nviewer = {{ uids = [{STRANGER}] }}\n"
    );
    let daemon = Daemon::start(&config);
    std::fs::set_permissions(daemon.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let (_keep, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let try_send = |raw: &Raw| send_with_fds(raw.sock.as_fd(), &[0], &[theirs.as_fd()]).map_err(|e| e.raw_os_error());
    // Role none, after its hello; a viewer likewise.
    for uid in [nobody, STRANGER] {
        let raw = Raw::json_as(&daemon.socket, uid, nobody);
        assert_eq!(try_send(&raw), Err(Some(libc::EPERM)), "uid {uid}");
    }
    // Root, a gateway (an admin), before and after its hello.
    let mut root = Raw::connect(&daemon.socket);
    assert_eq!(try_send(&root), Err(Some(libc::EPERM)), "before the hello");
    root.frame(br#"{"version":1,"encoding":"json"}"#);
    assert!(root.read().unwrap().get("welcome").is_some());
    root.frame(br#"{"id":1,"body":{"status":{}}}"#);
    assert!(root.read().is_some());
    let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    root.frame_with_fd(br#"{"id":2,"body":{"open":{"pool":"echo"}}}"#, theirs.as_fd());
    assert!(root.read().unwrap().pointer("/reply/body/opened").is_some(), "a gateway's open takes its descriptor");
    drop(mine);
}

/// A gateway that leaves its replies unread (the daemon's writer waits on
/// it), sends garbage (the daemon gives up on the connection, and on its
/// writer after a second) and then a socket with a lingering connection
/// queued inside: the socket's last close, whoever makes it, happens on a
/// closer thread, which empties it first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_given_up_on_stalls_no_one_with_what_it_left_queued() {
    let _one = crate::one_at_a_time().await;
    let daemon = Daemon::start(TWO_BY_64);
    let probe = Probe::start(&daemon.socket);
    let mut held = Vec::new();
    for _ in 0..3 {
        let l = lingering(10);
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(send_with_fds(x.as_fd(), b"z", &[l.client.as_fd()]).unwrap(), 1);
        let Lingering { client, _server } = l;
        drop((client, x));
        held.push(_server);
        let raw = Raw::json(&daemon.socket);
        let pipeline: Vec<u8> = (1..=2_000)
            .flat_map(|i| json_frame(format!(r#"{{"id":{i},"body":{{"status":{{}}}}}}"#).as_bytes()))
            .collect();
        (&raw.sock).write_all(&pipeline).unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        (&raw.sock).write_all(&[0, 0, 0, 3, 0xff, 0xfe, 0xfd]).unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        send_with_fds(raw.sock.as_fd(), b"q", &[y.as_fd()]).unwrap();
        drop(y);
        // Others keep the daemon busy while it gives up on the writer (after
        // a second), so the task it aborts is dropped late.
        let busy: Vec<std::thread::JoinHandle<()>> = (0..40)
            .map(|_| {
                let socket = daemon.socket.clone();
                let pipeline = pipeline.clone();
                std::thread::spawn(move || {
                    let mut busy = Raw::json(&socket);
                    let reader = busy.sock.try_clone().unwrap();
                    let reading = std::thread::spawn(move || {
                        let mut reader = Raw { sock: reader };
                        while reader.read().is_some() {}
                    });
                    for _ in 0..3 {
                        if busy.sock.write_all(&pipeline).is_err() {
                            break;
                        }
                    }
                    let _ = busy.sock.shutdown(std::net::Shutdown::Write);
                    let _ = reading.join();
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        drop(raw);
        for b in busy {
            tokio::task::spawn_blocking(move || b.join().unwrap()).await.unwrap();
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
}

/// A hundred and eight gateways that each leave most of 1 MiB of replies
/// unread and then stop sending: the daemon gives up on each, and what they left is
/// given back to the total, every byte; an admin that pipelines next is
/// served in full (leaked, the total would be spent, and the admin closed
/// for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_given_up_on_give_back_what_they_held() {
    let _one = crate::one_at_a_time().await;
    if !crate::support::privileged() {
        return;
    }
    let daemon = crate::support::daemon_for_nobody(TWO_BY_64, "gateway");
    let nobody = crate::support::NOBODY;
    // Under 1 MiB of replies each (about 900 KB: the daemon reads on, to
    // their end of file), most of it left queued when it gives up on their
    // writers; 108 in all: leaked, what they left would be past the total.
    // Twelve at a time, so that together they stay within what one uid may
    // leave unread (UID_BUDGET, 16 MiB): this is the writers' giving up,
    // not the budget's abort.
    let pipeline: Vec<u8> = (1..=7_000)
        .flat_map(|i| {
            json_frame(
                format!(
                    r#"{{"id":{i},"body":{{"lease":{{"pool":"nope","rate":{{"min":1,"max":2}},"ttl_ms":1000}}}}}}"#
                )
                .as_bytes(),
            )
        })
        .collect();
    let pipeline = std::sync::Arc::new(pipeline);
    for round in 0..9 {
        let hogs: Vec<std::thread::JoinHandle<bool>> = (0..12)
            .map(|_| {
                let (socket, pipeline) = (daemon.socket.clone(), pipeline.clone());
                std::thread::spawn(move || {
                    let mut raw = Raw::json_as(&socket, nobody, nobody);
                    raw.sock.write_all(&pipeline).unwrap();
                    raw.sock.shutdown(std::net::Shutdown::Write).unwrap();
                    // The daemon reads to the end, gives its writer (which
                    // waits on this client) a second, then gives up and
                    // closes: wait for that, without reading a byte.
                    let deadline = std::time::Instant::now() + Duration::from_secs(60);
                    while !peer_closed(&raw.sock) {
                        if std::time::Instant::now() > deadline {
                            return false;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    true
                })
            })
            .collect();
        for hog in hogs {
            let given_up = tokio::task::spawn_blocking(move || hog.join().unwrap()).await.unwrap();
            assert!(given_up, "round {round}: the daemon did not give up on a client");
        }
    }
    // An admin pipelining 3,000 requests is served every one, not closed
    // for a total that leaked.
    let mut root = Raw::json(&daemon.socket);
    let reader = root.sock.try_clone().unwrap();
    let reading = std::thread::spawn(move || {
        let mut reader = Raw { sock: reader };
        (0..3_000).filter(|_| reader.read().is_some()).count()
    });
    let pipeline: Vec<u8> =
        (1..=3_000).flat_map(|i| json_frame(format!(r#"{{"id":{i},"body":{{"status":{{}}}}}}"#).as_bytes())).collect();
    root.sock.write_all(&pipeline).unwrap();
    assert_eq!(tokio::task::spawn_blocking(move || reading.join().unwrap()).await.unwrap(), 3_000);
}

/// The daemon's open descriptors, from /proc.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The daemon's closer threads.
fn closers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter(|t| {
            let comm = t.as_ref().unwrap().path().join("comm");
            std::fs::read_to_string(comm).is_ok_and(|c| c.trim() == "streamlet-close")
        })
        .count()
}

/// A hundred sockets, each with a connection queued inside that lingers
/// (30 s), handed over as stray descriptors: each is emptied before it
/// is closed, so no closer is held up, and every descriptor is gone soon
/// after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_with_lingering_connections_inside_hold_up_no_closer() {
    let _one = crate::one_at_a_time().await;
    let daemon = Daemon::start(TWO_BY_64);
    let pid = daemon.pid();
    let probe = Probe::start(&daemon.socket);
    let mut raw = Raw::json(&daemon.socket);
    let before = open_fds(pid);
    let mut held = Vec::new();
    for id in 1..=100 {
        let l = lingering(30);
        let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(send_with_fds(x.as_fd(), b"z", &[l.client.as_fd()]).unwrap(), 1);
        let Lingering { client, _server } = l;
        drop((client, x));
        held.push(_server);
        let status = json_frame(format!(r#"{{"id":{id},"body":{{"status":{{}}}}}}"#).as_bytes());
        hand_over_socket(&raw.sock, &status, y);
        assert!(raw.read().is_some());
    }
    raw.frame(br#"{"id":1000,"body":{"status":{}}}"#);
    assert!(raw.read().is_some());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while open_fds(pid) > before + 8 {
        assert!(std::time::Instant::now() < deadline, "{} descriptors open, {before} before", open_fds(pid));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closers(pid) <= 2, "{} closer threads: some were held up", closers(pid));
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
}

/// [`hand_over`] of a Unix socket: the test's copy is closed before the
/// rest of the frame goes.
fn hand_over_socket(sock: &std::os::unix::net::UnixStream, frame: &[u8], fd: std::os::unix::net::UnixStream) {
    assert_eq!(send_with_fds(sock.as_fd(), &frame[..1], &[fd.as_fd()]).unwrap(), 1);
    drop(fd);
    (&*sock).write_all(&frame[1..]).unwrap();
}

/// A streamlet that reports counters for a stream it does not have, in
/// messages as full as the protocol allows (1024 counters), as fast as it
/// can; with `TOO_MANY`, one message of 2000 counters first.
const STATS_FLOOD: &str = r#"one = varint(999999) + varint(1) + varint(1) + varint(0) + varint(0)
full = b'\x02' + varint(1024) + one * 1024
while True:
    s.send(full)
"#;

/// Streamlets that flood the daemon with counters cost it a `recv` a
/// message past what their streams could report; one that sends more
/// counters in a message than the protocol allows is killed for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamlets_flooding_counters_cost_the_daemon_little() {
    let _one = crate::one_at_a_time().await;
    let scripts = tempfile::Builder::new().prefix("streamlet-attack-").tempdir_in("/run").unwrap();
    std::fs::set_permissions(scripts.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let worker = scripts.path().join("stats-flood");
    std::fs::write(&worker, streamlet(STATS_FLOOD)).unwrap();
    std::fs::set_permissions(&worker, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"1s\"\n\n[pools.flood]\nhandler = {{ kind = \"echo\" }}\n\
         workers = {{ min = 4, max = 4 }}\nstreams_per_worker = 4\nspare = false\n",
        worker.display()
    );
    let daemon = Daemon::start(&config);
    let probe = Probe::start(&daemon.socket);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
    let workers = daemon.client().await.workers(None).await.unwrap();
    assert_eq!(workers.len(), 4);
    assert!(workers.iter().all(|w| w.restarts == 0), "within the protocol's bounds: not killed {workers:?}");

    // More counters in one message than the protocol allows: killed.
    let too_many = streamlet(STATS_FLOOD)
        .replace("while True:\n    s.send(full)", "s.send(b'\\x02' + varint(2000) + one * 2000)\ntime.sleep(60)");
    std::fs::write(&worker, too_many).unwrap();
    // Each death is an event: a replacement killed a few milliseconds after
    // its start is seen there, where a listing polled now and then could
    // fall between its start and its death every time.
    let mut watcher = daemon.client().await;
    watcher.subscribe().await.unwrap();
    let victim = workers[0].pid;
    crate::support::signal(victim, libc::SIGKILL);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut deaths = Vec::new();
    loop {
        let event = tokio::time::timeout_at(deadline, watcher.next_event())
            .await
            .unwrap_or_else(|_| panic!("not killed for 2000 counters; deaths seen: {deaths:?}"))
            .unwrap();
        if let streamlet_proto::Event::WorkerExited(exited) = event {
            if let streamlet_proto::ExitCause::ProtocolError { message } = &exited.cause {
                assert!(message.contains("2000 stream counters"), "{message}");
                break;
            }
            deaths.push(exited.cause);
        }
    }
}

/// A flood of TCP clients at a pool's `listen` address: the daemon accepts
/// no more than the pool has room for (the rest wait in the kernel's queue,
/// unaccepted: they cost the daemon no descriptor), other clients of the
/// control socket are answered throughout, and a client that comes once the
/// flood goes is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tcp_clients_takes_only_the_room_the_pool_has() {
    let _one = crate::one_at_a_time().await;
    crate::support::raise_nofile();
    const CONFIG: &str = r#"
[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 16
spare = false
listen = ["127.0.0.1:0"]
"#;
    let daemon = Daemon::start(CONFIG);
    let status = daemon.wait_until(|s| !s.pools[0].listening.is_empty());
    let addr: std::net::SocketAddr = status.pools[0].listening[0].parse().unwrap();
    let before = open_fds(daemon.pid());
    let probe = Probe::start_fresh(&daemon.socket);
    // 2,000 clients, each connected and silent: far past the pool's 32 places.
    let flood: Vec<TcpStream> = (0..2000).filter_map(|_| TcpStream::connect(addr).ok()).collect();
    assert!(flood.len() > 1000, "the kernel queued {} connections", flood.len());
    let full = daemon.wait_until(|s| s.pools[0].streams == 32);
    assert_eq!(full.pools[0].streams, 32, "exactly the pool's room is taken");
    std::thread::sleep(Duration::from_millis(300));
    let during = open_fds(daemon.pid());
    // The 32 streams' copies, and a few of the daemon's own: not the flood.
    assert!(during < before + 64, "{before} descriptors before, {during} during the flood");
    let slowest = probe.finish();
    assert!(slowest < PROBE_BOUND, "another client waited {slowest:?}");
    drop(flood);
    // The flood's connections end (their streams, and those still queued,
    // which the daemon now takes and sees closed): a newcomer is served.
    let mut late = TcpStream::connect(addr).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    late.write_all(b"still here\n").unwrap();
    let mut buf = [0u8; 11];
    std::io::Read::read_exact(&mut late, &mut buf).unwrap();
    assert_eq!(&buf, b"still here\n");
}
