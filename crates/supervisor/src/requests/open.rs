//! `open`: place a client connection on a streamlet.

use std::os::fd::AsFd;

use streamlet_proto::conn::Attached;
use streamlet_proto::sock::is_connected_stream_socket;
use streamlet_proto::{ErrorBody, ErrorCode, OpenRequest, ReplyBody};

use super::dispatched::Dispatched;
use crate::context::Daemon;
use crate::core::OpenOutcome;
use crate::events::EventSink;

pub fn open(
    daemon: &Daemon,
    id: u64,
    request: OpenRequest,
    fd: Attached,
    sink: &EventSink,
) -> Result<Dispatched, ErrorBody> {
    let request = crate::validate::open(request)?;
    // (Before anything else is taken: near the descriptor limit, a stream
    // would eat the reserve the daemon keeps for itself.)
    let streamlets = daemon.core().live_workers();
    if let Some(why) = daemon.fds.refuse_stream(streamlets) {
        return Err(ErrorBody::new(ErrorCode::Overloaded, why));
    }
    let fd = match fd {
        Attached::Fd(fd) => fd,
        Attached::None => {
            return Err(ErrorBody::new(
                ErrorCode::MissingFd,
                "open needs the client connection attached as SCM_RIGHTS to the frame's sendmsg",
            ))
        }
        Attached::Lost => {
            return Err(ErrorBody::new(
                ErrorCode::Overloaded,
                "streamletd's descriptor table was full and the kernel dropped the connection attached to this open; retry later",
            ))
        }
    };
    match is_connected_stream_socket(fd.as_fd()) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ErrorBody::new(
                ErrorCode::BadFd,
                "the attached descriptor is not a connected TCP or Unix stream socket",
            ))
        }
        Err(e) => return Err(ErrorBody::new(ErrorCode::BadFd, format!("cannot inspect the attached descriptor: {e}"))),
    }
    match daemon.core().open(&request, fd, Some(sink.clone()), id) {
        OpenOutcome::Done(Ok(opened)) => {
            tracing::debug!(stream = %opened.stream, worker = %opened.worker, pool = %opened.pool, "stream opened");
            Ok(Dispatched::Reply(ReplyBody::Opened(opened)))
        }
        OpenOutcome::Done(Err(error)) => Err(error),
        OpenOutcome::Waiting(done) => Ok(Dispatched::Later(done)),
    }
}
