//! The outgoing side of one client connection: replies and events in one
//! ordered queue, drained by the connection's writer task.
//!
//! Events never wait and are never dropped while the connection is open:
//! there is at most one per stream the connection opened, so they are bounded
//! by the streams it owns. Replies are bounded in bytes: after queueing one,
//! the connection reads no further request until the queue is below
//! [`REPLY_BUDGET`], so a client that pipelines requests without reading the
//! replies stalls only itself. A subscriber more than [`SUBSCRIBER_BUDGET`]
//! behind is dropped. And all connections together hold at most
//! [`TOTAL_BUDGET`] bytes unread ([`Backlog`]): past it, the connection with
//! the most is closed at once, whatever it was owed, so the daemon's memory
//! is bounded however many clients stop reading.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use streamlet_proto::frame::{HEADER_LEN, MAX_REPLY_LEN};
use streamlet_proto::{Encoding, ErrorBody, ErrorCode, Event, Reply, ReplyBody, ServerMessage};
use tokio::sync::{mpsc, Notify};

/// Bytes a client may leave unread before its requests wait.
pub const REPLY_BUDGET: usize = 1024 * 1024;

/// Bytes of events a subscriber may leave unread before it is dropped.
pub const SUBSCRIBER_BUDGET: usize = 4 * 1024 * 1024;

/// Bytes all connections together may leave unread: past it, the slowest
/// reader (the one with the most) is closed.
pub const TOTAL_BUDGET: usize = 64 * 1024 * 1024;

/// Bytes all connections of one non-admin uid together may leave unread:
/// past it, that uid's slowest reader is closed. One local user with many
/// connections cannot take the whole [`TOTAL_BUDGET`] (and so have others'
/// connections closed for it).
pub const UID_BUDGET: usize = 16 * 1024 * 1024;

/// What the connections of one uid have queued together.
#[derive(Debug, Default)]
pub struct Share {
    queued: AtomicUsize,
}

/// What every connection has queued, together, and who holds it.
#[derive(Debug, Default)]
pub struct Backlog {
    total: AtomicUsize,
    queues: Mutex<Vec<Weak<Queue>>>,
    /// Each non-admin uid's share, while it has a connection.
    shares: Mutex<std::collections::HashMap<u32, Weak<Share>>>,
}

impl Backlog {
    /// Bytes queued on every connection, and not yet written.
    pub fn total(&self) -> usize {
        self.total.load(Ordering::Acquire)
    }

    fn add(&self, len: usize) {
        self.total.fetch_add(len, Ordering::AcqRel);
    }

    fn sub(&self, len: usize) {
        self.total.fetch_sub(len, Ordering::AcqRel);
    }

    /// The share of `uid`'s connections (one for all of them).
    pub fn share_of(&self, uid: u32) -> Arc<Share> {
        let mut shares = self.shares.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(share) = shares.get(&uid).and_then(Weak::upgrade) {
            return share;
        }
        // (Bounded by the uids with a connection: forget those gone.)
        shares.retain(|_, s| s.strong_count() > 0);
        let share = Arc::new(Share::default());
        shares.insert(uid, Arc::downgrade(&share));
        share
    }

    /// While `share` is over `limit`, closes its connection with the most
    /// queued.
    fn enforce_share(&self, share: &Arc<Share>, limit: usize) {
        let queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        let mut live: Vec<Arc<Queue>> = queues
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|q| !q.closed.load(Ordering::Acquire) && q.share.as_ref().is_some_and(|s| Arc::ptr_eq(s, share)))
            .collect();
        drop(queues);
        live.sort_by_key(|q| std::cmp::Reverse(q.queued.load(Ordering::Acquire)));
        for queue in live {
            if share.queued.load(Ordering::Acquire) <= limit || queue.queued.load(Ordering::Acquire) == 0 {
                break;
            }
            queue.abort();
        }
    }

    /// While the total is over `limit`, closes the connection with the most
    /// queued (its writer stops at once and what it held is freed). Returns
    /// the bytes each closed connection had queued.
    fn enforce(&self, limit: usize) -> Vec<usize> {
        let mut closed = Vec::new();
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        // (Aborted queues give their bytes back when their writers stop:
        // count them as gone already.)
        queues.retain(|q| q.upgrade().is_some_and(|q| !q.closed.load(Ordering::Acquire)));
        let mut over = self.total().saturating_sub(limit);
        let mut live: Vec<Arc<Queue>> = queues.iter().filter_map(Weak::upgrade).collect();
        drop(queues);
        live.sort_by_key(|q| std::cmp::Reverse(q.queued.load(Ordering::Acquire)));
        for queue in live {
            if over == 0 {
                break;
            }
            let held = queue.queued.load(Ordering::Acquire);
            if held == 0 {
                break;
            }
            queue.abort();
            closed.push(held);
            over = over.saturating_sub(held);
        }
        closed
    }
}

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
    /// The daemon closed the connection for what it left unread: the writer
    /// stops at once.
    aborted: AtomicBool,
    abort: Notify,
    queued: AtomicUsize,
    /// Of those, bytes of events.
    events_queued: AtomicUsize,
    drained: Notify,
    encoding: Encoding,
    backlog: Arc<Backlog>,
    /// Its uid's share, for a non-admin's connection.
    share: Option<Arc<Share>>,
}

impl Queue {
    /// Closes the connection at once. What it holds leaves the backlog now
    /// (its writer frees it when it next runs), so the next check does not
    /// count it twice.
    fn abort(&self) {
        if self.aborted.swap(true, Ordering::AcqRel) {
            return;
        }
        let queued = self.queued.load(Ordering::Acquire);
        self.backlog.sub(queued);
        if let Some(share) = &self.share {
            share.queued.fetch_sub(queued, Ordering::AcqRel);
        }
        self.closed.store(true, Ordering::Release);
        self.abort.notify_one();
        self.drained.notify_waiters();
    }
}

/// A handle on a connection's queue; clones go to the streams it opens.
#[derive(Debug, Clone)]
pub struct EventSink(Arc<Queue>);

impl EventSink {
    /// A queue counted in a backlog of its own.
    pub fn new(encoding: Encoding) -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        Self::in_backlog(encoding, Arc::default())
    }

    /// A queue counted in `backlog`, with every other connection's.
    pub fn in_backlog(encoding: Encoding, backlog: Arc<Backlog>) -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        Self::in_share(encoding, backlog, None)
    }

    /// A queue counted in `backlog` and, for a non-admin's connection, in
    /// its uid's `share` ([`UID_BUDGET`]).
    pub fn in_share(
        encoding: Encoding,
        backlog: Arc<Backlog>,
        share: Option<Arc<Share>>,
    ) -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue {
            tx,
            closed: AtomicBool::new(false),
            aborted: AtomicBool::new(false),
            abort: Notify::new(),
            queued: AtomicUsize::new(0),
            events_queued: AtomicUsize::new(0),
            drained: Notify::new(),
            encoding,
            backlog: backlog.clone(),
            share,
        });
        backlog.queues.lock().unwrap_or_else(|p| p.into_inner()).push(Arc::downgrade(&queue));
        (Self(queue), rx)
    }

    /// The daemon closed this connection for what it left unread.
    pub fn was_aborted(&self) -> bool {
        self.0.aborted.load(Ordering::Acquire)
    }

    /// Resolves when the daemon closes this connection for what it left
    /// unread (the writer then stops at once).
    pub async fn aborted(&self) {
        loop {
            let woken = self.0.abort.notified();
            if self.was_aborted() {
                return;
            }
            woken.await;
        }
    }

    /// Whether something besides the connection's own two handles (its
    /// reader's and its writer's) holds the queue: a stream it opened, an
    /// open waiting for room, a subscription. Such a connection is never
    /// idle, however long it is silent.
    pub fn held_elsewhere(&self) -> bool {
        Arc::strong_count(&self.0) > 2
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
                let len = frame.len();
                if self.is_closed() {
                    return;
                }
                self.count(len);
                self.0.events_queued.fetch_add(len, Ordering::AcqRel);
                if self.0.tx.send(Outgoing::Event(frame)).is_err() {
                    self.0.events_queued.fetch_sub(len, Ordering::AcqRel);
                    self.uncount(len);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot encode an event"),
        }
    }

    /// Queues an encoded frame.
    pub fn push(&self, frame: Vec<u8>) {
        let len = frame.len();
        if self.is_closed() {
            return;
        }
        self.count(len);
        if self.0.tx.send(Outgoing::Frame(frame)).is_err() {
            self.uncount(len);
        }
    }

    fn count(&self, len: usize) {
        self.0.queued.fetch_add(len, Ordering::AcqRel);
        self.0.backlog.add(len);
        // The one place every queued byte passes: the total is kept here.
        if let Some(share) = &self.0.share {
            if share.queued.fetch_add(len, Ordering::AcqRel) + len > UID_BUDGET {
                self.0.backlog.enforce_share(share, UID_BUDGET);
            }
        }
        if self.0.backlog.total() > TOTAL_BUDGET {
            self.0.backlog.enforce(TOTAL_BUDGET);
        }
    }

    fn uncount(&self, len: usize) {
        self.0.queued.fetch_sub(len, Ordering::AcqRel);
        // (An aborted queue left the backlog whole when it was aborted.)
        if !self.0.aborted.load(Ordering::Acquire) {
            self.0.backlog.sub(len);
            if let Some(share) = &self.0.share {
                share.queued.fetch_sub(len, Ordering::AcqRel);
            }
        }
    }

    /// Asks the writer to flush and close.
    pub fn close(&self) {
        let _ = self.0.tx.send(Outgoing::Close);
    }

    /// The writer wrote a frame of `len` bytes (or dropped it unwritten).
    pub fn written(&self, len: usize) {
        self.uncount(len);
        self.0.drained.notify_waiters();
    }

    /// The writer stopped (the client went away, the close marker was
    /// reached, or the connection was aborted): what is still queued will
    /// never be written. Wake anyone waiting for the queue to drain.
    pub fn writer_gone(&self, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
        self.0.closed.store(true, Ordering::Release);
        rx.close();
        while let Ok(item) = rx.try_recv() {
            match item {
                Outgoing::Frame(frame) => self.written(frame.len()),
                Outgoing::Event(frame) => self.written_event(frame.len()),
                Outgoing::Close => {}
            }
        }
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

/// The reply's frame; a reply over the size limit becomes an error reply.
pub(crate) fn encode_reply(encoding: Encoding, reply: Reply) -> Vec<u8> {
    let id = reply.id;
    let message = match encoding.encode_frame(&ServerMessage::Reply(reply)) {
        Ok(frame) if frame.len() - HEADER_LEN <= MAX_REPLY_LEN as usize => return frame,
        Ok(frame) => {
            format!("the reply of {} bytes is over the {MAX_REPLY_LEN} byte limit; filter it by pool", frame.len())
        }
        Err(e) => format!("cannot encode the reply: {e}"),
    };
    tracing::error!(id, message, "cannot send a reply");
    let error =
        ServerMessage::Reply(Reply { id, body: ReplyBody::Error(ErrorBody::new(ErrorCode::Internal, message)) });
    encoding.encode_frame(&error).expect("an error reply always encodes")
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
        sink.writer_gone(rx);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await.unwrap().unwrap();
    }
}

#[cfg(test)]
mod backlog_tests {
    use streamlet_proto::Encoding;

    use super::*;

    /// Past the total, the connection holding the most is aborted and what
    /// it held no longer counts; the others keep theirs.
    #[tokio::test]
    async fn one_uids_connections_share_a_budget_past_which_its_slowest_is_closed() {
        let backlog = Arc::new(Backlog::default());
        let share = backlog.share_of(65534);
        assert!(Arc::ptr_eq(&share, &backlog.share_of(65534)), "one share per uid");
        let (a, a_rx) = EventSink::in_share(Encoding::Json, backlog.clone(), Some(share.clone()));
        let (b, _b_rx) = EventSink::in_share(Encoding::Json, backlog.clone(), Some(backlog.share_of(65534)));
        let (other, _other_rx) = EventSink::in_share(Encoding::Json, backlog.clone(), Some(backlog.share_of(1000)));
        let (admin, _admin_rx) = EventSink::in_backlog(Encoding::Json, backlog.clone());
        other.push(vec![0; UID_BUDGET / 2 + 1]);
        admin.push(vec![0; UID_BUDGET]);
        a.push(vec![0; UID_BUDGET / 2]);
        assert!(!a.is_closed() && !b.is_closed(), "at the budget: nothing closed");
        b.push(vec![0; UID_BUDGET / 2 + 1]);
        assert!(b.was_aborted(), "past it, the uid's connection holding the most goes");
        assert!(!a.is_closed() && !other.is_closed() && !admin.is_closed(), "no one else's");
        assert_eq!(share.queued.load(Ordering::Acquire), UID_BUDGET / 2);
        assert_eq!(backlog.total(), UID_BUDGET / 2 + UID_BUDGET / 2 + 1 + UID_BUDGET);
        // What a's writer writes leaves the share too.
        a.written(UID_BUDGET / 2);
        assert_eq!(share.queued.load(Ordering::Acquire), 0);
        drop(a_rx);
    }

    #[tokio::test]
    async fn past_the_total_the_slowest_reader_is_closed() {
        let backlog = Arc::new(Backlog::default());
        let (small, small_rx) = EventSink::in_backlog(Encoding::Json, backlog.clone());
        let (big, big_rx) = EventSink::in_backlog(Encoding::Json, backlog.clone());
        small.push(vec![0; 100]);
        big.push(vec![0; 300]);
        assert_eq!(backlog.total(), 400);
        assert!(backlog.enforce(1_000).is_empty(), "within the total: nothing closed");
        assert_eq!(backlog.enforce(350), vec![300], "the slowest goes");
        assert!(big.was_aborted() && big.is_closed());
        assert!(!small.is_closed());
        assert_eq!(backlog.total(), 100, "what it held no longer counts");
        assert!(backlog.enforce(50).len() == 1 && small.was_aborted(), "the next check sees only the rest");
        // Their writers, seeing the abort, free what they held.
        big.writer_gone(big_rx);
        small.writer_gone(small_rx);
        assert_eq!(backlog.total(), 0);
        // Nothing more is queued on a closed connection.
        big.push(vec![0; 1_000]);
        assert_eq!(backlog.total(), 0);
        let (other, other_rx) = EventSink::in_backlog(Encoding::Json, backlog.clone());
        drop(other_rx);
        other.push(vec![0; 50]);
        assert_eq!(backlog.total(), 0, "a queue whose writer is gone takes nothing");
    }
}
