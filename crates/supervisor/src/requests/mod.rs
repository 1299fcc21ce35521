//! One file per request: each takes the daemon and the request and answers
//! with a reply body (an error body when it fails).

mod close;
mod lease;
mod monitor;
mod open;
pub use open::MAX_TENANT_LEN;
mod status;
mod streams;
mod workers;

use streamlet_proto::conn::FrameReader;
use streamlet_proto::{ReplyBody, RequestBody};

use crate::daemon::Daemon;
use crate::events::EventSink;

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

pub fn dispatch(daemon: &Daemon, id: u64, body: RequestBody, reader: &mut FrameReader, sink: &EventSink) -> Dispatched {
    let name = body.name();
    if let RequestBody::Open(request) = body {
        return match open::open(daemon, id, request, reader.take_fd(), sink) {
            Ok(dispatched) => dispatched,
            Err(error) => {
                tracing::debug!(request = name, %error, "request refused");
                Dispatched::Reply(ReplyBody::Error(error))
            }
        };
    }
    let reply = match body {
        RequestBody::Open(_) => unreachable!("handled above"),
        RequestBody::Close(request) => close::close(daemon, request),
        RequestBody::Status(_) => status::status(daemon),
        RequestBody::Workers(request) => workers::workers(daemon, request),
        RequestBody::Streams(request) => streams::streams(daemon, request),
        RequestBody::Lease(request) => lease::lease(daemon, request),
        RequestBody::Refresh(request) => lease::refresh(daemon, request),
        RequestBody::Release(request) => lease::release(daemon, request),
        RequestBody::Quota(request) => lease::quota(daemon, request),
        RequestBody::Worker(request) => monitor::worker(daemon, request),
        RequestBody::Drain(request) => monitor::drain(daemon, request),
        RequestBody::Kill(request) => monitor::kill(daemon, request),
        RequestBody::Restart(request) => monitor::restart(daemon, request),
        RequestBody::Subscribe(_) => monitor::subscribe(daemon, sink),
    };
    Dispatched::Reply(match reply {
        Ok(body) => body,
        Err(error) => {
            tracing::debug!(request = name, %error, "request refused");
            ReplyBody::Error(error)
        }
    })
}
