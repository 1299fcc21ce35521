//! One file per request: each takes the daemon and the request and answers
//! with a reply body (an error body when it fails).

mod close;
mod dispatched;
mod lease;
mod monitor;
mod open;
mod status;
mod streams;
mod workers;

use streamlet_proto::conn::FrameReader;
use streamlet_proto::{ErrorBody, ErrorCode, ReplyBody, RequestBody};

pub use crate::config::Role;

use crate::context::Daemon;
use crate::events::EventSink;
pub use dispatched::Dispatched;

/// Who sent the requests of a connection, and what they may do.
#[derive(Debug, Clone)]
pub struct Peer {
    pub uid: u32,
    pub gids: Vec<u32>,
    pub pid: Option<i32>,
}

impl Peer {
    /// Its role under the roles in force now (a reload may change them).
    pub fn role(&self, daemon: &Daemon) -> Role {
        let access = daemon.access.lock().unwrap_or_else(|p| p.into_inner());
        access.role_of(self.uid, &self.gids, nix::unistd::geteuid().as_raw())
    }
}

/// The least role a request needs.
pub fn needs(body: &RequestBody) -> Role {
    match body {
        RequestBody::Status(_)
        | RequestBody::Workers(_)
        | RequestBody::Worker(_)
        | RequestBody::Streams(_)
        | RequestBody::Quota(_)
        | RequestBody::Subscribe(_)
        | RequestBody::Events(_) => Role::Viewer,
        RequestBody::Open(_)
        | RequestBody::Close(_)
        | RequestBody::Lease(_)
        | RequestBody::Refresh(_)
        | RequestBody::Release(_) => Role::Gateway,
        RequestBody::Drain(_)
        | RequestBody::Kill(_)
        | RequestBody::Restart(_)
        | RequestBody::Reload(_)
        | RequestBody::Scale(_) => Role::Admin,
    }
}

/// Whether a request lists what may be long (pools, events, streams,
/// streamlets, tenants): its cost grows with what it lists, and listings share a budget
/// of the daemon's thread time (`crate::fairness`).
pub fn is_listing(body: &RequestBody) -> bool {
    matches!(
        body,
        RequestBody::Status(_)
            | RequestBody::Events(_)
            | RequestBody::Streams(_)
            | RequestBody::Workers(_)
            | RequestBody::Worker(_)
            | RequestBody::Quota(_)
    )
}

pub fn dispatch(
    daemon: &std::sync::Arc<Daemon>,
    peer: &Peer,
    id: u64,
    body: RequestBody,
    reader: &mut FrameReader,
    sink: &EventSink,
) -> Dispatched {
    let name = body.name();
    let needed = needs(&body);
    let role = peer.role(daemon);
    if role < needed {
        if matches!(body, RequestBody::Open(_)) {
            // Its descriptor is not ours to keep: closed now.
            drop(reader.take_fd());
        }
        crate::logcap::limiter().warn_peer(
            "unauthorized",
            peer.uid,
            format_args!(
                "unauthorized request refused: `{name}` needs the {needed} role; uid {} (gids {:?}, pid {:?}) has the {role} role",
                peer.uid, peer.gids, peer.pid
            ),
        );
        return Dispatched::Reply(ReplyBody::Error(ErrorBody::new(
            ErrorCode::Unauthorized,
            format!(
                "`{name}` needs the {needed} role; uid {} (gids {:?}) has the {} role: grant it in the config's [access] table",
                peer.uid, peer.gids, role
            ),
        )));
    }
    if let RequestBody::Reload(_) = &body {
        // Off the event loop's path (it reads a file): the reply is queued
        // when the reload is done.
        let (done, queued) = tokio::sync::oneshot::channel();
        let (daemon, sink) = (daemon.clone(), sink.clone());
        tokio::spawn(async move {
            let body = match crate::reload::reload(daemon).await {
                Ok(summary) => ReplyBody::Reloaded(summary),
                Err(error) => ReplyBody::Error(error),
            };
            sink.push(crate::events::encode_reply(sink.encoding(), streamlet_proto::Reply { id, body }));
            let _ = done.send(());
        });
        return Dispatched::Later(queued);
    }
    if let RequestBody::Events(request) = &body {
        if request.follow {
            // The reply goes into the queue under the core's lock, with the
            // subscription: no event can come between the two.
            let mut core = daemon.core();
            let log = core.events(request.recent, true, sink);
            let reply = streamlet_proto::Reply { id, body: ReplyBody::Events(log) };
            sink.push(crate::events::encode_reply(sink.encoding(), reply));
            drop(core);
            let (done, queued) = tokio::sync::oneshot::channel();
            let _ = done.send(());
            return Dispatched::Later(queued);
        }
    }
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
        RequestBody::Reload(_) => unreachable!("answered above"),
        RequestBody::Scale(request) => monitor::scale(daemon, request),
        RequestBody::Events(request) => {
            Ok(ReplyBody::Events(daemon.core().events(request.recent, request.follow, sink)))
        }
    };
    Dispatched::Reply(match reply {
        Ok(body) => body,
        Err(error) => {
            tracing::debug!(request = name, %error, "request refused");
            ReplyBody::Error(error)
        }
    })
}
