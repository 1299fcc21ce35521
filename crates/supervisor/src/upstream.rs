//! Upstreams of `relay` pools: parsed from the configuration, and connected
//! by the daemon (streamlets have no network of their own).

use std::io;
use std::net::SocketAddr;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

/// `tcp://IP:PORT` or `unix:/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl Upstream {
    pub fn parse(text: &str) -> Result<Upstream, String> {
        if let Some(addr) = text.strip_prefix("tcp://") {
            let addr = addr
                .parse()
                .map_err(|_| format!("{text:?}: write tcp://IP:PORT with an IP address, like tcp://127.0.0.1:9000"))?;
            return Ok(Upstream::Tcp(addr));
        }
        if let Some(path) = text.strip_prefix("unix:") {
            if path.starts_with('/') {
                return Ok(Upstream::Unix(PathBuf::from(path)));
            }
        }
        Err(format!("{text:?} is no upstream: write tcp://IP:PORT or unix:/absolute/path"))
    }

    /// Connects without waiting. TCP: the connection is under way (the
    /// socket is handed over at once, and the streamlet waits for it, or its
    /// failure). Unix: connected, or `Ok(None)` when the upstream's backlog
    /// is full (a Unix connect cannot be left under way: try again later).
    pub fn try_connect(&self) -> io::Result<Option<OwnedFd>> {
        match self {
            Upstream::Unix(path) => connect_unix(path),
            Upstream::Tcp(addr) => connect_tcp(addr).map(Some),
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Tcp(addr) => write!(f, "tcp://{addr}"),
            Upstream::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

fn connect_unix(path: &std::path::Path) -> io::Result<Option<OwnedFd>> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut sun: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{}: not a Unix socket path", path.display())));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just created and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    // SAFETY: sun is a filled sockaddr_un passed with its size; the socket is
    // non-blocking, so connect never waits.
    let rc =
        unsafe { libc::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), (&sun as *const libc::sockaddr_un).cast(), len) };
    if rc == 0 {
        return Ok(Some(fd));
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EAGAIN) {
        Ok(None)
    } else {
        Err(e)
    }
}

fn connect_tcp(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(family, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just created and own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: the sockaddr structs are zeroed, filled and passed with their sizes.
    let rc = unsafe {
        match addr {
            SocketAddr::V4(a) => {
                let mut sin: libc::sockaddr_in = std::mem::zeroed();
                sin.sin_family = libc::AF_INET as libc::sa_family_t;
                sin.sin_port = a.port().to_be();
                sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
                let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
                libc::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), (&sin as *const libc::sockaddr_in).cast(), len)
            }
            SocketAddr::V6(a) => {
                let mut sin6: libc::sockaddr_in6 = std::mem::zeroed();
                sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
                sin6.sin6_port = a.port().to_be();
                sin6.sin6_addr.s6_addr = a.ip().octets();
                sin6.sin6_scope_id = a.scope_id();
                let len = std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t;
                libc::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), (&sin6 as *const libc::sockaddr_in6).cast(), len)
            }
        }
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINPROGRESS) {
            return Err(e);
        }
    }
    Ok(fd)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Unix upstream whose backlog is full is "not now", at once: never a
    /// wait (a blocking connect would wait for the upstream to accept).
    #[test]
    fn a_full_unix_backlog_is_not_now_and_never_a_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.sock");
        // SAFETY: socket, bind and listen with a backlog of 0 on a
        // descriptor we own; the sockaddr_un is filled and sized.
        let listener = unsafe {
            let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sun: libc::sockaddr_un = std::mem::zeroed();
            sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
            for (dst, src) in sun.sun_path.iter_mut().zip(path.as_os_str().as_encoded_bytes()) {
                *dst = *src as libc::c_char;
            }
            let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
            let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
            assert_eq!(libc::bind(raw, (&sun as *const libc::sockaddr_un).cast(), len), 0);
            assert_eq!(libc::listen(raw, 0), 0);
            fd
        };
        let upstream = Upstream::Unix(path.clone());
        let mut held = Vec::new();
        let started = std::time::Instant::now();
        let mut busy = false;
        for _ in 0..4 {
            match upstream.try_connect().unwrap() {
                Some(fd) => held.push(fd),
                None => busy = true,
            }
        }
        assert!(busy, "a backlog of 0 takes one connection, not four");
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
        drop(listener);
        assert!(Upstream::Unix(dir.path().join("absent.sock")).try_connect().is_err());
    }

    #[test]
    fn upstreams_parse_and_print_back() {
        for text in ["tcp://127.0.0.1:9000", "tcp://[::1]:80", "unix:/run/app.sock"] {
            assert_eq!(Upstream::parse(text).unwrap().to_string(), text);
        }
        for bad in ["127.0.0.1:9000", "tcp://localhost:9000", "unix:relative.sock", "udp://1.2.3.4:5"] {
            assert!(Upstream::parse(bad).is_err(), "{bad}");
        }
    }
}
