//! The daemon-to-streamlet channel: a `SOCK_SEQPACKET` socketpair, so message
//! boundaries are kept and a descriptor travels with exactly its message.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use serde::{de::DeserializeOwned, Serialize};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use crate::fdpass::{recv_with_fds, send_with_fds};
use crate::worker::MAX_MESSAGE_LEN;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("channel io: {0}")]
    Io(#[from] io::Error),
    #[error("undecodable message: {0}")]
    Decode(postcard::Error),
    #[error("message carried {0} descriptors, at most one is allowed")]
    TooManyFds(usize),
    #[error("the kernel dropped a descriptor sent with a message: this process's descriptor table is full")]
    FdsLost,
}

/// A connected pair, both ends close-on-exec and blocking. The daemon keeps one
/// end and hands the other to the streamlet.
pub fn seqpacket_pair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let rc = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded, so both are fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: BorrowedFd<'_>, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_SETFL on a live borrowed descriptor.
    unsafe {
        let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if flags < 0 {
            return Err(io::Error::last_os_error());
        }
        let flags = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        if libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One end of the channel, registered with the tokio reactor.
#[derive(Debug)]
pub struct Channel {
    fd: AsyncFd<OwnedFd>,
}

impl Channel {
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        set_nonblocking(fd.as_fd(), true)?;
        // SAFETY: an OwnedFd stays open and returns the same raw descriptor
        // until it is dropped, which happens only with the AsyncFd.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Sends an encoded message ([`encode`]) now, or fails with `WouldBlock`;
    /// never waits.
    pub fn try_send_bytes(&self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let fds: &[BorrowedFd<'_>] = match &fd {
            Some(fd) => std::slice::from_ref(fd),
            None => &[],
        };
        send_with_fds(self.fd.get_ref().as_fd(), bytes, fds).map(|_| ())
    }

    /// Waits until the socket has room, then sends.
    pub async fn send_bytes(&self, bytes: &[u8], fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        self.fd.async_io(Interest::WRITABLE, |_| self.try_send_bytes(bytes, fd)).await
    }

    /// Runs `f` whenever the socket may be writable, until it returns
    /// something other than `WouldBlock`.
    pub async fn writable_io<R>(&self, mut f: impl FnMut() -> io::Result<R>) -> io::Result<R> {
        self.fd.async_io(Interest::WRITABLE, |_| f()).await
    }

    pub async fn send<T: Serialize>(&self, message: &T, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let bytes = encode(message)?;
        self.send_bytes(&bytes, fd).await
    }

    /// The next message and its descriptor; `None` once the peer has closed
    /// (or died: `ECONNRESET` counts as closed). Allocates a receive buffer;
    /// loops use [`recv_with`](Self::recv_with).
    pub async fn recv<T: DeserializeOwned>(&self) -> Result<Option<(T, Option<OwnedFd>)>, ChannelError> {
        self.recv_with(&mut RecvBuf::new()).await
    }

    /// [`recv`](Self::recv) into a buffer kept by the caller across calls.
    pub async fn recv_with<T: DeserializeOwned>(
        &self,
        buf: &mut RecvBuf,
    ) -> Result<Option<(T, Option<OwnedFd>)>, ChannelError> {
        let RecvBuf(buf) = buf;
        let mut fds = Vec::new();
        let received = self.fd.async_io(Interest::READABLE, |inner| recv_with_fds(inner.as_fd(), buf, &mut fds)).await;
        // Descriptors that came with anything but a good message are the
        // peer's: closed where their close cannot hold this thread up.
        let refuse = |fds: Vec<OwnedFd>, error: ChannelError| {
            fds.into_iter().for_each(crate::foreign::dispose);
            Err(error)
        };
        let n = match received {
            Ok(got) if got.fds_lost => return refuse(fds, ChannelError::FdsLost),
            Ok(got) => got.bytes,
            // The peer died with messages of ours unread: it is gone all the same.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => 0,
            Err(e) => return refuse(fds, e.into()),
        };
        if n == 0 {
            fds.into_iter().for_each(crate::foreign::dispose);
            return Ok(None);
        }
        if fds.len() > 1 {
            let count = fds.len();
            return refuse(fds, ChannelError::TooManyFds(count));
        }
        match decode(&buf[..n]) {
            Ok(message) => Ok(Some((message, fds.pop()))),
            Err(e) => refuse(fds, e),
        }
    }

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.get_ref().as_fd()
    }

    /// The socket itself, off the reactor: for a caller that must choose
    /// where its last close happens (closing a socket closes whatever the
    /// peer left queued in it, descriptors included).
    pub fn into_fd(self) -> OwnedFd {
        self.fd.into_inner()
    }
}

/// A receive buffer for [`Channel::recv_with`]: one message's worth.
#[derive(Debug)]
pub struct RecvBuf(Box<[u8]>);

impl RecvBuf {
    pub fn new() -> Self {
        Self(vec![0u8; MAX_MESSAGE_LEN].into_boxed_slice())
    }
}

impl Default for RecvBuf {
    fn default() -> Self {
        Self::new()
    }
}

/// One channel message from the bytes of its datagram, as both ends read it.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ChannelError> {
    postcard::from_bytes(bytes).map_err(ChannelError::Decode)
}

/// The postcard bytes of one channel message.
pub fn encode<T: Serialize>(message: &T) -> io::Result<Vec<u8>> {
    // (Room for an `Assign` with a few labels at once, rather than growing.)
    let mut bytes = postcard::to_extend(message, Vec::with_capacity(256))
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // (A message may wait in a streamlet's outbox: it holds no more than it is.)
    bytes.shrink_to_fit();
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("message of {} bytes is over the channel limit of {MAX_MESSAGE_LEN}", bytes.len()),
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::{FromWorker, ToWorker};
    use crate::StreamId;

    #[tokio::test]
    async fn messages_keep_their_boundaries_and_fds() {
        let (a, b) = seqpacket_pair().unwrap();
        let a = Channel::new(a).unwrap();
        let b = Channel::new(b).unwrap();
        let (x, _y) = std::os::unix::net::UnixStream::pair().unwrap();
        a.send(&ToWorker::Close { stream: StreamId(1) }, Some(x.as_fd())).await.unwrap();
        a.send(&ToWorker::Close { stream: StreamId(2) }, None).await.unwrap();
        let (m1, fd1) = b.recv::<ToWorker>().await.unwrap().unwrap();
        let (m2, fd2) = b.recv::<ToWorker>().await.unwrap().unwrap();
        assert_eq!(m1, ToWorker::Close { stream: StreamId(1) });
        assert!(fd1.is_some());
        assert_eq!(m2, ToWorker::Close { stream: StreamId(2) });
        assert!(fd2.is_none());
        drop(a);
        assert!(b.recv::<FromWorker>().await.unwrap().is_none());
    }
}
