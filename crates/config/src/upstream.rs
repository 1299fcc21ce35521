//! Upstreams of `relay` pools: parsed from the configuration, and connected
//! by the daemon (streamlets have no network of their own).

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use streamlet_proto::sock;

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
            Upstream::Unix(path) => sock::connect_unix(path),
            Upstream::Tcp(addr) => sock::connect_tcp(addr).map(Some),
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
