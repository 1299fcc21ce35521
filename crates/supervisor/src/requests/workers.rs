//! `workers`: the streamlets.

use streamlet_proto::{ErrorBody, ReplyBody, WorkerList, WorkersRequest};

use crate::daemon::Daemon;

pub fn workers(daemon: &Daemon, request: WorkersRequest) -> Result<ReplyBody, ErrorBody> {
    let workers = daemon.core().worker_infos(request.pool.as_deref())?;
    Ok(ReplyBody::Workers(WorkerList { workers }))
}
