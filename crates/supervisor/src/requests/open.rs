//! `open`: place a client connection on a streamlet.

use std::os::fd::AsFd;

use streamlet_proto::conn::Attached;
use streamlet_proto::sock::is_connected_stream_socket;
use streamlet_proto::{ErrorBody, ErrorCode, OpenRequest, ReplyBody};

use super::Dispatched;
use crate::core::OpenOutcome;
use crate::daemon::Daemon;
use crate::events::EventSink;

/// Bytes in a tenant name, at most.
pub const MAX_TENANT_LEN: usize = 128;
/// Labels on one stream, at most.
pub const MAX_LABELS: usize = 32;
/// Bytes in a label's key, at most.
pub const MAX_LABEL_KEY_LEN: usize = 64;
/// Bytes in a label's value, at most.
pub const MAX_LABEL_VALUE_LEN: usize = 1024;
/// The longest an open may wait for room, in milliseconds (ten minutes).
pub const MAX_WAIT_MS: u64 = 600_000;

pub fn open(
    daemon: &Daemon,
    id: u64,
    request: OpenRequest,
    fd: Attached,
    sink: &EventSink,
) -> Result<Dispatched, ErrorBody> {
    check_sizes(&request)?;
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
    match daemon.core().open(request, fd, Some(sink.clone()), id) {
        OpenOutcome::Done(Ok(opened)) => {
            tracing::debug!(stream = %opened.stream, worker = %opened.worker, pool = %opened.pool, "stream opened");
            Ok(Dispatched::Reply(ReplyBody::Opened(opened)))
        }
        OpenOutcome::Done(Err(error)) => Err(error),
        OpenOutcome::Waiting(done) => Ok(Dispatched::Later(done)),
    }
}

fn check_sizes(request: &OpenRequest) -> Result<(), ErrorBody> {
    let bad = |message: String| Err(ErrorBody::new(ErrorCode::BadRequest, message));
    if request.wait_ms.is_some_and(|w| w > MAX_WAIT_MS) {
        return bad(format!("wait_ms is at most {MAX_WAIT_MS} (ten minutes)"));
    }
    if request.tenant.as_ref().is_some_and(|t| t.len() > MAX_TENANT_LEN) {
        return bad(format!("tenant is longer than {MAX_TENANT_LEN} bytes"));
    }
    // They become environment variables of `exec` commands, where a NUL
    // cannot go.
    if request.tenant.as_ref().is_some_and(|t| t.contains('\0'))
        || request.labels.iter().any(|(k, v)| k.contains('\0') || v.contains('\0'))
    {
        return bad("tenant and labels must not contain NUL bytes".into());
    }
    if request.labels.len() > MAX_LABELS {
        return bad(format!("{} labels; at most {MAX_LABELS} are allowed", request.labels.len()));
    }
    for (key, value) in &request.labels {
        if key.len() > MAX_LABEL_KEY_LEN || value.len() > MAX_LABEL_VALUE_LEN {
            return bad(format!(
                "label {:?} is too long: keys take at most {MAX_LABEL_KEY_LEN} bytes, values {MAX_LABEL_VALUE_LEN}",
                key.chars().take(MAX_LABEL_KEY_LEN).collect::<String>()
            ));
        }
    }
    Ok(())
}
