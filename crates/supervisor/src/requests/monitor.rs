//! `worker`, `drain`, `kill`, `restart` and `subscribe`: the operator's
//! handles on the crash-isolation monitor.

use std::time::Duration;

use streamlet_proto::{
    DrainRequest, ErrorBody, ReplyBody, RestartAccepted, RestartRequest, SubscribeRequest, WorkerRef,
};

use crate::context::Daemon;
use crate::core::unknown_worker;
use crate::events::EventSink;

/// The longest drain an operator may ask for.
pub const MAX_DRAIN_MS: u64 = 24 * 3_600_000;

pub fn worker(daemon: &Daemon, request: WorkerRef) -> Result<ReplyBody, ErrorBody> {
    let rows = daemon.core().worker_infos(None)?;
    let (mut info, cgroup) =
        rows.into_iter().find(|(info, _)| info.id == request.worker).ok_or_else(|| unknown_worker(request.worker))?;
    // The cgroup is read outside the lock.
    info.usage = cgroup.and_then(|c| daemon.sandbox.usage(&c));
    Ok(ReplyBody::Worker(Box::new(daemon.core().worker_detail(request.worker, info)?)))
}

pub fn drain(daemon: &Daemon, request: DrainRequest) -> Result<ReplyBody, ErrorBody> {
    let timeout = match request.timeout_ms {
        Some(ms) if ms > MAX_DRAIN_MS => {
            return Err(ErrorBody::new(
                streamlet_proto::ErrorCode::BadRequest,
                format!("timeout_ms is at most {MAX_DRAIN_MS} (a day)"),
            ))
        }
        Some(ms) => Duration::from_millis(ms),
        None => daemon.config.daemon.shutdown_timeout,
    };
    let id = request.worker;
    daemon.core().drain(id, timeout)?;
    Ok(ReplyBody::Draining(WorkerRef { worker: id }))
}

pub fn kill(daemon: &Daemon, request: WorkerRef) -> Result<ReplyBody, ErrorBody> {
    daemon.core().kill_by_operator(request.worker)?;
    Ok(ReplyBody::Killed(request))
}

pub fn restart(daemon: &Daemon, request: RestartRequest) -> Result<ReplyBody, ErrorBody> {
    let workers = daemon.core().restart_pool(&request.pool)?;
    Ok(ReplyBody::Restarting(RestartAccepted { pool: request.pool, workers }))
}

pub fn subscribe(daemon: &Daemon, sink: &EventSink) -> Result<ReplyBody, ErrorBody> {
    daemon.core().subscribe(sink.clone());
    Ok(ReplyBody::Subscribed(SubscribeRequest {}))
}
