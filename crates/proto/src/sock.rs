//! Socket system calls, in one place for the daemon and the streamlet.
//!
//! Both sides ask the kernel the same questions about a client connection
//! (is it a stream socket, of which domain and protocol? does the kernel pace
//! it?), and they must get the same answers: a stream the daemon leaves to the
//! streamlet's pacing and the streamlet leaves to the kernel's is paced by no
//! one. So every `getsockopt`, `setsockopt`, `shutdown` and `connect` of theirs
//! is one of the functions here.
//!
//! **None of them waits.** Options are read and set at once; `shutdown(2)`
//! queues a FIN and returns; a connect is made on a non-blocking socket and
//! left under way ([`connect_tcp`]) or refused at once ([`connect_unix`]).
//! The daemon calls some of them under its core lock, on its one thread, with
//! descriptors a gateway chose: the peer's choices (a full window, a listening
//! socket, a file on a stalled FUSE mount) never make these wait. On a
//! descriptor that is not a socket each fails with `ENOTSOCK` and touches
//! nothing.
//!
//! ```
//! use std::os::fd::AsFd;
//! use streamlet_proto::sock;
//!
//! let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
//! let kind = sock::kind(a.as_fd()).unwrap().expect("a socket");
//! assert!(kind.is_unix() && kind.is_stream());
//! assert!(!kind.kernel_paces(), "the streamlet paces a Unix stream itself");
//! ```

use std::io;
use std::mem;
use std::net::Shutdown;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Duration;

mod connect;
#[cfg(test)]
mod tests;

pub use connect::{connect_tcp, connect_unix};

/// What a socket is: the domain, type and protocol it was made with
/// (`socket(2)`'s three arguments, as `SO_DOMAIN`, `SO_TYPE` and
/// `SO_PROTOCOL` report them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// `AF_UNIX`, `AF_INET`, `AF_INET6`, ...
    pub domain: libc::c_int,
    /// `SOCK_STREAM`, `SOCK_DGRAM`, `SOCK_SEQPACKET`, ...
    pub kind: libc::c_int,
    /// `IPPROTO_TCP`, `IPPROTO_MPTCP`, ...; 0 for a Unix socket.
    pub protocol: libc::c_int,
}

impl Kind {
    /// A `SOCK_STREAM` socket, of any domain.
    pub fn is_stream(&self) -> bool {
        self.kind == libc::SOCK_STREAM
    }

    /// A Unix socket, of any type.
    pub fn is_unix(&self) -> bool {
        self.domain == libc::AF_UNIX
    }

    fn is_inet_stream(&self) -> bool {
        matches!(self.domain, libc::AF_INET | libc::AF_INET6) && self.is_stream()
    }

    /// Plain TCP, over IPv4 or IPv6.
    pub fn is_tcp(&self) -> bool {
        self.is_inet_stream() && self.protocol == libc::IPPROTO_TCP
    }

    /// Multipath TCP, over IPv4 or IPv6.
    pub fn is_mptcp(&self) -> bool {
        self.is_inet_stream() && self.protocol == libc::IPPROTO_MPTCP
    }

    /// Whether the daemon takes it as a client connection, connected or
    /// not: a Unix stream socket, TCP or MPTCP. Other stream sockets (SCTP,
    /// vsock, TIPC, ...) are refused: what closing or shutting them down
    /// costs is theirs to say.
    pub fn is_client_stream(&self) -> bool {
        (self.is_unix() && self.is_stream()) || self.is_tcp() || self.is_mptcp()
    }

    /// Whether the kernel paces what is sent on it at its
    /// `SO_MAX_PACING_RATE` (which the daemon sets, [`set_max_pacing_rate`]):
    /// plain TCP only. Where this is false the streamlet paces the stream
    /// itself, with its token bucket. The daemon and the streamlet both ask
    /// this, so every stream is paced by exactly one of them.
    ///
    /// - TCP: the kernel's TCP pacing (or the `fq` qdisc) holds each packet
    ///   to the rate.
    /// - MPTCP: the socket refuses the option with `EOPNOTSUPP` (checked on
    ///   Linux 6.18: MPTCP passes only a list of `SOL_SOCKET` options down to
    ///   its subflows, and this one is not on it), so nothing would pace it.
    /// - Unix: the option is taken and stored, and nothing reads it.
    pub fn kernel_paces(&self) -> bool {
        self.is_tcp()
    }
}

/// What `fd` is as a socket; `Ok(None)` when it is not a socket at all (a
/// pipe, a file: `ENOTSOCK`). Three `getsockopt`s; never waits.
pub fn kind(fd: BorrowedFd<'_>) -> io::Result<Option<Kind>> {
    let kind = match get_int(fd, libc::SO_TYPE) {
        Ok(kind) => kind,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(Kind { domain: get_int(fd, libc::SO_DOMAIN)?, kind, protocol: get_int(fd, libc::SO_PROTOCOL)? }))
}

/// Whether the kernel paces `fd` ([`Kind::kernel_paces`]); false for
/// anything that is not a socket, or that cannot be asked.
pub fn kernel_paces(fd: BorrowedFd<'_>) -> bool {
    kind(fd).ok().flatten().is_some_and(|k| k.kernel_paces())
}

/// Whether `fd` is a stream socket (`SOCK_STREAM`), connected or not, of any
/// domain. Not a socket: `Ok(false)`. Never waits.
pub fn is_stream_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(kind(fd)?.is_some_and(|k| k.is_stream()))
}

/// Whether `fd` is a connected stream socket the daemon can take as a
/// stream: TCP or MPTCP over IPv4 or IPv6, or a Unix `SOCK_STREAM`
/// ([`Kind::is_client_stream`]), with a peer ([`has_peer`]). Only
/// `getsockopt` and `getpeername` are used, which answer at once whatever
/// the descriptor is (a file on a stalled FUSE mount included).
pub fn is_connected_stream_socket(fd: BorrowedFd<'_>) -> io::Result<bool> {
    match kind(fd)? {
        Some(kind) if kind.is_client_stream() => has_peer(fd),
        _ => Ok(false),
    }
}

/// Whether a socket has a peer (`getpeername(2)` succeeds): a listening
/// socket, one never connected, and a TCP connection its peer reset have
/// none. Never waits.
pub fn has_peer(fd: BorrowedFd<'_>) -> io::Result<bool> {
    // SAFETY: an all-zero sockaddr_storage is valid.
    let mut addr: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: addr and len are valid for writes, and len is addr's size, so
    // the kernel writes inside it; fd is borrowed, so it is open.
    let rc = unsafe { libc::getpeername(fd.as_raw_fd(), (&mut addr as *mut libc::sockaddr_storage).cast(), &mut len) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOTCONN) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Whether a socket is listening (`SO_ACCEPTCONN`). Never waits.
pub fn is_listening(fd: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(get_int(fd, libc::SO_ACCEPTCONN)? == 1)
}

/// Puts a bound socket in the listening state with a backlog of `backlog`
/// connections (or raises the backlog of one already listening).
pub fn listen(fd: BorrowedFd<'_>, backlog: u32) -> io::Result<()> {
    let backlog = libc::c_int::try_from(backlog).unwrap_or(libc::c_int::MAX);
    // SAFETY: listen(2) on a descriptor we borrow; no memory is passed.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the rate the kernel paces the socket at, in bytes per second
/// (`SO_MAX_PACING_RATE`; `u64::MAX` is no limit). It takes effect for what
/// is sent from now on, on every copy of the descriptor; streamlets cannot
/// set it (their seccomp filter refuses it), so what the daemon sets holds.
/// Only a socket the kernel paces ([`Kind::kernel_paces`]) is held to it; an
/// MPTCP socket refuses it (`EOPNOTSUPP`). Never waits.
pub fn set_max_pacing_rate(fd: BorrowedFd<'_>, rate: u64) -> io::Result<()> {
    set(fd, libc::SOL_SOCKET, libc::SO_MAX_PACING_RATE, &rate)
}

/// The socket's `SO_MAX_PACING_RATE`, bytes per second (`u64::MAX`: none).
/// Never waits.
pub fn max_pacing_rate(fd: BorrowedFd<'_>) -> io::Result<u64> {
    get(fd, libc::SOL_SOCKET, libc::SO_MAX_PACING_RATE, 0u64)
}

/// Sets `SO_LINGER`: `None` turns lingering off (the last close returns at
/// once and the kernel sends what is left in the background), `Some(t)`
/// makes the last close wait up to `t` (whole seconds) for unsent data.
/// Setting it never waits; only a later close might, which is why the daemon
/// turns it off on every descriptor from outside ([`crate::foreign`]).
pub fn set_linger(fd: BorrowedFd<'_>, linger: Option<Duration>) -> io::Result<()> {
    let value = match linger {
        None => libc::linger { l_onoff: 0, l_linger: 0 },
        Some(t) => libc::linger { l_onoff: 1, l_linger: t.as_secs().min(libc::c_int::MAX as u64) as libc::c_int },
    };
    set(fd, libc::SOL_SOCKET, libc::SO_LINGER, &value)
}

/// Turns `SO_LINGER` off ([`set_linger`] with `None`), where it can: a
/// descriptor that is not a socket, or a socket without the option, is left
/// as it is. Never waits.
pub fn no_linger(fd: BorrowedFd<'_>) {
    let _ = set_linger(fd, None);
}

/// The socket's `SO_LINGER`: `None` when lingering is off. Never waits.
pub fn linger(fd: BorrowedFd<'_>) -> io::Result<Option<Duration>> {
    let value = get(fd, libc::SOL_SOCKET, libc::SO_LINGER, libc::linger { l_onoff: 0, l_linger: 0 })?;
    Ok((value.l_onoff != 0).then(|| Duration::from_secs(value.l_linger.max(0) as u64)))
}

/// Shuts a socket down (`shutdown(2)`): `Write`, the peer reads end of file
/// after what is in flight; `Read`, reads here return end of file; `Both`.
/// It acts on the connection, so on every copy of the descriptor, in every
/// process. A socket that is not connected (any more) has nothing to shut:
/// `Ok`. Never waits (the FIN is queued, not awaited).
pub fn shutdown(fd: BorrowedFd<'_>, how: Shutdown) -> io::Result<()> {
    let how = match how {
        Shutdown::Read => libc::SHUT_RD,
        Shutdown::Write => libc::SHUT_WR,
        Shutdown::Both => libc::SHUT_RDWR,
    };
    // SAFETY: shutdown(2) takes no pointers; fd is borrowed, so it is open.
    let rc = unsafe { libc::shutdown(fd.as_raw_fd(), how) };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::ENOTCONN) {
        Ok(())
    } else {
        Err(e)
    }
}

/// Takes the socket's pending error (`SO_ERROR`, which reading clears): for
/// a connect left under way, once the socket is writable, `None` means it
/// connected and `Some` says why it did not. Never waits.
pub fn take_error(fd: BorrowedFd<'_>) -> io::Result<Option<io::Error>> {
    let error = get_int(fd, libc::SO_ERROR)?;
    Ok((error != 0).then(|| io::Error::from_raw_os_error(error)))
}

/// `SO_PEERGROUPS` (Linux 4.13; this value on every architecture but MIPS
/// and SPARC, which streamlet does not target).
const SO_PEERGROUPS: libc::c_int = 59;

/// The supplementary groups of a Unix socket's peer, as the kernel recorded
/// them at its connect (`SO_PEERGROUPS`): neither forged nor raced by a later
/// process with its pid. Never waits.
pub fn peer_groups(fd: BorrowedFd<'_>) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut len = mem::size_of_val(groups.as_slice()) as libc::socklen_t;
        // SAFETY: groups is a live buffer of `len` bytes that the kernel
        // writes at most `len` bytes into; fd is borrowed, so it is open.
        let rc = unsafe {
            libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_PEERGROUPS, groups.as_mut_ptr().cast(), &mut len)
        };
        let wanted = len as usize / mem::size_of::<libc::gid_t>();
        if rc == 0 {
            groups.truncate(wanted);
            return Ok(groups);
        }
        let error = io::Error::last_os_error();
        // Too small: the kernel said how large (NGROUPS_MAX is 65536).
        if error.raw_os_error() == Some(libc::ERANGE) && wanted > groups.len() && wanted <= 65_536 {
            groups.resize(wanted, 0);
            continue;
        }
        return Err(error);
    }
}

/// `SO_PASSRIGHTS` (Linux 6.16): whether a Unix socket takes descriptors.
const SO_PASSRIGHTS: libc::c_int = 83;

/// Lets a Unix socket take descriptors (`SCM_RIGHTS`), or not: refused, a
/// sender's `sendmsg` with descriptors fails (`EPERM`) and none ever reaches
/// this side. Set on a listening socket, the connections it accepts start
/// so. `Ok(false)` on a kernel without the option (before 6.16). Never waits.
pub fn set_pass_rights(fd: BorrowedFd<'_>, allow: bool) -> io::Result<bool> {
    match set(fd, libc::SOL_SOCKET, SO_PASSRIGHTS, &libc::c_int::from(allow)) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `SO_PEEK_OFF`: each `MSG_PEEK` starts where the last one ended.
const SO_PEEK_OFF: libc::c_int = 42;

/// Sets a socket's peek offset (`SO_PEEK_OFF`): from `Some(n)` on, each
/// `recv` with `MSG_PEEK` looks from byte `n` of the queue and moves the
/// offset past what it saw, so successive peeks walk the queue without
/// taking it; `None` turns that off. Unix sockets have it. Never waits.
pub fn set_peek_offset(fd: BorrowedFd<'_>, offset: Option<u32>) -> io::Result<()> {
    let value: libc::c_int = offset.map_or(-1, |n| n.min(libc::c_int::MAX as u32) as libc::c_int);
    set(fd, libc::SOL_SOCKET, SO_PEEK_OFF, &value)
}

/// An integer `SOL_SOCKET` option.
fn get_int(fd: BorrowedFd<'_>, option: libc::c_int) -> io::Result<libc::c_int> {
    get(fd, libc::SOL_SOCKET, option, 0)
}

/// Plain C values that an option is read into or set from: any bit pattern
/// of their size is one of them.
trait OptionValue: Copy {}
impl OptionValue for libc::c_int {}
impl OptionValue for u64 {}
impl OptionValue for libc::linger {}

/// `getsockopt(2)` of one option into a `T`, starting from `value`.
fn get<T: OptionValue>(fd: BorrowedFd<'_>, level: libc::c_int, option: libc::c_int, mut value: T) -> io::Result<T> {
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: value is a live T of `len` bytes, valid for writes, and the
    // kernel writes at most `len` bytes; every bit pattern is a valid T
    // (OptionValue); fd is borrowed, so it is open.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), level, option, (&mut value as *mut T).cast(), &mut len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// `setsockopt(2)` of one option from a `T`.
fn set<T: OptionValue>(fd: BorrowedFd<'_>, level: libc::c_int, option: libc::c_int, value: &T) -> io::Result<()> {
    let len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: value is a live T of `len` bytes that the kernel only reads;
    // fd is borrowed, so it is open.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), level, option, (value as *const T).cast(), len) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
