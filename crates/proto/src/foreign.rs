//! Descriptors that came from outside, and the threads that close them.
//!
//! Closing a descriptor can block the thread that closes it, for as long as
//! whoever made the file chose: the last close of a TCP socket with
//! `SO_LINGER` on and unsent data waits up to its linger time (the peer can
//! hold its window shut that long); the last close of a file on FUSE or NFS
//! waits for its server; a terminal waits for its output to drain; and
//! closing a Unix socket closes every descriptor still queued in it, with the
//! same effects, on the same thread. A peer that hands the daemon a
//! descriptor chooses which of these it is, and the daemon has one thread.
//!
//! So a descriptor received from a peer is a [`ForeignFd`], and dropping one
//! never closes it on the dropping thread: lingering is turned off (a
//! `setsockopt`, which never blocks; the peer may turn it on again through its
//! own copy, so this is only the first line) and the descriptor goes to the
//! closer, a few threads that do nothing else. There every descriptor queued in
//! a Unix socket is looked up first ([`defuse`], with `MSG_PEEK`: the queue
//! is not taken) and made cheap in turn, so a lingering socket hidden inside
//! one costs nothing either. A close that still blocks (a file on a stalled FUSE mount) holds
//! up one closer: another is started while every one is stuck in a close
//! begun over [`STUCK_AFTER`] ago, up to [`MAX_CLOSERS`]. What is held and
//! not yet closed is counted ([`held`], [`closing`]), so the daemon can keep
//! its descriptor budget and stop reading peers while closes back up.
//!
//! ```
//! use streamlet_proto::foreign::{self, ForeignFd};
//!
//! let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
//! let fd = ForeignFd::new(theirs.into());
//! drop(fd); // closed on a closer thread, never here
//! foreign::wait_idle(std::time::Duration::from_secs(5));
//! # drop(mine);
//! ```

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::sock;

/// Closer threads at most; beyond, closes queue behind the stuck ones.
pub const MAX_CLOSERS: usize = 64;

/// A close running this long counts as stuck: the next descriptor queued
/// starts another closer (while there are fewer than [`MAX_CLOSERS`]).
pub const STUCK_AFTER: Duration = Duration::from_millis(100);

/// How long an idle closer lets descriptors gather before it sleeps for
/// good: closes at a high rate are then taken in batches, and the thread
/// that queues them rarely has to wake one.
const GATHER: Duration = Duration::from_millis(1);

/// Descriptors wrapped and not yet closed.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// A descriptor received from a peer (a gateway's client connection, one a
/// streamlet sent where it should not): it is never closed on the thread
/// that drops it. See the [module docs](self).
#[derive(Debug)]
pub struct ForeignFd(Option<OwnedFd>);

impl ForeignFd {
    /// Takes charge of `fd`, which was just received.
    pub fn new(fd: OwnedFd) -> Self {
        HELD.fetch_add(1, Ordering::AcqRel);
        Self(Some(fd))
    }

    /// Gives the descriptor back to a caller that takes over its closing
    /// (one whose close cannot block anyone that matters).
    pub fn into_owned(mut self) -> OwnedFd {
        HELD.fetch_sub(1, Ordering::AcqRel);
        self.0.take().expect("a ForeignFd holds its descriptor until dropped")
    }

    /// A duplicate (`F_DUPFD_CLOEXEC`), itself foreign.
    pub fn try_clone(&self) -> std::io::Result<ForeignFd> {
        Ok(ForeignFd::new(self.as_fd().try_clone_to_owned()?))
    }
}

impl AsFd for ForeignFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_ref().expect("a ForeignFd holds its descriptor until dropped").as_fd()
    }
}

impl AsRawFd for ForeignFd {
    fn as_raw_fd(&self) -> RawFd {
        self.as_fd().as_raw_fd()
    }
}

impl Drop for ForeignFd {
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            // Counted in HELD until the closer has closed it.
            closer().queue(fd);
        }
    }
}

/// Closes `fd` on a closer thread (turning lingering off first), never on
/// this one; for descriptors from outside that were never wrapped.
pub fn dispose(fd: OwnedFd) {
    drop(ForeignFd::new(fd));
}

/// Descriptors from outside that the process holds now: wrapped in a
/// [`ForeignFd`], or queued for a closer and not closed yet.
pub fn held() -> usize {
    HELD.load(Ordering::Acquire)
}

/// Descriptors waiting for (or inside) a close.
pub fn closing() -> usize {
    CLOSER.get().map_or(0, |c| c.lock().queue.len() + c.active.load(Ordering::Acquire))
}

/// Waits until every queued descriptor is closed, at most `limit`; whether
/// they all were. For tests and an orderly exit.
pub fn wait_idle(limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while closing() > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Makes the close of `fd` cheap, as far as the daemon can: lingering off;
/// and if it is a Unix socket, every descriptor queued in it (closing the
/// socket would close those, a lingering TCP socket among them, on the
/// closing thread) is found and made cheap in turn, a socket queued inside a
/// socket too (the kernel nests them at most four deep). The queue is only
/// looked at (`MSG_PEEK`, from an offset that moves on), never read: the
/// socket may be a client's connection that its gateway still uses, whose
/// bytes are not the daemon's to take. At most [`MAX_DRAIN_READS`] looks per
/// socket.
pub fn defuse(fd: BorrowedFd<'_>) {
    defuse_nested(fd, MAX_NESTING);
}

/// Looks into a Unix socket's queue [`defuse`] makes, at most.
pub const MAX_DRAIN_READS: usize = 1024;

/// How deep [`defuse`] looks into sockets queued inside sockets.
const MAX_NESTING: u32 = 5;

fn defuse_nested(fd: BorrowedFd<'_>, depth: u32) {
    sock::no_linger(fd);
    let unix = sock::kind(fd).ok().flatten().is_some_and(|k| k.is_unix());
    if depth == 0 || !unix || sock::set_peek_offset(fd, Some(0)).is_err() {
        return;
    }
    let mut buf = [0u8; 512];
    let mut found = Vec::new();
    for _ in 0..MAX_DRAIN_READS {
        let flags = libc::MSG_PEEK | libc::MSG_DONTWAIT;
        match crate::fdpass::recv_with_fds_flags(fd, &mut buf, &mut found, flags) {
            // (Nothing more, or the end.)
            Ok(got) if got.bytes == 0 && found.is_empty() => break,
            Ok(_) => {}
            Err(_) => break,
        }
        // Copies of what is queued: each made cheap, then let go (the
        // queue still holds it).
        for inner in found.drain(..) {
            defuse_nested(inner.as_fd(), depth - 1);
        }
    }
    let _ = sock::set_peek_offset(fd, None);
}

#[derive(Debug, Default)]
struct Queue {
    queue: VecDeque<OwnedFd>,
    /// Threads started.
    threads: usize,
    /// Threads waiting on `ready`.
    sleeping: usize,
}

#[derive(Debug)]
struct Closer {
    state: Mutex<Queue>,
    ready: Condvar,
    /// Descriptors taken off the queue and being closed.
    active: AtomicUsize,
    /// For each thread, when its current close began (microseconds since
    /// `epoch`, plus one), or 0 when it is not in a close.
    started: [AtomicU64; MAX_CLOSERS],
    epoch: Instant,
}

static CLOSER: OnceLock<Closer> = OnceLock::new();

fn closer() -> &'static Closer {
    CLOSER.get_or_init(|| Closer {
        state: Mutex::new(Queue::default()),
        ready: Condvar::new(),
        active: AtomicUsize::new(0),
        started: std::array::from_fn(|_| AtomicU64::new(0)),
        epoch: Instant::now(),
    })
}

impl Closer {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    fn queue(&'static self, fd: OwnedFd) {
        sock::no_linger(fd.as_fd());
        let mut state = self.lock();
        state.queue.push_back(fd);
        if state.sleeping > 0 {
            drop(state);
            self.ready.notify_one();
            return;
        }
        if state.threads < MAX_CLOSERS && self.all_stuck(state.threads) {
            let index = state.threads;
            let spawned = std::thread::Builder::new().name("streamlet-close".into()).spawn(move || self.run(index));
            // Without a new thread the queue waits for a running one.
            if spawned.is_ok() {
                state.threads += 1;
            }
        }
    }

    /// Whether every running closer is in a close begun over
    /// [`STUCK_AFTER`] ago (true when none runs).
    fn all_stuck(&self, threads: usize) -> bool {
        let now = self.now_us();
        let stuck = STUCK_AFTER.as_micros() as u64;
        self.started[..threads].iter().all(|s| {
            let began = s.load(Ordering::Acquire);
            began != 0 && now.saturating_sub(began) >= stuck
        })
    }

    fn run(&self, index: usize) {
        let mut state = self.lock();
        loop {
            if let Some(fd) = state.queue.pop_front() {
                self.active.fetch_add(1, Ordering::AcqRel);
                self.started[index].store(self.now_us(), Ordering::Release);
                drop(state);
                defuse(fd.as_fd());
                drop(fd);
                self.started[index].store(0, Ordering::Release);
                self.active.fetch_sub(1, Ordering::AcqRel);
                HELD.fetch_sub(1, Ordering::AcqRel);
                state = self.lock();
                continue;
            }
            // Let a batch gather, then sleep until woken.
            drop(state);
            std::thread::sleep(GATHER);
            state = self.lock();
            if state.queue.is_empty() {
                state.sleeping += 1;
                state = self.ready.wait(state).unwrap_or_else(|p| p.into_inner());
                state.sleeping -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::unix::net::UnixStream;

    use super::*;

    /// The peer of a socket dropped as foreign reads end of file: it was
    /// closed, somewhere else.
    #[test]
    fn a_dropped_foreign_descriptor_is_closed() {
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        drop(ForeignFd::new(theirs.into()));
        mine.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(mine.read(&mut [0u8; 1]).unwrap(), 0);
    }

    /// A TCP client with `SO_LINGER` on for `secs` and a send queue its peer
    /// never reads: its last close waits out the linger time.
    fn lingering_tcp(secs: u64) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_nonblocking(true).unwrap();
        let chunk = vec![0u8; 65536];
        while (&client).write(&chunk).is_ok() {}
        sock::set_linger(client.as_fd(), Some(Duration::from_secs(secs))).unwrap();
        (client, server)
    }

    #[test]
    fn lingering_is_turned_off_before_the_close() {
        let (client, _server) = lingering_tcp(30);
        let started = Instant::now();
        drop(ForeignFd::new(client.into()));
        assert!(wait_idle(Duration::from_secs(5)), "closed at once, lingering being off");
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    /// Closing a Unix socket closes what is queued in it: here a lingering
    /// TCP socket that no `setsockopt` of ours reached, queued in a socket
    /// queued in another. Emptied first, neither costs the closer anything.
    #[test]
    fn a_lingering_socket_queued_inside_sockets_is_found_and_defused() {
        let (client, _server) = lingering_tcp(30);
        let (a, b) = UnixStream::pair().unwrap();
        assert_eq!(crate::fdpass::send_with_fds(a.as_fd(), b"x", &[client.as_fd()]).unwrap(), 1);
        drop(client);
        let (c, d) = UnixStream::pair().unwrap();
        assert_eq!(crate::fdpass::send_with_fds(c.as_fd(), b"y", &[b.as_fd()]).unwrap(), 1);
        drop(b);
        let started = Instant::now();
        drop(ForeignFd::new(d.into()));
        assert!(started.elapsed() < Duration::from_millis(50), "the caller waited {:?}", started.elapsed());
        assert!(wait_idle(Duration::from_secs(5)), "the closer closed it all at once");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop((a, c));
    }

    /// A Unix socket with more queued than the closer reads
    /// (`MAX_DRAIN_READS`, then the close closes the rest), the last a
    /// lingering TCP socket: its close blocks a closer thread, not the caller,
    /// and not the closes queued after it. (The queue's length needs
    /// `SO_SNDBUFFORCE`: root.)
    #[test]
    fn a_close_that_blocks_holds_up_one_closer_only() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_none(), "needs root");
            eprintln!("skipping: needs root (SO_SNDBUFFORCE)");
            return;
        }
        let (client, _server) = lingering_tcp(2);
        let (a, b) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let big: libc::c_int = 64 << 20;
        // SAFETY: setsockopt from a c_int of the size given.
        let rc = unsafe {
            libc::setsockopt(
                a.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUFFORCE,
                (&big as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        for _ in 0..MAX_DRAIN_READS + 16 {
            a.send(b"x").unwrap();
        }
        assert_eq!(crate::fdpass::send_with_fds(a.as_fd(), b"x", &[client.as_fd()]).unwrap(), 1);
        drop(client);
        let started = Instant::now();
        drop(ForeignFd::new(b.into()));
        assert!(started.elapsed() < Duration::from_millis(50), "the caller waited {:?}", started.elapsed());
        std::thread::sleep(STUCK_AFTER + Duration::from_millis(50));
        assert!(closing() >= 1, "a closer is stuck in that close");
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let queued = Instant::now();
        drop(ForeignFd::new(theirs.into()));
        mine.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        assert_eq!(mine.read(&mut [0u8; 1]).unwrap(), 0, "closed by another closer");
        assert!(queued.elapsed() < Duration::from_secs(1));
        drop(a);
        assert!(wait_idle(Duration::from_secs(10)));
    }

    /// A client's connection the daemon lets go may still be its gateway's:
    /// looking into its queue takes nothing from it, and leaves it open.
    #[test]
    fn defusing_takes_nothing_from_the_queue() {
        let (a, b) = UnixStream::pair().unwrap();
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(crate::fdpass::send_with_fds(a.as_fd(), b"hello", &[r.as_fd()]).unwrap(), 5);
        (&a).write_all(b" world").unwrap();
        defuse(b.as_fd());
        let mut buf = [0u8; 64];
        let mut fds = Vec::new();
        let got = crate::fdpass::recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap();
        assert_eq!(&buf[..got.bytes], b"hello");
        assert_eq!(fds.len(), 1, "the descriptor is still there");
        let mut rest = [0u8; 6];
        (&b).read_exact(&mut rest).unwrap();
        assert_eq!(&rest, b" world");
        (&b).write_all(b"!").unwrap();
        let mut back = [0u8; 1];
        (&a).read_exact(&mut back).unwrap();
        assert_eq!(&back, b"!", "still open both ways");
    }

    #[test]
    fn into_owned_hands_the_descriptor_back() {
        let (_mine, theirs) = UnixStream::pair().unwrap();
        let raw = theirs.as_raw_fd();
        let fd = ForeignFd::new(theirs.into());
        let back = fd.into_owned();
        assert_eq!(back.as_raw_fd(), raw);
    }
}
