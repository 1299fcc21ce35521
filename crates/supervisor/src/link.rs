//! The daemon's end of one streamlet's channel.
//!
//! Sends never wait: a message goes out at once when the socket has room and
//! nothing is queued before it; otherwise it is queued (with a dup of its
//! descriptor) and a flusher task sends the queue in order when the socket is
//! writable again. So the core can send while it holds its lock.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;

use streamlet_proto::channel::{encode, Channel};
use streamlet_proto::worker::ToWorker;
use tokio::sync::Notify;

#[derive(Debug)]
pub struct WorkerLink {
    channel: Channel,
    outbox: Mutex<VecDeque<(Vec<u8>, Option<OwnedFd>)>>,
    wake: Notify,
}

impl WorkerLink {
    pub fn new(channel: Channel) -> Self {
        Self { channel, outbox: Mutex::new(VecDeque::new()), wake: Notify::new() }
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends `message` (and `fd`) now, or queues it behind what is queued.
    pub fn send(&self, message: &ToWorker, fd: Option<BorrowedFd<'_>>) -> io::Result<()> {
        let bytes = encode(message)?;
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if outbox.is_empty() {
            match self.channel.try_send_bytes(&bytes, fd) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        let fd = fd.map(|fd| fd.try_clone_to_owned()).transpose()?;
        outbox.push_back((bytes, fd));
        drop(outbox);
        self.wake.notify_one();
        Ok(())
    }

    /// Sends queued messages as the socket drains; returns when the channel fails.
    pub async fn flush_forever(&self) -> io::Result<()> {
        loop {
            self.wake.notified().await;
            self.channel
                .writable_io(|| {
                    let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
                    while let Some((bytes, fd)) = outbox.front() {
                        self.channel.try_send_bytes(bytes, fd.as_ref().map(|fd| fd.as_fd()))?;
                        outbox.pop_front();
                    }
                    Ok(())
                })
                .await?;
        }
    }

    /// Ends the channel both ways: the streamlet reads end of file and exits.
    pub fn hang_up(&self) {
        // SAFETY: shutdown on a live socket we own; errors (already shut) are moot.
        unsafe {
            libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&self.channel.as_fd()), libc::SHUT_RDWR);
        }
    }
}
