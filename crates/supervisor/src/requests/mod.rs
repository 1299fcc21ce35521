//! One file per request: each takes the daemon and the request and answers
//! with a reply body (an error body when it fails).

mod close;
mod lease;
mod open;
mod status;
mod streams;
mod workers;

use streamlet_proto::conn::FrameReader;
use streamlet_proto::{ReplyBody, RequestBody};

use crate::daemon::Daemon;
use crate::events::EventSink;

/// Answers one request. `reader` holds the descriptors that came with the
/// connection's frames; `sink` is where events for streams opened here go.
pub fn dispatch(daemon: &Daemon, body: RequestBody, reader: &mut FrameReader, sink: &EventSink) -> ReplyBody {
    let name = body.name();
    let reply = match body {
        RequestBody::Open(request) => open::open(daemon, request, reader.take_fd(), sink),
        RequestBody::Close(request) => close::close(daemon, request),
        RequestBody::Status(_) => status::status(daemon),
        RequestBody::Workers(request) => workers::workers(daemon, request),
        RequestBody::Streams(request) => streams::streams(daemon, request),
        RequestBody::Lease(request) => lease::lease(daemon, request),
        RequestBody::Refresh(request) => lease::refresh(daemon, request),
        RequestBody::Release(request) => lease::release(daemon, request),
        RequestBody::Quota(request) => lease::quota(daemon, request),
    };
    match reply {
        Ok(body) => body,
        Err(error) => {
            tracing::debug!(request = name, %error, "request refused");
            ReplyBody::Error(error)
        }
    }
}
