//! `relay`: joins each stream to its upstream, copying both ways.
//!
//! A streamlet has no network of its own: the daemon opens the upstream
//! connection (to an address of the pool's `upstream_allow`) and hands it
//! over with the stream. When the streamlet paces nothing itself (a TCP
//! client, which the kernel paces, without `ingress_limit`) and the stream is
//! not framed, the bytes move socket to socket with `splice(2)` through a
//! pipe, never copied into the streamlet; otherwise they go through
//! [`Stream`], counted and paced. Either way they are counted. When either
//! side ends its input, the other side's output is shut down after what is in
//! flight; the first failure in either direction ends the stream.

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::handler::{BoxFuture, Handler, HandlerError, HandlerResult, StreamContext};
use std::sync::atomic::Ordering;

use streamlet_proto::worker::OnCorrupt;

use crate::framed::{read_frame, write_frame, Frame};
use crate::stream::{Counters, Stream};

#[derive(Debug, Clone, Copy, Default)]
pub struct Relay {
    /// `framing = "crc32c"`: both directions carry frames, each checked, and
    /// a corrupt one ends the stream or is dropped (and counted).
    pub framing: Option<OnCorrupt>,
}

impl Handler for Relay {
    fn serve(&self, client: Stream, ctx: StreamContext) -> BoxFuture<HandlerResult> {
        let self_framing = self.framing;
        Box::pin(async move {
            let upstream = ctx
                .upstream
                .as_ref()
                .ok_or_else(|| HandlerError::Failed("no upstream connection came with the stream".into()))?;
            let upstream: OwnedFd = upstream.as_fd().try_clone_to_owned()?;
            // The upstream is counted apart; only the client's side is the stream's.
            let mut upstream = Stream::new(upstream, Default::default())?;
            wait_connected(&upstream).await.map_err(|e| HandlerError::Failed(format!("upstream: {e}")))?;
            if self_framing.is_none() && client.unpaced() {
                return splice::relay(&client, &upstream).await;
            }
            let counters = client.counters().clone();
            let (mut from_client, mut to_client) = tokio::io::split(client);
            let (mut from_upstream, mut to_upstream) = tokio::io::split(&mut upstream);
            let framing = self_framing;
            let up = pipe(&mut from_client, &mut to_upstream, framing, &counters);
            let down = pipe(&mut from_upstream, &mut to_client, framing, &counters);
            // The first failure in either direction ends the stream.
            tokio::try_join!(up, down)?;
            Ok(())
        })
    }
}

/// Copies until end of input (frame by frame when framed), then shuts the
/// writer's side down.
async fn pipe<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    framing: Option<OnCorrupt>,
    counters: &Counters,
) -> Result<(), HandlerError> {
    match framing {
        None => {
            tokio::io::copy(reader, writer).await?;
        }
        Some(on_corrupt) => loop {
            match read_frame(reader).await? {
                Frame::Valid(payload) => write_frame(writer, &payload).await?,
                Frame::End => break,
                Frame::Corrupt { expected, found } => {
                    if on_corrupt == OnCorrupt::End {
                        return Err(HandlerError::Corrupt(format!(
                            "CRC32C {found:08x} where the payload's is {expected:08x}"
                        )));
                    }
                    counters.corrupt_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
    }
    writer.shutdown().await?;
    Ok(())
}

/// A non-blocking connect the daemon started completes, or fails, here.
async fn wait_connected(upstream: &Stream) -> std::io::Result<()> {
    upstream.writable().await?;
    match streamlet_proto::sock::take_error(upstream.as_fd())? {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

mod splice {
    //! Socket to socket through a pipe, with `splice(2)`: the bytes never
    //! enter the streamlet's memory.

    use std::io;
    use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
    use std::sync::atomic::{AtomicU64, Ordering};

    use tokio::io::unix::AsyncFd;

    use crate::handler::HandlerResult;
    use crate::stream::Stream;

    /// At most this much in flight per direction.
    const CHUNK: usize = 64 * 1024;

    pub async fn relay(client: &Stream, upstream: &Stream) -> HandlerResult {
        // Registered again under descriptors of their own; the `Stream`s
        // stay idle meanwhile.
        let c = register(client.as_fd().try_clone_to_owned()?)?;
        let u = register(upstream.as_fd().try_clone_to_owned()?)?;
        let counters = client.counters();
        let up = direction(&c, &u, &counters.bytes_in);
        let down = direction(&u, &c, &counters.bytes_out);
        tokio::try_join!(up, down)?;
        Ok(())
    }

    /// From `src` to `dst` until `src`'s end of input, then `dst`'s write
    /// side is shut down. Counts what left `src` into `counter`.
    async fn direction(src: &AsyncFd<OwnedFd>, dst: &AsyncFd<OwnedFd>, counter: &AtomicU64) -> io::Result<()> {
        let (pipe_r, pipe_w) = pipe()?;
        loop {
            let n = loop {
                let mut guard = src.readable().await?;
                match guard.try_io(|fd| splice(fd.as_raw_fd(), pipe_w.as_raw_fd(), CHUNK)) {
                    Ok(result) => break result?,
                    Err(_would_block) => continue,
                }
            };
            if n == 0 {
                // (A peer already gone has nothing left to shut.)
                let _ = streamlet_proto::sock::shutdown(dst.get_ref().as_fd(), std::net::Shutdown::Write);
                return Ok(());
            }
            counter.fetch_add(n as u64, Ordering::Relaxed);
            let mut left = n;
            while left > 0 {
                let mut guard = dst.writable().await?;
                match guard.try_io(|fd| splice(pipe_r.as_raw_fd(), fd.as_raw_fd(), left)) {
                    Ok(result) => left -= result?,
                    Err(_would_block) => continue,
                }
            }
        }
    }

    fn register(fd: OwnedFd) -> io::Result<AsyncFd<OwnedFd>> {
        // SAFETY: an OwnedFd keeps its number until dropped, with the AsyncFd.
        unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)
    }

    fn splice(from: i32, to: i32, len: usize) -> io::Result<usize> {
        // SAFETY: splice(2) between descriptors we hold, no offsets.
        let n = unsafe {
            libc::splice(
                from,
                std::ptr::null_mut(),
                to,
                std::ptr::null_mut(),
                len,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }

    fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 into an array of two.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: two descriptors just created, each owned once.
        Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
    }
}
