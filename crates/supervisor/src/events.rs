//! The outgoing side of one client connection: replies and events in one
//! ordered queue, drained by the connection's writer task.
//!
//! Events never wait and are never dropped while the connection is open:
//! there is at most one per stream the connection opened, so they are bounded
//! by the streams it owns. Replies are bounded in bytes: after queueing one,
//! the connection reads no further request until the queue is below
//! [`REPLY_BUDGET`], so a client that pipelines requests without reading the
//! replies stalls only itself.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use streamlet_proto::{Encoding, Event, ServerMessage};
use tokio::sync::{mpsc, Notify};

/// Bytes of replies a client may leave unread before its requests wait.
pub const REPLY_BUDGET: usize = 4 * 1024 * 1024;

/// What the writer task is given.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Vec<u8>),
    /// Flush what is queued before this, then shut the socket down.
    Close,
}

#[derive(Debug)]
struct Queue {
    tx: mpsc::UnboundedSender<Outgoing>,
    /// The writer is gone: nothing queued will drain.
    closed: AtomicBool,
    queued: AtomicUsize,
    drained: Notify,
    encoding: Encoding,
}

/// A handle on a connection's queue; clones go to the streams it opens.
#[derive(Debug, Clone)]
pub struct EventSink(Arc<Queue>);

impl EventSink {
    pub fn new(encoding: Encoding) -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self(Arc::new(Queue {
                tx,
                closed: AtomicBool::new(false),
                queued: AtomicUsize::new(0),
                drained: Notify::new(),
                encoding,
            })),
            rx,
        )
    }

    /// Whether both are the same connection's queue.
    pub fn same(&self, other: &EventSink) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    pub fn encoding(&self) -> Encoding {
        self.0.encoding
    }

    /// Queues an event for the client. A no-op once the connection is closed.
    pub fn send(&self, event: Event) {
        match self.0.encoding.encode_frame(&ServerMessage::Event(event)) {
            Ok(frame) => self.push(frame),
            Err(e) => tracing::error!(error = %e, "cannot encode an event"),
        }
    }

    /// Queues an encoded frame.
    pub fn push(&self, frame: Vec<u8>) {
        self.0.queued.fetch_add(frame.len(), Ordering::AcqRel);
        let _ = self.0.tx.send(Outgoing::Frame(frame));
    }

    /// Asks the writer to flush and close.
    pub fn close(&self) {
        let _ = self.0.tx.send(Outgoing::Close);
    }

    /// The writer wrote a frame of `len` bytes.
    pub fn written(&self, len: usize) {
        self.0.queued.fetch_sub(len, Ordering::AcqRel);
        self.0.drained.notify_waiters();
    }

    /// The writer stopped (the client went away, or the close marker was
    /// reached): wake anyone waiting for the queue to drain.
    pub fn writer_gone(&self) {
        self.0.closed.store(true, Ordering::Release);
        self.0.drained.notify_waiters();
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.0.queued.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Waits until less than `budget` bytes are queued, or the writer is gone.
    pub async fn wait_below(&self, budget: usize) {
        loop {
            let drained = self.0.drained.notified();
            if self.0.queued.load(Ordering::Acquire) < budget || self.is_closed() {
                return;
            }
            drained.await;
        }
    }
}
