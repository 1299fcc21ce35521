//! What handling a request gives: its reply, or a wait for one.

use streamlet_proto::ReplyBody;

/// Answers one request. `reader` holds the descriptors that came with the
/// connection's frames; `sink` is where events for streams opened here go.
/// A request's answer: now, or later (an open waiting for room, whose reply
/// goes into the connection's queue when it comes; the receiver resolves
/// then).
#[derive(Debug)]
pub enum Dispatched {
    Reply(ReplyBody),
    Later(tokio::sync::oneshot::Receiver<()>),
}
