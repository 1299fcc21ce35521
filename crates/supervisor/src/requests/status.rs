//! `status`: the daemon and its pools.

use streamlet_proto::{ErrorBody, ReplyBody, StatusReport};

use crate::context::Daemon;

pub fn status(daemon: &Daemon) -> Result<ReplyBody, ErrorBody> {
    let mut pools = daemon.core().pool_statuses();
    for pool in &mut pools {
        pool.listening = daemon.listening.get(&pool.name).cloned().unwrap_or_default();
    }
    Ok(ReplyBody::Status(StatusReport {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        uptime_ms: daemon.started.elapsed().as_millis() as u64,
        socket: daemon.socket_path.display().to_string(),
        pools,
    }))
}
