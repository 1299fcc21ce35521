//! Data-plane throughput of echo through streamlets, beside a direct echo
//! (the limit of the machine) and, when installed, HAProxy in TCP mode in
//! front of the same direct echo.
//!
//! `cargo bench --bench throughput` (as root for the sandbox; `-- --seconds N`).
//! `bash benches/throughput-haproxy.sh` installs HAProxy first (not in CI).
//!
//! Each client writes 64 KiB buffers as fast as it can and reads the echo
//! back; the figure is bytes echoed per second over the window, summed over
//! the clients. One stream, then 64 at once.

#[path = "support/daemon.rs"]
mod daemon;
use daemon::Daemon;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_client::Client;
use streamlet_proto::OpenRequest;

const CONFIG: &str = r#"
[daemon]
shutdown_timeout = "2s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 128
"#;

trait Conn: Read + Write + Send + 'static {
    fn dup(&self) -> Self;
    fn timeouts(&self);
}

impl Conn for UnixStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn timeouts(&self) {
        self.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        self.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    }
}

impl Conn for TcpStream {
    fn dup(&self) -> Self {
        self.try_clone().unwrap()
    }
    fn timeouts(&self) {
        self.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        self.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
        self.set_nodelay(true).unwrap();
    }
}

/// Bytes per second echoed back to `conns`, summed, over `seconds`.
fn measure<C: Conn>(conns: Vec<C>, seconds: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for conn in conns {
        conn.timeouts();
        let mut writer = conn.dup();
        let mut reader = conn;
        let (s1, s2, e) = (stop.clone(), stop.clone(), echoed.clone());
        threads.push(std::thread::spawn(move || {
            let buf = vec![7u8; 64 * 1024];
            while !s1.load(Ordering::Relaxed) {
                if let Err(err) = writer.write(&buf) {
                    if !matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                        return;
                    }
                }
            }
        }));
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !s2.load(Ordering::Relaxed) {
                match reader.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        e.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(err) if matches!(err.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                    }
                    Err(_) => return,
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_millis(300));
    let (b0, t0) = (echoed.load(Ordering::Relaxed), Instant::now());
    std::thread::sleep(Duration::from_secs_f64(seconds));
    let rate = (echoed.load(Ordering::Relaxed) - b0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    rate
}

/// An echo with nothing in between: a thread per connection.
fn direct_echo<C: Conn>(server: C) {
    std::thread::spawn(move || {
        let mut conn = server;
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 || conn.write_all(&buf[..n]).is_err() {
                return;
            }
        }
    });
}

fn tcp_pair(listener: &TcpListener) -> (TcpStream, TcpStream) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 =
        args.windows(2).find(|w| w[0] == "--seconds").map_or(3.0, |w| w[1].parse().expect("--seconds S"));
    let daemon = Daemon::start(CONFIG, 2);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut client = runtime.block_on(Client::connect(&daemon.socket)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut open = |server: &dyn AsFd| {
        runtime.block_on(async {
            // The streams of the case before end as their clients go: wait for it.
            while client.status().await.unwrap().pools[0].streams >= 128 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            client.open(OpenRequest::new("echo"), server.as_fd()).await.unwrap();
        })
    };

    println!("echo throughput, MB/s echoed ({seconds} s windows)");
    println!("{:<44} {:>10} {:>10}", "", "1 stream", "64 streams");
    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    let mut row = |name: &'static str, one: f64, many: f64| {
        println!("{name:<44} {:>10.1} {:>10.1}", one / 1e6, many / 1e6);
        rows.push((name, one, many));
    };

    let unix = |n: usize, open: &mut dyn FnMut(&dyn AsFd)| {
        (0..n)
            .map(|_| {
                let (mine, theirs) = UnixStream::pair().unwrap();
                open(&theirs);
                mine
            })
            .collect::<Vec<_>>()
    };
    let one = measure(unix(1, &mut open), seconds);
    let many = measure(unix(64, &mut open), seconds);
    row("streamlet echo, Unix socket", one, many);

    let tcp = |n: usize, open: &mut dyn FnMut(&dyn AsFd)| {
        (0..n)
            .map(|_| {
                let (mine, theirs) = tcp_pair(&listener);
                open(&theirs);
                mine
            })
            .collect::<Vec<_>>()
    };
    let one = measure(tcp(1, &mut open), seconds);
    let many = measure(tcp(64, &mut open), seconds);
    row("streamlet echo, TCP", one, many);

    let direct_unix = |n: usize| {
        (0..n)
            .map(|_| {
                let (mine, theirs) = UnixStream::pair().unwrap();
                direct_echo(theirs);
                mine
            })
            .collect::<Vec<_>>()
    };
    row(
        "direct echo thread, Unix socket (the limit)",
        measure(direct_unix(1), seconds),
        measure(direct_unix(64), seconds),
    );
    let direct_tcp = |n: usize| {
        (0..n)
            .map(|_| {
                let (mine, theirs) = tcp_pair(&listener);
                direct_echo(theirs);
                mine
            })
            .collect::<Vec<_>>()
    };
    row("direct echo thread, TCP (the limit)", measure(direct_tcp(1), seconds), measure(direct_tcp(64), seconds));

    match Haproxy::start() {
        Some(haproxy) => {
            let backend = haproxy.backend.try_clone().unwrap();
            std::thread::spawn(move || {
                for conn in backend.incoming().flatten() {
                    direct_echo(conn);
                }
            });
            let through = |n: usize| (0..n).map(|_| TcpStream::connect(haproxy.front).unwrap()).collect::<Vec<_>>();
            row(
                "HAProxy (mode tcp) in front of the direct echo",
                measure(through(1), seconds),
                measure(through(64), seconds),
            );
        }
        None => println!("(haproxy not installed: benches/throughput-haproxy.sh installs it and runs this)"),
    }
    let find = |name: &str| rows.iter().find(|r| r.0.starts_with(name)).map(|r| (r.1, r.2));
    if let (Some(s), Some(d)) = (find("streamlet echo, TCP"), find("direct echo thread, TCP")) {
        println!("streamlet / direct (TCP): {:.2} and {:.2}", s.0 / d.0, s.1 / d.1);
    }
    if let (Some(s), Some(h)) = (find("streamlet echo, TCP"), find("HAProxy")) {
        println!("streamlet / HAProxy (TCP): {:.2} and {:.2}", s.0 / h.0, s.1 / h.1);
    }
}

struct Haproxy {
    child: Child,
    front: std::net::SocketAddr,
    backend: TcpListener,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    fn start() -> Option<Haproxy> {
        let which = Command::new("sh").args(["-c", "command -v haproxy"]).output().ok()?;
        if !which.status.success() {
            return None;
        }
        let backend = TcpListener::bind("127.0.0.1:0").unwrap();
        let front = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("haproxy.cfg");
        std::fs::write(
            &config,
            format!(
                "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
                 frontend f\n  bind {front}\n  default_backend b\nbackend b\n  balance leastconn\n  server s1 {}\n",
                backend.local_addr().unwrap()
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .arg("-f")
            .arg(&config)
            .arg("-db")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(front).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Haproxy { child, front, backend, _dir: dir })
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
