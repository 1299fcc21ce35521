//! The daemon's end of one streamlet's channel.
//!
//! Sends never wait: a message goes out at once when the socket has room and
//! nothing is queued before it; otherwise it is queued (with a dup of its
//! descriptor) and a flusher task sends the queue in order when the socket is
//! writable again. So the core can send while it holds its lock. A streamlet
//! that lets [`MAX_OUTBOX`] messages pile up is not reading: sends then fail,
//! and the caller treats the streamlet as broken.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use streamlet_proto::channel::{encode, Channel};
use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::worker::ToWorker;
use tokio::sync::Notify;

/// Messages queued for one streamlet before it counts as stuck.
pub const MAX_OUTBOX: usize = 4096;

#[derive(Debug)]
pub struct WorkerLink {
    /// Always there until the link is dropped (then it goes to a closer:
    /// descriptors a hostile streamlet left queued in it close with it).
    channel: std::mem::ManuallyDrop<Channel>,
    /// Messages waiting for room, each with a copy of its descriptor (a
    /// client's connection: foreign, never closed on the daemon's thread).
    outbox: Mutex<VecDeque<(Vec<u8>, Option<ForeignFd>)>>,
    wake: Notify,
    closed: AtomicBool,
    created: Instant,
    /// When the streamlet last sent anything, in milliseconds since `created`.
    heard: AtomicU64,
    /// The reader reached the end of the channel (or gave up on it).
    drained: AtomicBool,
    drained_wake: Notify,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The message itself cannot go (too large, say): the streamlet is fine.
    #[error("message refused: {0}")]
    Message(io::Error),
    /// The daemon is short of a resource (descriptors, memory): the streamlet
    /// is fine, the daemon is not.
    #[error("daemon out of resources: {0}")]
    Resources(io::Error),
    /// The channel is broken.
    #[error("channel failed: {0}")]
    Channel(io::Error),
    /// The streamlet left [`MAX_OUTBOX`] messages unread.
    #[error("{MAX_OUTBOX} messages queued: the streamlet is not reading its channel")]
    Stuck,
}

impl SendError {
    fn classify(e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::EMFILE | libc::ENFILE | libc::ENOMEM | libc::ENOBUFS | libc::ETOOMANYREFS) => Self::Resources(e),
            _ if e.kind() == io::ErrorKind::InvalidInput => Self::Message(e),
            _ => Self::Channel(e),
        }
    }
}

impl WorkerLink {
    pub fn new(channel: Channel) -> Self {
        Self {
            channel: std::mem::ManuallyDrop::new(channel),
            outbox: Mutex::new(VecDeque::new()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            created: Instant::now(),
            heard: AtomicU64::new(0),
            drained: AtomicBool::new(false),
            drained_wake: Notify::new(),
        }
    }

    /// The reader read everything the streamlet sent: its last messages
    /// (an `Ended` sent just before dying) have been applied.
    pub fn mark_drained(&self) {
        self.drained.store(true, Ordering::Release);
        self.drained_wake.notify_waiters();
    }

    /// Waits, at most `limit`, for [`mark_drained`](Self::mark_drained).
    pub async fn wait_drained(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let woken = self.drained_wake.notified();
                if self.drained.load(Ordering::Acquire) {
                    return;
                }
                woken.await;
            }
        })
        .await;
    }

    /// Whether the streamlet has sent something not read yet.
    pub fn unread(&self) -> bool {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD on a live socket we own, into a c_int.
        let rc = unsafe { libc::ioctl(self.channel.as_fd().as_raw_fd(), libc::FIONREAD, &mut n) };
        rc == 0 && n > 0
    }

    /// The streamlet sent something: it is alive.
    pub fn heard(&self) {
        self.heard.store(self.created.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long the streamlet has been silent.
    pub fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.heard.load(Ordering::Relaxed));
        self.created.elapsed().saturating_sub(heard)
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Sends `message` (and `fd`) now, or queues it behind what is queued.
    pub fn send(&self, message: &ToWorker, fd: Option<BorrowedFd<'_>>) -> Result<(), SendError> {
        let bytes = encode(message).map_err(SendError::Message)?;
        self.send_encoded(bytes, fd)
    }

    /// [`send`](Self::send) of a message already encoded with
    /// [`encode`](streamlet_proto::channel::encode).
    pub fn send_encoded(&self, bytes: Vec<u8>, fd: Option<BorrowedFd<'_>>) -> Result<(), SendError> {
        let mut outbox = self.outbox.lock().unwrap_or_else(|p| p.into_inner());
        if outbox.is_empty() {
            match self.channel.try_send_bytes(&bytes, fd) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(SendError::classify(e)),
            }
        }
        if outbox.len() >= MAX_OUTBOX {
            return Err(SendError::Stuck);
        }
        let fd = fd.map(|fd| fd.try_clone_to_owned().map(ForeignFd::new)).transpose().map_err(SendError::classify)?;
        outbox.push_back((bytes, fd));
        drop(outbox);
        self.wake.notify_one();
        Ok(())
    }

    /// Sends queued messages as the socket drains, until [`close`](Self::close)
    /// or a channel error.
    pub async fn flush_until_closed(&self) -> io::Result<()> {
        loop {
            self.wake.notified().await;
            if self.closed.load(Ordering::Acquire) {
                return Ok(());
            }
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

    /// The streamlet is gone: stop the flusher and drop what was queued.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.outbox.lock().unwrap_or_else(|p| p.into_inner()).clear();
        self.wake.notify_one();
    }

    /// Ends the daemon's side of the channel: the streamlet reads end of file
    /// and exits, while its last messages can still be read.
    pub fn hang_up(&self) {
        // (An error, the channel already gone, leaves nothing to do.)
        let _ = streamlet_proto::sock::shutdown(self.channel.as_fd(), std::net::Shutdown::Write);
    }
}

impl Drop for WorkerLink {
    fn drop(&mut self) {
        // SAFETY: the channel is taken once, here, and never used after.
        let channel = unsafe { std::mem::ManuallyDrop::take(&mut self.channel) };
        streamlet_proto::foreign::dispose(channel.into_fd());
    }
}
