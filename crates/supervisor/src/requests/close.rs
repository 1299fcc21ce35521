//! `close`: end a stream.

use streamlet_proto::{CloseRequest, Closed, ErrorBody, ReplyBody};

use crate::context::Daemon;

pub fn close(daemon: &Daemon, request: CloseRequest) -> Result<ReplyBody, ErrorBody> {
    daemon.core().close(request.stream)?;
    Ok(ReplyBody::Closed(Closed { stream: request.stream }))
}
