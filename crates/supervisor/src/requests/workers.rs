//! `workers`: the streamlets.

use streamlet_proto::{ErrorBody, ReplyBody, WorkerList, WorkersRequest};

use crate::context::Daemon;

/// Accounting is read from each streamlet's cgroup after the core's lock is
/// released (a few small file reads per streamlet).
pub fn workers(daemon: &Daemon, request: WorkersRequest) -> Result<ReplyBody, ErrorBody> {
    let infos = daemon.core().worker_infos(request.pool.as_deref())?;
    let workers = infos
        .into_iter()
        .map(|(mut info, cgroup)| {
            info.usage = cgroup.and_then(|c| daemon.sandbox.usage(&c));
            info
        })
        .collect();
    Ok(ReplyBody::Workers(WorkerList { workers }))
}
