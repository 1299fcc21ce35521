//! Opens waiting for room, or for their relay upstream to take a
//! connection: the one owner of the queue, which answers each exactly once
//! (placed, refused, past its time, its connection gone, or the daemon
//! shutting down). Trying them again is the core's: it places them.

use std::collections::VecDeque;
use std::time::Instant;

use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::{ErrorBody, Reply, ReplyBody, ServerMessage};
use tokio::sync::oneshot;

use crate::events::EventSink;
use crate::validate::Open;

/// An open that asked to wait for room.
#[derive(Debug)]
pub(super) struct Waiter {
    pub(super) request: Open,
    pub(super) fd: ForeignFd,
    pub(super) owner: EventSink,
    /// The request's id, for the reply.
    pub(super) id: u64,
    pub(super) deadline: Instant,
    /// Why it could not be placed the last time it was tried.
    pub(super) last: ErrorBody,
    /// It waits for its upstream to take a connection (retried every
    /// tick), rather than for room (retried when room may have come).
    pub(super) upstream: bool,
    /// Tells the connection the reply is in its queue.
    pub(super) done: oneshot::Sender<()>,
}

impl Waiter {
    fn answer(self, body: ReplyBody) {
        answer(&self.owner, self.id, self.done, body);
    }
}

/// Puts a waiting open's reply into its connection's queue, and says so.
pub(super) fn answer(owner: &EventSink, id: u64, done: oneshot::Sender<()>, body: ReplyBody) {
    let reply = ServerMessage::Reply(Reply { id, body });
    match owner.encoding().encode_frame(&reply) {
        Ok(frame) => owner.push(frame),
        Err(e) => tracing::error!(error = %e, "cannot encode a reply"),
    }
    let _ = done.send(());
}

/// The queue, oldest first.
#[derive(Debug, Default)]
pub(super) struct Waiting(VecDeque<Waiter>);

impl Waiting {
    pub(super) fn push(&mut self, waiter: Waiter) {
        self.0.push_back(waiter);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Every waiter, oldest first, to try again (those that still cannot go
    /// are pushed back).
    pub(super) fn take_all(&mut self) -> VecDeque<Waiter> {
        std::mem::take(&mut self.0)
    }

    /// Whether any waits for its upstream (which nothing announces: the
    /// tick tries those again).
    pub(super) fn any_for_upstream(&self) -> bool {
        self.0.iter().any(|w| w.upstream)
    }

    /// Answers those whose time is up with the error that made them wait.
    pub(super) fn expire(&mut self, now: Instant) {
        if self.0.iter().all(|w| w.deadline > now) {
            return;
        }
        let (due, keep): (VecDeque<Waiter>, VecDeque<Waiter>) =
            std::mem::take(&mut self.0).into_iter().partition(|w| w.deadline <= now);
        self.0 = keep;
        for w in due {
            let error = w.last.clone();
            w.answer(ReplyBody::Error(error));
        }
    }

    /// Drops those of a connection that went away: their client connections
    /// close, and nothing is placed for a gateway that is gone.
    pub(super) fn cancel(&mut self, sink: &EventSink) {
        self.0.retain(|w| !w.owner.same(sink));
    }

    /// Answers every one with `error`.
    pub(super) fn refuse_all(&mut self, error: &ErrorBody) {
        for w in std::mem::take(&mut self.0) {
            w.answer(ReplyBody::Error(error.clone()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use streamlet_proto::{Encoding, ErrorCode, OpenRequest};
    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::events::Outgoing;

    /// A waiter of `owner`, due at `deadline`, and what tells when it is answered.
    fn waiter(owner: &EventSink, id: u64, deadline: Instant, upstream: bool) -> (Waiter, oneshot::Receiver<()>) {
        let (_mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let (done, answered) = oneshot::channel();
        let waiter = Waiter {
            request: crate::validate::open(OpenRequest::new("echo")).unwrap(),
            fd: ForeignFd::new(theirs.into()),
            owner: owner.clone(),
            id,
            deadline,
            last: ErrorBody::new(ErrorCode::NoCapacity, format!("full for {id}")),
            upstream,
            done,
        };
        (waiter, answered)
    }

    /// The replies queued for a connection, as JSON.
    fn replies(rx: &mut UnboundedReceiver<Outgoing>) -> Vec<serde_json::Value> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .filter_map(|out| match out {
                Outgoing::Frame(frame) => Some(serde_json::from_slice(&frame[4..]).unwrap()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn those_past_their_time_are_answered_once_with_what_made_them_wait() {
        let (owner, mut rx) = EventSink::new(Encoding::Json);
        let now = Instant::now();
        let mut queue = Waiting::default();
        let (due, mut due_answered) = waiter(&owner, 1, now, false);
        let (later, mut later_answered) = waiter(&owner, 2, now + Duration::from_secs(60), true);
        queue.push(due);
        queue.push(later);
        assert!(queue.any_for_upstream());
        queue.expire(now);
        queue.expire(now);
        assert_eq!(due_answered.try_recv(), Ok(()));
        assert!(later_answered.try_recv().is_err(), "not yet");
        let replies = replies(&mut rx);
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0]["reply"]["id"], 1);
        assert_eq!(replies[0]["reply"]["body"]["error"]["code"], "no_capacity");
        assert_eq!(replies[0]["reply"]["body"]["error"]["message"], "full for 1");
        assert_eq!(queue.take_all().len(), 1, "the other still waits");
        assert!(queue.is_empty());
    }

    #[test]
    fn a_gone_connections_waiters_are_dropped_unanswered_and_the_rest_refused_at_shutdown() {
        let (gone, mut gone_rx) = EventSink::new(Encoding::Json);
        let (staying, mut staying_rx) = EventSink::new(Encoding::Json);
        let later = Instant::now() + Duration::from_secs(60);
        let mut queue = Waiting::default();
        let (a, mut a_answered) = waiter(&gone, 1, later, false);
        let (b, mut b_answered) = waiter(&staying, 2, later, false);
        queue.push(a);
        queue.push(b);
        queue.cancel(&gone);
        assert_eq!(a_answered.try_recv(), Err(oneshot::error::TryRecvError::Closed), "dropped, never answered");
        assert!(replies(&mut gone_rx).is_empty());
        queue.refuse_all(&ErrorBody::new(ErrorCode::ShuttingDown, "bye"));
        assert_eq!(b_answered.try_recv(), Ok(()));
        let replies = replies(&mut staying_rx);
        assert_eq!(replies[0]["reply"]["body"]["error"]["code"], "shutting_down");
        assert!(queue.is_empty());
    }
}
