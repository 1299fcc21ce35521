//! `worker`, `drain`, `kill`, `restart`, `scale` and `subscribe`: the
//! operator's handles on the crash-isolation monitor and the autoscaler.

use streamlet_proto::{
    DrainRequest, ErrorBody, ReplyBody, RestartAccepted, RestartRequest, ScaleRequest, SubscribeRequest, WorkerRef,
};

use crate::context::Daemon;
use crate::core::unknown_worker;
use crate::events::EventSink;
use crate::validate;

pub fn worker(daemon: &Daemon, request: WorkerRef) -> Result<ReplyBody, ErrorBody> {
    let rows = daemon.core().worker_infos(None)?;
    let (mut info, cgroup) =
        rows.into_iter().find(|(info, _)| info.id == request.worker).ok_or_else(|| unknown_worker(request.worker))?;
    // The cgroup is read outside the lock.
    info.usage = cgroup.and_then(|c| daemon.sandbox.usage(&c));
    Ok(ReplyBody::Worker(Box::new(daemon.core().worker_detail(request.worker, info)?)))
}

pub fn drain(daemon: &Daemon, request: DrainRequest) -> Result<ReplyBody, ErrorBody> {
    let request = validate::drain(request)?;
    let timeout = request.timeout.unwrap_or(daemon.config.daemon.shutdown_timeout);
    daemon.core().drain(request.worker, timeout)?;
    Ok(ReplyBody::Draining(WorkerRef { worker: request.worker }))
}

pub fn kill(daemon: &Daemon, request: WorkerRef) -> Result<ReplyBody, ErrorBody> {
    daemon.core().kill_by_operator(request.worker)?;
    Ok(ReplyBody::Killed(request))
}

pub fn restart(daemon: &Daemon, request: RestartRequest) -> Result<ReplyBody, ErrorBody> {
    let workers = daemon.core().restart_pool(&request.pool)?;
    Ok(ReplyBody::Restarting(RestartAccepted { pool: request.pool, workers }))
}

pub fn scale(daemon: &Daemon, request: ScaleRequest) -> Result<ReplyBody, ErrorBody> {
    let request = validate::scale(request)?;
    Ok(ReplyBody::Scaled(daemon.core().scale(&request)?))
}

pub fn subscribe(daemon: &Daemon, sink: &EventSink) -> Result<ReplyBody, ErrorBody> {
    daemon.core().subscribe(sink.clone());
    Ok(ReplyBody::Subscribed(SubscribeRequest {}))
}
