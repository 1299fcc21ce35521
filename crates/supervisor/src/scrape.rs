//! The metrics on an opt-in HTTP listener (`[metrics] listen`, loopback TCP
//! or a Unix socket): `GET /metrics` answered from [`crate::metrics`].

use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::config::MetricsListen;
use crate::context::Daemon;

/// Serves `GET /metrics` until the daemon stops: one request per
/// connection, headers at most 8 KiB within [`REQUEST_TIME`], the whole
/// exchange within [`ANSWER_TIME`]. At most [`MAX_CONNECTIONS`] at once; a
/// new one past that evicts the oldest still waiting for its request, so
/// idle connections cannot keep a scraper out.
pub async fn serve(daemon: Arc<Daemon>, listen: MetricsListen) -> std::io::Result<()> {
    enum Listener {
        Tcp(tokio::net::TcpListener),
        Unix(tokio::net::UnixListener),
    }
    // (It removes the socket's path when dropped, if the path is still ours.)
    let mut path_owner = None;
    let listener = match &listen {
        MetricsListen::Tcp(addr) => Listener::Tcp(tokio::net::TcpListener::bind(addr).await?),
        MetricsListen::Unix(path) => {
            // Made as the control socket is: a live socket there is an
            // error, a stale one replaced, anything else left alone.
            let mut socket = crate::listener::ControlSocket::bind(path).map_err(std::io::Error::other)?;
            // (It takes no descriptors: nobody has any to give it.)
            let listener = socket.take_listener()?;
            path_owner = Some(socket);
            Listener::Unix(listener)
        }
    };
    tracing::info!(listen = ?listen, "serving metrics at /metrics");
    let mut stopping = daemon.stopping.subscribe();
    let mut live: Vec<Arc<Live>> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = async {
                match &listener {
                    Listener::Tcp(l) => l.accept().await.map(|(s, _)| Conn::Tcp(s)),
                    Listener::Unix(l) => l.accept().await.map(|(s, _)| Conn::Unix(s)),
                }
            } => match accepted {
                Ok(conn) => {
                    live.retain(|c| !c.done.load(std::sync::atomic::Ordering::Acquire));
                    if live.len() >= MAX_CONNECTIONS {
                        // The oldest still waiting for its request goes; if
                        // every one is already answering, the new one does.
                        match live.iter().position(|c| !c.answering.load(std::sync::atomic::Ordering::Acquire)) {
                            Some(oldest) => live.remove(oldest).evict.notify_one(),
                            None => {
                                conn.dispose();
                                continue;
                            }
                        }
                    }
                    let this = Arc::new(Live::default());
                    live.push(this.clone());
                    tasks.spawn(serve_one(daemon.clone(), conn, this));
                }
                Err(e) => {
                    crate::logcap::limiter().warn("metrics_accept", format_args!("metrics accept failed; pausing 100 ms: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            () = crate::context::stopped(&mut stopping) => break,
        }
    }
    drop(listener);
    drop(path_owner);
    Ok(())
}

/// Metrics connections served at once, at most.
const MAX_CONNECTIONS: usize = 16;

/// How long a connection may take to send its request.
const REQUEST_TIME: Duration = Duration::from_secs(1);

/// How long a connection may take in all, the answer's write included.
const ANSWER_TIME: Duration = Duration::from_secs(5);

/// One connection, as the accept loop sees it.
#[derive(Debug, Default)]
struct Live {
    /// Its request came: it is being answered (and is not evicted).
    answering: std::sync::atomic::AtomicBool,
    done: std::sync::atomic::AtomicBool,
    evict: tokio::sync::Notify,
}

/// A metrics connection.
enum Conn {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Conn {
    /// Reads what came, into `buf`. A Unix peer may attach descriptors to
    /// its bytes; a plain read would close them inside the read, on the
    /// daemon's thread, so they are received and disposed of instead.
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use tokio::io::AsyncReadExt;
        match self {
            Conn::Tcp(s) => s.read(buf).await,
            Conn::Unix(s) => {
                let mut fds = Vec::new();
                let got = s
                    .async_io(tokio::io::Interest::READABLE, || {
                        streamlet_proto::fdpass::recv_with_fds(std::os::fd::AsFd::as_fd(&*s), buf, &mut fds)
                    })
                    .await;
                fds.into_iter().for_each(streamlet_proto::foreign::dispose);
                got.map(|g| g.bytes)
            }
        }
    }

    async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Tcp(s) => s.write_all(bytes).await,
            Conn::Unix(s) => s.write_all(bytes).await,
        }
    }

    /// Closes it where the close cannot hold the daemon up (a Unix peer may
    /// have left descriptors queued in it).
    fn dispose(self) {
        let std: std::io::Result<std::os::fd::OwnedFd> = match self {
            Conn::Tcp(s) => s.into_std().map(Into::into),
            Conn::Unix(s) => s.into_std().map(Into::into),
        };
        if let Ok(fd) = std {
            streamlet_proto::foreign::dispose(fd);
        }
    }
}

async fn serve_one(daemon: Arc<Daemon>, mut conn: Conn, live: Arc<Live>) {
    tokio::select! {
        () = answer(&daemon, &mut conn, &live) => {}
        () = live.evict.notified() => {}
        () = tokio::time::sleep(ANSWER_TIME) => {}
    }
    live.done.store(true, std::sync::atomic::Ordering::Release);
    conn.dispose();
}

async fn answer(daemon: &Daemon, conn: &mut Conn, live: &Live) {
    let mut head = Vec::with_capacity(512);
    let read = tokio::time::timeout(REQUEST_TIME, async {
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                return Ok(false);
            }
            if head.len() + n > 8192 {
                return Ok(true);
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, std::io::Error>(false)
    })
    .await;
    let too_large = match read {
        Ok(Ok(too_large)) => too_large,
        _ => return,
    };
    live.answering.store(true, std::sync::atomic::Ordering::Release);
    if too_large {
        let body = "request headers over 8 KiB\n";
        let response = format!(
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = conn.write_all(response.as_bytes()).await;
        return;
    }
    if !head.windows(2).any(|w| w == b"\n\n") && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        return; // cut off before the headers' end
    }
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let (status, body, kind) = match (words.next(), words.next()) {
        (Some("GET"), Some("/metrics")) => {
            let metrics = daemon.core().refresh_metrics();
            ("200 OK", metrics.encode(), "text/plain; version=0.0.4; charset=utf-8")
        }
        (Some("GET"), Some(_)) => ("404 Not Found", "only /metrics is here\n".to_owned(), "text/plain"),
        _ => ("405 Method Not Allowed", "GET /metrics\n".to_owned(), "text/plain"),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.write_all(response.as_bytes()).await;
}
