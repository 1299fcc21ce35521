//! `open`: place a client connection on a streamlet.

use std::os::fd::{AsFd, OwnedFd};

use streamlet_proto::fdpass::is_connected_stream_socket;
use streamlet_proto::{ErrorBody, ErrorCode, OpenRequest, ReplyBody};

use crate::daemon::Daemon;
use crate::events::EventSink;

pub fn open(
    daemon: &Daemon,
    request: OpenRequest,
    fd: Option<OwnedFd>,
    sink: &EventSink,
) -> Result<ReplyBody, ErrorBody> {
    let Some(fd) = fd else {
        return Err(ErrorBody::new(
            ErrorCode::MissingFd,
            "open needs the client connection attached as SCM_RIGHTS to the frame's sendmsg",
        ));
    };
    match is_connected_stream_socket(fd.as_fd()) {
        Ok(true) => {}
        Ok(false) => {
            return Err(ErrorBody::new(
                ErrorCode::BadFd,
                "the attached descriptor is not a connected stream socket (TCP or Unix SOCK_STREAM)",
            ))
        }
        Err(e) => return Err(ErrorBody::new(ErrorCode::BadFd, format!("cannot inspect the attached descriptor: {e}"))),
    }
    let opened = daemon.core().open(request, fd, Some(sink.clone()))?;
    tracing::debug!(stream = %opened.stream, worker = %opened.worker, pool = %opened.pool, "stream opened");
    Ok(ReplyBody::Opened(opened))
}
