//! `streams`: the open streams.

use streamlet_proto::{ErrorBody, ReplyBody, StreamList, StreamsRequest};

use crate::daemon::Daemon;

pub fn streams(daemon: &Daemon, request: StreamsRequest) -> Result<ReplyBody, ErrorBody> {
    let streams = daemon.core().stream_infos(request.pool.as_deref())?;
    Ok(ReplyBody::Streams(StreamList { streams }))
}
