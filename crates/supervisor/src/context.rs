//! What every task of the daemon shares: the [`Daemon`] context. A leaf of
//! the daemon's modules: the tasks (the control server, connections,
//! requests, the spawner, the metrics server) import it, and it imports none
//! of them; `daemon.rs` makes one and runs them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::core::Core;
use crate::exe::WorkerExe;
use crate::sandbox::Sandbox;

/// What every task of the daemon shares.
#[derive(Debug)]
pub struct Daemon {
    pub config: Config,
    pub socket_path: PathBuf,
    pub worker_binary: PathBuf,
    pub worker_exe: WorkerExe,
    pub started: Instant,
    pub sandbox: Arc<Sandbox>,
    pub(crate) core: Mutex<Core>,
    /// Notified whenever a streamlet process has been reaped.
    pub(crate) worker_reaped: Notify,
    /// Becomes true when the daemon starts shutting down.
    pub(crate) stopping: watch::Sender<bool>,
    /// The thread every streamlet is forked from.
    pub(crate) spawner: crate::spawn_thread::SpawnThread,
    /// Where the demand history is kept.
    pub state: crate::state::StateDir,
    /// What systemd hears: readiness, status, the watchdog.
    pub(crate) notifier: Mutex<crate::systemd::Notifier>,
    /// Who may do what: `config.access`, or what the last reload read.
    pub(crate) access: Mutex<crate::config::Access>,
    /// What every control connection has queued and not written.
    pub(crate) backlog: Arc<crate::events::Backlog>,
    /// The thread time listings took lately.
    pub(crate) listing_time: crate::fairness::ListingTime,
    /// What descriptors the daemon may hold, and holds.
    pub(crate) fds: crate::fds::FdBudget,
    /// Where each pool with `listen` accepts its clients, as bound.
    pub(crate) listening: std::collections::BTreeMap<String, Vec<String>>,
}

impl Daemon {
    /// The core, locked. Never hold the guard across an `.await`.
    pub fn core(&self) -> MutexGuard<'_, Core> {
        // A panic while holding the lock is a bug that already killed a
        // task; the state itself stays usable, so carry on with it.
        self.core.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Resolves once the daemon starts shutting down.
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}
