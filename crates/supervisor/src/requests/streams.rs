//! `streams`: the open streams, a page at a time.

use streamlet_proto::{ErrorBody, ReplyBody, StreamList, StreamsRequest, MAX_STREAMS_PAGE};

use crate::context::Daemon;

pub fn streams(daemon: &Daemon, request: StreamsRequest) -> Result<ReplyBody, ErrorBody> {
    let limit = request.limit.unwrap_or(MAX_STREAMS_PAGE).clamp(1, MAX_STREAMS_PAGE) as usize;
    let (streams, next) = daemon.core().stream_infos(request.pool.as_deref(), request.after, limit)?;
    Ok(ReplyBody::Streams(StreamList { streams, next }))
}
