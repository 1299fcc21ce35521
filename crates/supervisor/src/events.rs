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
    /// An event's frame: counted apart, for a subscriber's budget.
    Event(Vec<u8>),
    /// Flush what is queued before this, then shut the socket down.
    Close,
}

#[derive(Debug)]
struct Queue {
    tx: mpsc::UnboundedSender<Outgoing>,
    /// The writer is gone: nothing queued will drain.
    closed: AtomicBool,
    queued: AtomicUsize,
    /// Of those, bytes of events.
    events_queued: AtomicUsize,
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
                events_queued: AtomicUsize::new(0),
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
            Ok(frame) => {
                self.0.queued.fetch_add(frame.len(), Ordering::AcqRel);
                self.0.events_queued.fetch_add(frame.len(), Ordering::AcqRel);
                let _ = self.0.tx.send(Outgoing::Event(frame));
            }
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

    /// The writer wrote an event's frame of `len` bytes.
    pub fn written_event(&self, len: usize) {
        self.0.events_queued.fetch_sub(len, Ordering::AcqRel);
        self.written(len);
    }

    /// Bytes of events queued and not yet written: what a subscriber is
    /// behind by (its own large replies do not count).
    pub fn events_queued(&self) -> usize {
        self.0.events_queued.load(Ordering::Acquire)
    }

    /// Bytes queued and not yet written.
    pub fn queued(&self) -> usize {
        self.0.queued.load(Ordering::Acquire)
    }

    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }

    /// Resolves once the writer is gone (the client left, or the daemon
    /// closed the connection).
    pub async fn wait_closed(&self) {
        loop {
            let drained = self.0.drained.notified();
            if self.is_closed() {
                return;
            }
            drained.await;
        }
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

#[cfg(test)]
mod budget_tests {
    use streamlet_proto::{Encoding, Event, PoolRecovered};

    use super::*;

    #[tokio::test]
    async fn a_subscriber_is_behind_by_its_events_not_its_own_replies() {
        let (sink, mut rx) = EventSink::new(Encoding::Json);
        sink.push(vec![0u8; 10_000]); // a large reply
        sink.send(Event::PoolRecovered(PoolRecovered { pool: "echo".into() }));
        let event_len = sink.queued() - 10_000;
        assert_eq!(sink.events_queued(), event_len, "only the event counts against the subscription");
        // The writer drains both, each counted back where it came from.
        while let Ok(item) = rx.try_recv() {
            match item {
                Outgoing::Frame(frame) => sink.written(frame.len()),
                Outgoing::Event(frame) => sink.written_event(frame.len()),
                Outgoing::Close => {}
            }
        }
        assert_eq!((sink.queued(), sink.events_queued()), (0, 0));
        // And a closed queue wakes whoever waits on it.
        let waiter = sink.clone();
        let waiting = tokio::spawn(async move { waiter.wait_closed().await });
        sink.writer_gone();
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}
