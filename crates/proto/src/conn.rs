//! Frames over a `SOCK_STREAM` Unix socket, with descriptors alongside.
//!
//! Descriptors arrive with the bytes of the `sendmsg` that carried them and
//! queue up in order (first in, first out), like Wayland's: each `Open` takes
//! the oldest. A sender attaches each descriptor to a `sendmsg` that carries
//! bytes of its own `Open` frame (the simplest: the whole frame in one call).

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::fdpass::{recv_with_fds, send_with_fds};
use crate::frame::{FrameBuf, FrameError};

/// The most received descriptors waiting for their frames.
pub const MAX_QUEUED_FDS: usize = 64;

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
    fds: VecDeque<OwnedFd>,
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

    /// The next frame's payload; `None` at a clean end of file (between frames).
    ///
    /// Cancel-safe: bytes and descriptors received before a cancellation are
    /// kept for the next call.
    pub async fn read_frame(&mut self) -> Result<Option<Vec<u8>>, ReadError> {
        let mut received = Vec::new();
        loop {
            if let Some(frame) = self.buf.next_frame(self.max_frame)? {
                self.frame_started = None;
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
            let n = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, recv).await {
                    Ok(n) => n?,
                    Err(_) => return Err(ReadError::FrameTimeout(self.frame_timeout.unwrap_or_default())),
                },
                None => recv.await?,
            };
            self.buf.extend(&self.scratch[..n]);
            self.fds.extend(received.drain(..));
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

    /// Whether part of a frame has been received.
    pub fn in_frame(&self) -> bool {
        self.buf.pending() > 0
    }

    /// The oldest received descriptor not yet taken.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop_front()
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
        assert!(reader.take_fd().is_some());
        assert_eq!(reader.read_frame().await.unwrap().unwrap(), b"abc");
        assert!(reader.take_fd().is_none());
        assert!(reader.read_frame().await.unwrap().is_none());
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
