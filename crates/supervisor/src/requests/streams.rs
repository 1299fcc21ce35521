//! `streams`: the open streams, a page at a time.

use streamlet_proto::{ErrorBody, ReplyBody, StreamList, StreamsRequest, MAX_STREAMS_PAGE};

use crate::context::Daemon;

pub fn streams(daemon: &Daemon, request: StreamsRequest) -> Result<ReplyBody, ErrorBody> {
    let limit = crate::validate::page_limit(request.limit, MAX_STREAMS_PAGE);
    let (streams, next) = daemon.core().stream_infos(request.pool.as_deref(), request.after, limit)?;
    Ok(ReplyBody::Streams(StreamList { streams, next }))
}
