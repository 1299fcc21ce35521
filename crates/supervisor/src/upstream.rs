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

    /// Starts connecting, without waiting: the socket is handed over at once,
    /// and the streamlet waits for the connection (or its failure).
    pub fn connect(&self) -> io::Result<OwnedFd> {
        match self {
            Upstream::Unix(path) => {
                let stream = std::os::unix::net::UnixStream::connect(path)?;
                stream.set_nonblocking(true)?;
                Ok(stream.into())
            }
            Upstream::Tcp(addr) => connect_tcp(addr),
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
