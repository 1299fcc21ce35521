//! Reading the configuration again: SIGHUP, or the `reload` request.

use std::sync::Arc;

use crate::config::Config;
use crate::context::Daemon;

/// Reads the configuration file again and applies it (SIGHUP, or the
/// `reload` request). An invalid file changes nothing and says why; what
/// needs a restart of the daemon is applied at the next start and said so.
///
/// Reading the file (and the user and group names it gives) and writing the
/// new limits to cgroups are done on blocking threads, not on the event
/// loop: a slow name service or a large memory reclaim must not stall every
/// stream, nor starve the watchdog.
pub(crate) async fn reload(daemon: Arc<Daemon>) -> Result<streamlet_proto::Reloaded, streamlet_proto::ErrorBody> {
    use streamlet_proto::{ErrorBody, ErrorCode};
    let source = daemon.config.source.clone();
    if source == crate::config::EMBEDDED {
        return Err(ErrorBody::new(
            ErrorCode::BadConfig,
            "streamletd runs on the embedded default configuration: there is no file to read again \
             (start it with --config FILE)",
        ));
    }
    let path = std::path::PathBuf::from(&source);
    let loaded = tokio::task::spawn_blocking(move || Config::load(&path))
        .await
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, format!("reading the configuration: {e}")))?;
    let new = loaded.map_err(|e| {
        tracing::error!(error = %e, "reload refused: the configuration is invalid; the running one stays");
        ErrorBody::new(ErrorCode::BadConfig, format!("{e} (the running configuration stays)"))
    })?;
    let old = &daemon.config;
    let mut restart = Vec::new();
    let (a, b) = (&old.daemon, &new.daemon);
    for (key, differs) in [
        ("daemon.socket", a.socket != b.socket),
        ("daemon.worker_binary", a.worker_binary != b.worker_binary),
        ("daemon.shutdown_timeout", a.shutdown_timeout != b.shutdown_timeout),
        ("daemon.stats_interval", a.stats_interval != b.stats_interval),
        ("daemon.state_dir", a.state_dir != b.state_dir),
        ("[sandbox]", old.sandbox != new.sandbox),
        ("[metrics] listen", old.metrics != new.metrics),
        ("[access] socket_group", old.access.socket_group != new.access.socket_group),
    ] {
        if differs {
            restart.push(format!("{key} changed: it takes effect when streamletd is restarted"));
        }
    }
    *daemon.access.lock().unwrap_or_else(|p| p.into_inner()) = new.access.clone();
    let reconfigured = daemon.core().reconfigure(&new);
    let (sandbox, limits) = (daemon.sandbox.clone(), reconfigured.limits);
    let _ = tokio::task::spawn_blocking(move || {
        for (cgroup, pool) in &limits {
            if let Err(e) = sandbox.update_limits(cgroup, pool) {
                tracing::warn!(pool = %pool.name, error = %e, "cannot apply new limits to a live streamlet");
            }
        }
    })
    .await;
    let mut summary = reconfigured.summary;
    for note in &restart {
        tracing::warn!("{note}");
    }
    summary.notes.extend(restart);
    Ok(summary)
}
