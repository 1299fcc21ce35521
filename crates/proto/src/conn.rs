//! Frames over a `SOCK_STREAM` Unix socket, with descriptors alongside.
//!
//! A descriptor belongs to the frame whose bytes carried it. The kernel hands
//! a descriptor to the `recvmsg` that reads the first bytes of the `sendmsg`
//! it came with, and that read ends inside those bytes (it never reads past
//! the message that carried descriptors). So the last byte of that read,
//! counted from the start of the stream, lies in the sender's frame: the
//! reader tags each descriptor with it, a frame takes only a descriptor tagged
//! inside its own bytes ([`FrameReader::take_fd`]), and descriptors that came
//! with a frame that did not take them are closed when the next frame is read.
//! A sender attaches each descriptor to a `sendmsg` that carries bytes of its
//! own frame and of no other (the simplest: the whole frame in one call).
//!
//! Every descriptor received is a [`ForeignFd`]: the reader never closes one
//! on its own thread (see [`crate::foreign`]). A reader told not to accept
//! descriptors ([`FrameReader::set_accept_fds`]) disposes of them as they
//! come. When the kernel had to drop descriptors (the receiver's table was
//! full), the frame they came with takes [`Attached::Lost`] instead.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::fdpass::{recv_with_fds, send_with_fds};
use crate::foreign::ForeignFd;
use crate::frame::{FrameBuf, FrameError};

/// The most received descriptors waiting for their frames. (A sender that
/// attaches each descriptor to its own frame has at most one waiting: a
/// read never goes past the bytes of a `sendmsg` that carried descriptors.)
pub const MAX_QUEUED_FDS: usize = 16;

/// What came attached to a frame.
#[derive(Debug)]
pub enum Attached {
    /// No descriptor.
    None,
    Fd(ForeignFd),
    /// One came, but the kernel dropped it: the receiver's descriptor table
    /// was full (`MSG_CTRUNC`).
    Lost,
}

const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reading the socket: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("more than {MAX_QUEUED_FDS} descriptors sent without the frames that take them")]
    TooManyFds,
    #[error("frame not finished within {0:?} of its first byte")]
    FrameTimeout(Duration),
}

/// The reading half: whole frames out, descriptors queued.
#[derive(Debug)]
pub struct FrameReader {
    half: OwnedReadHalf,
    buf: FrameBuf,
    scratch: Box<[u8]>,
    /// Received descriptors, each tagged with the stream offset of the last
    /// byte of the read that brought it (`None`: the kernel dropped it).
    fds: VecDeque<(u64, Option<ForeignFd>)>,
    /// Whether descriptors are kept for their frames, or disposed of.
    accept_fds: bool,
    /// Stream offsets `[start, end)` of the frame last returned.
    frame: (u64, u64),
    max_frame: u32,
    /// How long a begun frame may take to finish; `None`: forever.
    frame_timeout: Option<Duration>,
    /// When the frame now being received began to arrive.
    frame_started: Option<tokio::time::Instant>,
}

impl FrameReader {
    pub fn new(half: OwnedReadHalf, max_frame: u32) -> Self {
        Self {
            half,
            buf: FrameBuf::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            fds: VecDeque::new(),
            accept_fds: true,
            frame: (0, 0),
            max_frame,
            frame_timeout: None,
            frame_started: None,
        }
    }

    /// Bounds the time from a frame's first byte to its last: a peer that
    /// starts a frame and stalls gets [`ReadError::FrameTimeout`].
    pub fn set_frame_timeout(&mut self, timeout: Option<Duration>) {
        self.frame_timeout = timeout;
    }

    pub fn set_max_frame(&mut self, max_frame: u32) {
        self.max_frame = max_frame;
    }

    /// Whether to keep descriptors for the frames that take them (the
    /// default), or dispose of each as it comes (a peer that may not send
    /// any: before the handshake, or without the right to open streams).
    pub fn set_accept_fds(&mut self, accept: bool) {
        self.accept_fds = accept;
        if !accept {
            self.fds.clear();
        }
    }

    /// Descriptors received and waiting for their frames.
    pub fn queued_fds(&self) -> usize {
        self.fds.len()
    }

    /// The next frame's payload; `None` at a clean end of file (between frames).
    ///
    /// Cancel-safe: bytes and descriptors received before a cancellation are
    /// kept for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        let mut received: Vec<OwnedFd> = Vec::new();
        loop {
            let start = self.buf.consumed();
            if let Some(frame) = self.buf.next_frame(self.max_frame)? {
                self.frame_started = None;
                self.frame = (start, self.buf.consumed());
                // Descriptors of earlier frames that did not take them.
                while self.fds.front().is_some_and(|(tag, _)| *tag < start) {
                    self.fds.pop_front();
                }
                return Ok(Some(frame));
            }
            let deadline = match (self.frame_timeout, self.buf.pending() > 0) {
                (Some(timeout), true) => {
                    Some(*self.frame_started.get_or_insert_with(tokio::time::Instant::now) + timeout)
                }
                _ => None,
            };
            let stream = self.half.as_ref();
            let scratch = &mut self.scratch;
            let recv = stream.async_io(Interest::READABLE, || recv_with_fds(stream.as_fd(), scratch, &mut received));
            let got = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, recv).await {
                    Ok(got) => got,
                    Err(_) => return Err(ReadError::FrameTimeout(self.frame_timeout.unwrap_or_default())),
                },
                None => recv.await,
            };
            let got = match got {
                Ok(got) => got,
                Err(e) => {
                    received.drain(..).for_each(crate::foreign::dispose);
                    return Err(e.into());
                }
            };
            let fds = received.drain(..).map(ForeignFd::new);
            let (n, lost) = (got.bytes, got.fds_lost);
            self.buf.extend(&self.scratch[..n]);
            let tag = self.buf.received().saturating_sub(1);
            if self.accept_fds {
                self.fds.extend(fds.map(|fd| (tag, Some(fd))));
                if lost {
                    self.fds.push_back((tag, None));
                }
            } else {
                fds.for_each(drop);
            }
            if self.fds.len() > MAX_QUEUED_FDS {
                self.fds.clear();
                return Err(ReadError::TooManyFds);
            }
            if n == 0 {
                self.buf.finish()?;
                return Ok(None);
            }
        }
    }

    /// Resolves when the peer has closed its side (end of file), without
    /// consuming anything; never resolves while it has sent more bytes (a
    /// request waiting to be read). For a reader that must not read now.
    pub async fn peer_hung_up(&self) {
        let stream = self.half.as_ref();
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            let mut byte = [0u8; 1];
            let peeked = stream.try_io(Interest::READABLE, || {
                // SAFETY: a peek of at most one byte into a live buffer.
                let n = unsafe {
                    libc::recv(
                        std::os::fd::AsRawFd::as_raw_fd(&stream.as_fd()),
                        byte.as_mut_ptr().cast(),
                        1,
                        libc::MSG_PEEK | libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n)
                }
            });
            match peeked {
                Ok(0) => return,
                Ok(_) => std::future::pending::<()>().await,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(_) => return,
            }
        }
    }

    /// Whether part of a frame has been received.
    pub fn in_frame(&self) -> bool {
        self.buf.pending() > 0
    }

    /// The socket this reads from.
    pub fn socket(&self) -> BorrowedFd<'_> {
        self.half.as_ref().as_fd()
    }

    /// Bytes received and not yet returned as frames: the next frame may be
    /// served from them without touching the socket (a pipelining peer).
    pub fn buffered(&self) -> usize {
        self.buf.pending()
    }

    /// The descriptor that came with the frame last returned, if one did.
    pub fn take_fd(&mut self) -> Attached {
        let (start, end) = self.frame;
        while self.fds.front().is_some_and(|(tag, _)| *tag < start) {
            self.fds.pop_front();
        }
        match self.fds.front() {
            Some((tag, _)) if *tag < end => match self.fds.pop_front() {
                Some((_, Some(fd))) => Attached::Fd(fd),
                _ => Attached::Lost,
            },
            _ => Attached::None,
        }
    }
}

/// The writing half.
#[derive(Debug)]
pub struct FrameWriter {
    half: OwnedWriteHalf,
}

impl FrameWriter {
    pub fn new(half: OwnedWriteHalf) -> Self {
        Self { half }
    }

    /// Writes a whole frame (header included, as [`Encoding::encode_frame`](crate::Encoding::encode_frame) makes it).
    pub async fn write_frame(&mut self, frame: &[u8]) -> io::Result<()> {
        self.half.write_all(frame).await
    }

    /// Writes a whole frame with `fd` attached to its first bytes.
    pub async fn write_frame_with_fd(&mut self, frame: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
        let stream = self.half.as_ref();
        let sent = stream.async_io(Interest::WRITABLE, || send_with_fds(stream.as_fd(), frame, &[fd])).await?;
        self.half.write_all(&frame[sent..]).await
    }

    /// Shuts the write side down: the peer reads end of file.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        self.half.shutdown().await
    }
}

#[cfg(test)]
mod tests {
    use tokio::net::UnixStream;

    use super::*;
    use crate::frame::header;

    #[tokio::test]
    async fn frames_and_fds_arrive_in_order() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_ar, aw) = a.into_split();
        let (br, _bw) = b.into_split();
        let mut writer = FrameWriter::new(aw);
        let mut reader = FrameReader::new(br, 1024);
        let (one, _one_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut frame = header(3).to_vec();
        frame.extend_from_slice(b"abc");
        writer.write_frame_with_fd(&frame, one.as_fd()).await.unwrap();
        writer.write_frame(&frame).await.unwrap();
        drop(writer);
        assert_eq!(reader.read_frame().await.unwrap().unwrap(), b"abc");
        assert!(matches!(reader.take_fd(), Attached::Fd(_)));
        assert_eq!(reader.read_frame().await.unwrap().unwrap(), b"abc");
        assert!(matches!(reader.take_fd(), Attached::None));
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    /// A frame sent without its descriptor does not take the next frame's,
    /// and a descriptor sent with a frame that does not take it is closed.
    #[tokio::test]
    async fn descriptors_pair_with_the_frame_that_carried_them() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_ar, aw) = a.into_split();
        let (br, _bw) = b.into_split();
        let mut writer = FrameWriter::new(aw);
        let mut reader = FrameReader::new(br, 1024);
        let frame = |byte: u8| {
            let mut f = header(3).to_vec();
            f.extend_from_slice(&[byte; 3]);
            f
        };
        let (x, x_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let (y, _y_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        writer.write_frame(&frame(1)).await.unwrap(); // no descriptor
        writer.write_frame_with_fd(&frame(2), x.as_fd()).await.unwrap(); // not taken
        writer.write_frame_with_fd(&frame(3), y.as_fd()).await.unwrap();
        let y_inode = inode(y.as_fd());
        drop((x, y));
        drop(writer);
        assert_eq!(reader.read_frame().await.unwrap().unwrap(), [1; 3]);
        assert!(matches!(reader.take_fd(), Attached::None), "frame 1 must not take frame 2's descriptor");
        assert_eq!(reader.read_frame().await.unwrap().unwrap(), [2; 3]);
        assert_eq!(reader.read_frame().await.unwrap().unwrap(), [3; 3]);
        let Attached::Fd(fd) = reader.take_fd() else { panic!("frame 3's own descriptor") };
        assert_eq!(inode(fd.as_fd()), y_inode, "the descriptor taken is the one sent with frame 3");
        // Frame 2's descriptor was closed: its peer reads end of file.
        x_peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(std::io::Read::read(&mut &x_peer, &mut [0u8; 1]).unwrap(), 0);
    }

    /// A reader that accepts no descriptors closes each as it comes, and
    /// reads the frames all the same.
    #[tokio::test]
    async fn a_reader_that_accepts_no_descriptors_disposes_of_them() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_ar, aw) = a.into_split();
        let (br, _bw) = b.into_split();
        let mut writer = FrameWriter::new(aw);
        let mut reader = FrameReader::new(br, 1024);
        reader.set_accept_fds(false);
        let (x, x_peer) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut frame = header(3).to_vec();
        frame.extend_from_slice(b"abc");
        writer.write_frame_with_fd(&frame, x.as_fd()).await.unwrap();
        drop(x);
        assert_eq!(reader.read_frame().await.unwrap().unwrap(), b"abc");
        assert!(matches!(reader.take_fd(), Attached::None));
        assert_eq!(reader.queued_fds(), 0);
        x_peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        assert_eq!(std::io::Read::read(&mut &x_peer, &mut [0u8; 1]).unwrap(), 0, "closed");
    }

    /// The inode of a socket, to tell which socket a descriptor is.
    fn inode(fd: BorrowedFd<'_>) -> u64 {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd))).unwrap();
        let text = link.to_string_lossy().into_owned();
        text.trim_start_matches("socket:[").trim_end_matches(']').parse().unwrap()
    }

    #[tokio::test]
    async fn a_stalled_frame_times_out_but_an_idle_connection_does_not() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_ar, aw) = a.into_split();
        let (br, _bw) = b.into_split();
        let mut writer = FrameWriter::new(aw);
        let mut reader = FrameReader::new(br, 1024);
        reader.set_frame_timeout(Some(Duration::from_millis(50)));
        // Idle, between frames: no timeout.
        let idle = tokio::time::timeout(Duration::from_millis(150), reader.read_frame()).await;
        assert!(idle.is_err(), "an idle connection is not timed out");
        // Two bytes of a header, then nothing.
        writer.write_frame(&[0, 0]).await.unwrap();
        let started = std::time::Instant::now();
        let stalled = tokio::time::timeout(Duration::from_secs(5), reader.read_frame()).await.unwrap();
        assert!(matches!(stalled, Err(ReadError::FrameTimeout(_))), "{stalled:?}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn eof_inside_a_frame_is_truncated() {
        let (a, b) = UnixStream::pair().unwrap();
        let (_ar, aw) = a.into_split();
        let (br, _bw) = b.into_split();
        let mut writer = FrameWriter::new(aw);
        let mut reader = FrameReader::new(br, 1024);
        writer.write_frame(&[0, 0, 0, 9, b'x']).await.unwrap();
        writer.shutdown().await.unwrap();
        assert!(matches!(reader.read_frame().await, Err(ReadError::Frame(FrameError::Truncated { .. }))));
    }
}
