//! What the daemon says to systemd, and what systemd hands it.
//!
//! - **Notify** (`Type=notify`): `READY=1` once every pool has its minimum of
//!   streamlets ready, `STATUS=` lines as the daemon works, `STOPPING=1` at
//!   shutdown, and `WATCHDOG=1` from the daemon's own loop (the 50 ms tick,
//!   which runs on the event loop and takes the core's lock), so a stuck loop
//!   stops the feeding and systemd restarts the service.
//! - **Socket activation** (`streamletd.socket`): the listening control socket
//!   passed as descriptor 3 with `LISTEN_FDS`/`LISTEN_PID`.
//!
//! Both follow sd_notify(3) and sd_listen_fds(3), without libsystemd: a
//! datagram to `$NOTIFY_SOCKET` (a path, or an abstract name after `@`) and
//! two environment variables. Outside systemd every call here does nothing.

use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const LISTEN_FDS_START: i32 = 3;

/// The daemon's voice to systemd's service manager.
#[derive(Debug)]
pub struct Notifier {
    socket: Option<(UnixDatagram, SocketAddr)>,
    /// Half the watchdog timeout: how often to say `WATCHDOG=1`.
    watchdog: Option<Duration>,
    fed: Instant,
    ready: bool,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID`; a notifier
    /// that says nothing when they are absent or unusable.
    pub fn from_env() -> Self {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            let path = path.to_string_lossy().into_owned();
            let address = match path.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()),
                None => SocketAddr::from_pathname(&path),
            };
            match address.and_then(|a| Ok((UnixDatagram::unbound()?, a))) {
                Ok(socket) => Some(socket),
                Err(e) => {
                    tracing::warn!(notify_socket = %path, error = %e, "cannot use $NOTIFY_SOCKET; systemd will not hear from streamletd");
                    None
                }
            }
        });
        let watchdog = watchdog_interval(
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        if let Some(every) = watchdog {
            tracing::info!(every_ms = every.as_millis() as u64, "feeding systemd's watchdog");
        }
        Self { socket, watchdog, fed: Instant::now(), ready: false }
    }

    /// Whether systemd is listening.
    pub fn enabled(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends one notification (newline-separated assignments).
    pub fn send(&self, state: &str) {
        if let Some((socket, address)) = &self.socket {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), address) {
                tracing::debug!(error = %e, state, "sd_notify");
            }
        }
    }

    /// `READY=1` with a status line, once.
    pub fn ready(&mut self, status: &str) {
        if !self.ready {
            self.ready = true;
            self.send(&format!("READY=1\nSTATUS={status}"));
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }

    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }

    /// Feeds the watchdog if half its timeout has passed since the last time.
    pub fn feed(&mut self) {
        if let Some(every) = self.watchdog {
            if self.fed.elapsed() >= every {
                self.fed = Instant::now();
                self.send("WATCHDOG=1");
            }
        }
    }
}

/// Half of `WATCHDOG_USEC`, if the watchdog is meant for this process.
fn watchdog_interval(usec: Option<&str>, pid: Option<&str>, me: u32) -> Option<Duration> {
    let usec: u64 = usec?.parse().ok().filter(|&u| u > 0)?;
    if let Some(pid) = pid {
        if pid.parse::<u32>().ok()? != me {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2))
}

/// The sockets systemd passed to this process, each with its name
/// (`FileDescriptorName=`; systemd says `unknown` for one without), made
/// close-on-exec and non-blocking. The variables are removed so that
/// nothing started later takes them for its own. Which is the control
/// socket and which a pool's is the caller's to tell ([`control_socket`]).
pub fn passed_sockets() -> io::Result<Vec<(String, OwnedFd)>> {
    let fds = listen_fds(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::process::id(),
    );
    let names = std::env::var("LISTEN_FDNAMES").ok();
    // SAFETY: the daemon's start is single-threaded here (no thread of ours
    // reads the environment concurrently).
    unsafe {
        std::env::remove_var("LISTEN_PID");
        std::env::remove_var("LISTEN_FDS");
        std::env::remove_var("LISTEN_FDNAMES");
    }
    let Some(count) = fds else { return Ok(Vec::new()) };
    if count > MAX_PASSED {
        return Err(io::Error::other(format!("systemd passed {count} sockets; streamletd takes at most {MAX_PASSED}")));
    }
    let names = fd_names(names.as_deref(), count);
    let mut passed = Vec::with_capacity(count as usize);
    for (i, name) in names.into_iter().enumerate() {
        let fd = LISTEN_FDS_START + i as i32;
        // SAFETY: fcntl on a descriptor systemd passed us; a failure is reported.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            let status = libc::fcntl(fd, libc::F_GETFL);
            if status < 0 || libc::fcntl(fd, libc::F_SETFL, status | libc::O_NONBLOCK) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: systemd handed this descriptor to us; nothing else owns it.
        passed.push((name, unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    Ok(passed)
}

/// Sockets systemd may pass, at most (a pool listens on 16 places; the
/// control socket is one more).
const MAX_PASSED: u32 = 1024;

/// `$LISTEN_FDNAMES` for `count` sockets: a name each, `unknown` for one it
/// does not name (as systemd itself says).
fn fd_names(names: Option<&str>, count: u32) -> Vec<String> {
    let mut given = names.unwrap_or("").split(':').filter(|_| names.is_some());
    (0..count).map(|_| given.next().filter(|n| !n.is_empty()).unwrap_or("unknown").to_owned()).collect()
}

/// Takes the control socket out of what systemd passed: the one listening
/// Unix stream socket (`streamletd.socket`'s `ListenStream=/path`). The
/// rest (TCP sockets for pools' `listen = ["fd:NAME"]`) stay.
pub fn control_socket(passed: &mut Vec<(String, OwnedFd)>) -> io::Result<Option<OwnedFd>> {
    let mut unix = Vec::new();
    for (i, (_, fd)) in passed.iter().enumerate() {
        let kind = streamlet_proto::sock::kind(fd.as_fd())?;
        if kind.is_some_and(|k| k.is_unix() && k.is_stream()) && streamlet_proto::sock::is_listening(fd.as_fd())? {
            unix.push(i);
        }
    }
    match unix.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(passed.remove(*one).1)),
        _ => Err(io::Error::other(format!(
            "systemd passed {} listening Unix sockets; streamletd takes one, its control socket (streamletd.socket: one ListenStream=/path)",
            unix.len()
        ))),
    }
}

/// How many sockets systemd passed to `me`, if any.
fn listen_fds(pid: Option<&str>, fds: Option<&str>, me: u32) -> Option<u32> {
    if pid?.parse::<u32>().ok()? != me {
        return None;
    }
    fds?.parse().ok().filter(|&n: &u32| n > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_fed_at_half_its_timeout_and_only_for_its_pid() {
        assert_eq!(watchdog_interval(Some("20000000"), None, 7), Some(Duration::from_secs(10)));
        assert_eq!(watchdog_interval(Some("20000000"), Some("7"), 7), Some(Duration::from_secs(10)));
        assert_eq!(watchdog_interval(Some("20000000"), Some("8"), 7), None, "another process's");
        assert_eq!(watchdog_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_interval(Some("soon"), None, 7), None);
        assert_eq!(watchdog_interval(None, Some("7"), 7), None);
    }

    #[test]
    fn each_passed_socket_has_a_name_or_unknown() {
        assert_eq!(fd_names(Some("control:echo-tcp"), 2), ["control", "echo-tcp"]);
        assert_eq!(fd_names(Some("control"), 3), ["control", "unknown", "unknown"]);
        assert_eq!(fd_names(Some("a::b:c"), 3), ["a", "unknown", "b"]);
        assert_eq!(fd_names(None, 1), ["unknown"]);
    }

    #[test]
    fn the_control_socket_is_the_one_listening_unix_socket() {
        let dir = tempfile::tempdir().unwrap();
        let unix = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
        let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut passed = vec![("echo-tcp".to_owned(), OwnedFd::from(tcp)), ("control".to_owned(), OwnedFd::from(unix))];
        assert!(control_socket(&mut passed).unwrap().is_some());
        assert_eq!(passed.len(), 1, "the TCP one stays");
        assert_eq!(passed[0].0, "echo-tcp");
        assert!(control_socket(&mut passed).unwrap().is_none(), "none left");
        let two = (0..2).map(|i| {
            let l = std::os::unix::net::UnixListener::bind(dir.path().join(format!("u{i}"))).unwrap();
            (format!("u{i}"), OwnedFd::from(l))
        });
        let mut passed: Vec<_> = two.collect();
        let err = control_socket(&mut passed).unwrap_err();
        assert!(err.to_string().contains("2 listening Unix sockets"), "{err}");
    }

    #[test]
    fn passed_sockets_count_only_for_their_pid() {
        assert_eq!(listen_fds(Some("42"), Some("1"), 42), Some(1));
        assert_eq!(listen_fds(Some("41"), Some("1"), 42), None);
        assert_eq!(listen_fds(None, Some("1"), 42), None);
        assert_eq!(listen_fds(Some("42"), Some("0"), 42), None);
        assert_eq!(listen_fds(Some("42"), None, 42), None);
    }

    #[test]
    fn notifications_reach_the_socket_and_ready_goes_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        let mut notifier = Notifier {
            socket: Some((UnixDatagram::unbound().unwrap(), SocketAddr::from_pathname(&path).unwrap())),
            watchdog: Some(Duration::ZERO),
            fed: Instant::now(),
            ready: false,
        };
        notifier.ready("2 pools ready");
        notifier.ready("again");
        notifier.feed();
        notifier.stopping("bye");
        let mut buf = [0u8; 256];
        let mut got = Vec::new();
        listener.set_nonblocking(true).unwrap();
        while let Ok(n) = listener.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        assert_eq!(got, ["READY=1\nSTATUS=2 pools ready", "WATCHDOG=1", "STOPPING=1\nSTATUS=bye"]);
    }
}
