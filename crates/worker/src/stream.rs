//! A client connection as a streamlet holds it: async, and counted.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use streamlet_proto::channel::set_nonblocking;
use streamlet_proto::sock;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes through a stream so far, shared between the handler's task and the
/// runtime that reports them.
#[derive(Debug, Default)]
pub struct Counters {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// Microseconds its writes waited for the stream's rate (worker pacing).
    pub stalled_us: Arc<AtomicU64>,
    /// Frames that failed their check (`framing = "crc32c"`).
    pub corrupt_frames: AtomicU64,
}

impl Counters {
    pub fn snapshot(&self) -> (u64, u64) {
        (self.bytes_in.load(Ordering::Relaxed), self.bytes_out.load(Ordering::Relaxed))
    }
}

/// The client connection of one stream. Every byte read or written is
/// counted, and writes to a socket the kernel does not pace follow the
/// stream's rate (see `pacer.rs`).
#[derive(Debug)]
pub struct Stream {
    fd: AsyncFd<OwnedFd>,
    counters: Arc<Counters>,
    pacer: Option<crate::pacer::Pacer>,
    /// Reads from the client at most this fast (`ingress_limit`).
    read_pacer: Option<crate::pacer::Pacer>,
}

impl Stream {
    /// Takes a connected stream socket (the daemon checked that it is one).
    pub fn new(fd: OwnedFd, counters: Arc<Counters>) -> io::Result<Self> {
        set_nonblocking(fd.as_fd(), true)?;
        // SAFETY: an OwnedFd stays open with the same raw number until it is
        // dropped, which happens only with the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd, counters, pacer: None, read_pacer: None })
    }

    /// Paces writes at `rate` (bytes per second, 0 for none, read at each
    /// write) unless the kernel paces the socket (plain TCP, whose
    /// `SO_MAX_PACING_RATE` the daemon sets): the daemon asks the same
    /// question, [`sock::kernel_paces`], so every stream is paced once.
    pub(crate) fn pace(&mut self, rate: Arc<AtomicU64>) {
        if !sock::kernel_paces(self.fd.get_ref().as_fd()) {
            self.pacer = Some(crate::pacer::Pacer::new(rate, self.counters.stalled_us.clone()));
        }
    }

    /// Whether nothing in the streamlet holds its bytes back (no token bucket
    /// either way): a copy may then bypass it (`splice`).
    pub(crate) fn unpaced(&self) -> bool {
        self.pacer.is_none() && self.read_pacer.is_none()
    }

    /// Reads at most `rate` bytes per second from the client.
    pub(crate) fn limit_reads(&mut self, rate: u64) {
        let rate = Arc::new(AtomicU64::new(rate));
        self.read_pacer = Some(crate::pacer::Pacer::new(rate, Arc::new(AtomicU64::new(0))));
    }

    /// Waits until the socket is writable (for a connection still being
    /// made: until it is made, or has failed).
    pub async fn writable(&self) -> io::Result<()> {
        let mut guard = self.fd.writable().await?;
        guard.retain_ready();
        Ok(())
    }

    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

impl AsFd for Stream {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }
}

fn cvt(n: libc::ssize_t) -> io::Result<usize> {
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

impl AsyncRead for Stream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let allowed = match self.read_pacer.as_mut() {
            Some(pacer) => ready!(pacer.poll_allow(cx, buf.remaining())),
            None => buf.remaining(),
        };
        loop {
            let mut guard = ready!(self.fd.poll_read_ready(cx))?;
            let unfilled = &mut buf.initialize_unfilled()[..allowed];
            let result = guard.try_io(|inner| {
                // SAFETY: unfilled is a live, writable buffer of the length given.
                cvt(unsafe { libc::read(inner.as_raw_fd(), unfilled.as_mut_ptr().cast(), unfilled.len()) })
            });
            match result {
                Ok(Ok(n)) => {
                    buf.advance(n);
                    self.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(pacer) = self.read_pacer.as_mut() {
                        pacer.spend(n);
                    }
                    return Poll::Ready(Ok(()));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let allowed = match self.pacer.as_mut() {
            Some(pacer) => ready!(pacer.poll_allow(cx, data.len())),
            None => data.len(),
        };
        let data = &data[..allowed];
        loop {
            let mut guard = ready!(self.fd.poll_write_ready(cx))?;
            let result = guard.try_io(|inner| {
                // SAFETY: data is a live buffer of the length given; MSG_NOSIGNAL
                // turns a closed peer into EPIPE instead of SIGPIPE.
                cvt(unsafe { libc::send(inner.as_raw_fd(), data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) })
            });
            match result {
                Ok(Ok(n)) => {
                    self.counters.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                    if let Some(pacer) = self.pacer.as_mut() {
                        pacer.spend(n);
                    }
                    return Poll::Ready(Ok(n));
                }
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Poll::Ready(Err(e)),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    /// Shuts the write side down: the client reads end of file.
    /// (Already closed by the peer: nothing left to shut, `Ok`.)
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(sock::shutdown(self.fd.get_ref().as_fd(), std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::OwnedFd;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    use super::*;

    fn paced(fd: OwnedFd) -> bool {
        let mut stream = Stream::new(fd, Arc::default()).unwrap();
        stream.pace(Arc::new(AtomicU64::new(1000)));
        !stream.unpaced()
    }

    /// The streamlet paces what the kernel does not: a Unix stream gets a
    /// token bucket, plain TCP none (the daemon set its socket's pacing).
    /// The rule is `sock::kernel_paces`, the daemon's too.
    #[tokio::test]
    async fn the_streamlet_paces_what_the_kernel_does_not() {
        let (unix, _peer) = std::os::unix::net::UnixStream::pair().unwrap();
        assert!(paced(unix.into()));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tcp = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(!paced(tcp.into()));
    }
}
