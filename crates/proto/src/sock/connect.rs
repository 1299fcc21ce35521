//! Connects that never wait: the socket is made non-blocking (and
//! close-on-exec) before its `connect(2)`.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Starts a TCP connection to `addr` and returns its socket at once, the
/// connection under way or made: the socket becomes writable when it is
/// made or has failed, and then [`super::take_error`] says which. Errors
/// only for what fails at once (no route, no descriptors). Never waits.
pub fn connect_tcp(addr: &SocketAddr) -> io::Result<OwnedFd> {
    let domain = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    let fd = socket(domain)?;
    let rc = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: an all-zero sockaddr_in is valid.
            let mut sin: libc::sockaddr_in = unsafe { mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            raw_connect(&fd, &sin)
        }
        SocketAddr::V6(a) => {
            // SAFETY: an all-zero sockaddr_in6 is valid.
            let mut sin6: libc::sockaddr_in6 = unsafe { mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            raw_connect(&fd, &sin6)
        }
    };
    match rc {
        Ok(()) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

/// Connects to the Unix stream socket at `path`, or says at once that it
/// cannot now: `Ok(None)` when the listener's backlog is full (`EAGAIN`; a
/// Unix connect cannot be left under way, so try again later). Every other
/// failure (no such socket, nobody listening, no permission) is an error.
/// Never waits.
pub fn connect_unix(path: &Path) -> io::Result<Option<OwnedFd>> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut sun: libc::sockaddr_un = unsafe { mem::zeroed() };
    // (Room for the NUL that the zeroing leaves at the end.)
    if bytes.is_empty() || bytes.len() >= sun.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a Unix socket path (1 to {} bytes, no NUL)", path.display(), sun.sun_path.len() - 1),
        ));
    }
    sun.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in sun.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let fd = socket(libc::AF_UNIX)?;
    match raw_connect(&fd, &sun) {
        Ok(()) => Ok(Some(fd)),
        Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => Ok(None),
        Err(e) => Err(e),
    }
}

/// A new stream socket of `domain` (its default protocol: TCP for the
/// Internet domains), non-blocking and close-on-exec from the start.
fn socket(domain: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: socket(2) takes no pointers.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket succeeded: the descriptor is new and ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Socket address structures `connect(2)` takes.
trait SockAddr {}
impl SockAddr for libc::sockaddr_in {}
impl SockAddr for libc::sockaddr_in6 {}
impl SockAddr for libc::sockaddr_un {}

/// `connect(2)` of `fd` to the filled address `addr`.
fn raw_connect<A: SockAddr>(fd: &OwnedFd, addr: &A) -> io::Result<()> {
    let len = mem::size_of::<A>() as libc::socklen_t;
    // SAFETY: addr is a live, filled socket address of `len` bytes that the
    // kernel only reads; fd is open (owned).
    let rc = unsafe { libc::connect(fd.as_raw_fd(), (addr as *const A).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
