//! The kernel paces each TCP stream at the rate the daemon gives it, and
//! follows a re-allocation within a second.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_proto::OpenRequest;

use crate::support::Daemon;

/// 8 Mbit/s to share; each stream may use all of it.
const PACED: &str = r#"
[daemon]
shutdown_timeout = "2s"

[capacity]
egress = "8Mbit"
burst = "0s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 4
default_rate = { min = "1Mbit", max = "8Mbit" }
"#;

/// A client that writes as fast as it may and counts what comes back.
struct Pump {
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Pump {
    fn start<S: Read + Write + Send + 'static>(
        client: S,
        clone: impl FnOnce(&S) -> S,
        timeouts: impl FnOnce(&S),
    ) -> Pump {
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(AtomicU64::new(0));
        timeouts(&client);
        let mut writer = clone(&client);
        let mut reader = client;
        let (s1, s2, r) = (stop.clone(), stop.clone(), received.clone());
        let threads = vec![
            std::thread::spawn(move || {
                let chunk = vec![1u8; 16 * 1024];
                while !s1.load(Ordering::Relaxed) {
                    if let Err(e) = writer.write(&chunk) {
                        if !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                            return;
                        }
                    }
                }
            }),
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                while !s2.load(Ordering::Relaxed) {
                    match reader.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            r.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(_) => return,
                    }
                }
            }),
        ];
        Pump { stop, received, threads }
    }

    /// Bytes per second received over `span`.
    fn rate_over(&self, span: Duration) -> f64 {
        let (b0, t0) = (self.received.load(Ordering::Relaxed), Instant::now());
        std::thread::sleep(span);
        (self.received.load(Ordering::Relaxed) - b0) as f64 / t0.elapsed().as_secs_f64()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_stream_moves_at_its_allocated_rate_and_follows_a_reallocation() {
    let daemon = Daemon::start(PACED);
    let mut control = daemon.client().await;
    let (client, server) = tcp_pair();
    let first = control.open(OpenRequest::new("echo"), server.as_fd()).await.unwrap();
    drop(server);
    assert_eq!(first.rate, Some(1_000_000), "alone: its max, 8 Mbit/s");
    let pump = Pump::start(
        client,
        |c| c.try_clone().unwrap(),
        |c| {
            c.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let alone = pump.rate_over(Duration::from_secs(3));
    assert!((alone - 1e6).abs() <= 1e5, "8 Mbit/s ±10%: {alone:.0} B/s");

    // A second stream halves the first's allocation: 4 Mbit/s, paced 1/64 under.
    let (_idle_client, idle_server) = tcp_pair();
    control.open(OpenRequest::new("echo"), idle_server.as_fd()).await.unwrap();
    let streams = control.streams(None).await.unwrap();
    assert_eq!(streams.iter().find(|s| s.id == first.stream).unwrap().rate, Some(500_000));
    std::thread::sleep(Duration::from_secs(1));
    let shared = pump.rate_over(Duration::from_secs(3));
    let paced = 500_000.0 - 500_000.0 / 64.0;
    assert!((shared - paced).abs() <= paced * 0.1, "settled at 4 Mbit/s ±10% within a second: {shared:.0} B/s");
    eprintln!("pacing: alone {alone:.0} B/s (allocated 1000000), shared {shared:.0} B/s (paced {paced:.0})");
    pump.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_stream_is_paced_by_its_streamlet_at_its_allocation() {
    let daemon = Daemon::start(PACED);
    let mut control = daemon.client().await;
    let (client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    let opened = control.open(OpenRequest::new("echo"), server.as_fd()).await.unwrap();
    drop(server);
    assert_eq!(opened.rate, Some(1_000_000));
    let pump = Pump::start(
        client,
        |c| c.try_clone().unwrap(),
        |c| {
            c.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let rate = pump.rate_over(Duration::from_secs(3));
    eprintln!("worker pacing: {rate:.0} B/s (allocated 1000000)");
    assert!((rate - 1e6).abs() <= 1e5, "8 Mbit/s ±10% from the worker's token bucket: {rate:.0} B/s");
    // The listing shows how fast it sends and how long it was held back.
    let listed = control.streams(None).await.unwrap().into_iter().find(|s| s.id == opened.stream).unwrap();
    let sending = listed.sending.expect("measured") as f64;
    assert!((sending - 1e6).abs() <= 2e5, "sending {sending}");
    assert!(listed.stalled_ms > 0, "{listed:?}");
    pump.stop();
}

/// A connected MPTCP pair over loopback, or `None` where the kernel has no
/// MPTCP.
fn mptcp_pair() -> Option<(std::net::TcpStream, std::net::TcpStream)> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let socket = || {
        // SAFETY: socket(2) takes no pointers.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, libc::IPPROTO_MPTCP) };
        // SAFETY: a descriptor socket(2) just made, ours alone.
        (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) })
    };
    let listener = socket()?;
    // SAFETY: an all-zero sockaddr_in is valid.
    let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    sin.sin_family = libc::AF_INET as libc::sa_family_t;
    sin.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: bind and listen on a socket we own, with a filled sockaddr_in
    // of the size given.
    unsafe {
        assert_eq!(libc::bind(listener.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), len), 0);
        assert_eq!(libc::listen(listener.as_raw_fd(), 1), 0);
    }
    let listener = std::net::TcpListener::from(listener);
    let client = socket()?;
    sin.sin_port = listener.local_addr().unwrap().port().to_be();
    // SAFETY: a blocking connect over loopback of a socket we own.
    assert_eq!(unsafe { libc::connect(client.as_raw_fd(), (&sin as *const libc::sockaddr_in).cast(), len) }, 0);
    let (server, _) = listener.accept().unwrap();
    Some((std::net::TcpStream::from(client), server))
}

/// The kernel refuses `SO_MAX_PACING_RATE` on an MPTCP socket, so its
/// streamlet paces it, as it does a Unix stream. (It was paced by neither:
/// the daemon left it to the streamlet, the streamlet to the kernel.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mptcp_stream_is_paced_by_its_streamlet_at_its_allocation() {
    let Some((client, server)) = mptcp_pair() else {
        eprintln!("skipping: this kernel has no MPTCP (net.mptcp.enabled)");
        return;
    };
    let daemon = Daemon::start(PACED);
    let mut control = daemon.client().await;
    let opened = control.open(OpenRequest::new("echo"), server.as_fd()).await.unwrap();
    drop(server);
    assert_eq!(opened.rate, Some(1_000_000));
    let pump = Pump::start(
        client,
        |c| c.try_clone().unwrap(),
        |c| {
            c.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
            c.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    let rate = pump.rate_over(Duration::from_secs(3));
    eprintln!("MPTCP pacing: {rate:.0} B/s (allocated 1000000)");
    assert!((rate - 1e6).abs() <= 1e5, "8 Mbit/s ±10% from the streamlet's token bucket: {rate:.0} B/s");
    let listed = control.streams(None).await.unwrap().into_iter().find(|s| s.id == opened.stream).unwrap();
    assert!(listed.stalled_ms > 0, "the streamlet held its writes back: {listed:?}");
    pump.stop();
}
