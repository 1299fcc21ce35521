//! The daemon's start-up, its clock work and the shutdown sequence: it makes
//! the shared [`Daemon`] context and starts the tasks that use it.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use crate::config::Config;
use crate::context::stopped;
pub use crate::context::Daemon;
use crate::core::Core;
use crate::exe::WorkerExe;
use crate::listener::{BindError, ControlSocket};
use crate::reload::reload;
use crate::sandbox::{Sandbox, SandboxError};
use crate::{server, spawner};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Bind(#[from] BindError),
    #[error("cannot open the streamlet binary {path}: {source} (check daemon.worker_binary; without it, the daemon runs its own executable as the built-in worker)")]
    WorkerBinary { path: PathBuf, source: std::io::Error },
    #[error("cannot listen: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Front(#[from] crate::front::FrontError),
}

/// How often leases and waits past their time are freed, and the streams'
/// pacing caught up with the quota.
const QUOTA_TICK: Duration = Duration::from_millis(50);

/// How often systemd's `STATUS=` line is refreshed once the daemon is ready.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The quota's clock work, until the daemon stops.
async fn quota_tick(daemon: Arc<Daemon>) {
    let mut stopping = daemon.stopping.subscribe();
    let mut tick = tokio::time::interval(QUOTA_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stats_interval = daemon.config.daemon.stats_interval;
    let mut status_said = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let mut core = daemon.core();
                // (Fed here, on the event loop and through the core's lock:
                // if either is stuck, systemd's watchdog goes hungry.)
                let mut notifier = daemon.notifier.lock().unwrap_or_else(|p| p.into_inner());
                notifier.feed();
                if !notifier.is_ready() && core.at_min() {
                    notifier.ready(&core.status_line());
                    status_said = Instant::now();
                } else if notifier.is_ready() && status_said.elapsed() >= STATUS_EVERY {
                    notifier.status(&core.status_line());
                    status_said = Instant::now();
                }
                drop(notifier);
                core.expire_leases();
                core.tick_waiting();
                crate::logcap::limiter().flush();
                core.pace(stats_interval);
                core.tick_monitor();
                let save = core.tick_autoscale(crate::core::wall_ms());
                let refits = core.refit_jobs();
                let history = save.then(|| core.history_file());
                drop(core);
                if let Some(history) = history {
                    daemon.state.save_history(history);
                }
                for (pool, job) in refits {
                    // A grid search (up to about 0.1 s): not under the lock.
                    let daemon = daemon.clone();
                    tokio::task::spawn_blocking(move || {
                        let model = job.fit();
                        daemon.core().install_model(&pool, model);
                    });
                }
            }
            _ = stopped(&mut stopping) => return,
        }
    }
}

/// Says, at start, what the descriptor limit allows, and warns when the
/// pools' capacity is more than that.
fn say_what_descriptors_allow(fds: &crate::fds::FdBudget, config: &Config) {
    let streamlets: usize = config.pools.values().map(|p| p.workers_max as usize + usize::from(p.spare)).sum();
    let capacity: usize = config.pools.values().map(|p| p.workers_max as usize * p.streams_per_worker as usize).sum();
    let fit = fds.streams_that_fit(streamlets, 32);
    if capacity > fit {
        tracing::warn!(
            limit = fds.limit(),
            streams = fit,
            capacity,
            "the descriptor limit (RLIMIT_NOFILE {}) allows about {fit} streams, fewer than the pools' {capacity}:              opens past it are refused as overloaded; raise LimitNOFILE= (systemd) or ulimit -n",
            fds.limit()
        );
    } else {
        tracing::info!(limit = fds.limit(), streams = fit, "the descriptor limit allows about {fit} streams");
    }
}

/// Runs the daemon until SIGTERM or SIGINT, then shuts down in order. `ready`
/// is called once the socket is listening, with its path.
pub async fn run(
    config: Config,
    socket_path: PathBuf,
    ready: impl FnOnce(&std::path::Path),
) -> Result<(), DaemonError> {
    let worker_exe = match &config.daemon.worker_binary {
        Some(path) => WorkerExe::open(path),
        None => WorkerExe::builtin(),
    }
    .map_err(|source| DaemonError::WorkerBinary {
        path: config.daemon.worker_binary.clone().unwrap_or_else(|| "/proc/self/exe".into()),
        source,
    })?;
    let worker_binary = worker_exe.path().to_owned();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;

    let mut sandbox = Sandbox::probe(&config, &socket_path);
    if !sandbox.missing().is_empty() {
        if config.sandbox.required {
            return Err(SandboxError::Incomplete(sandbox.missing().to_vec()).into());
        }
        for line in sandbox.missing() {
            tracing::warn!("sandbox incomplete (running anyway: [sandbox] required = false): {line}");
        }
    }
    let mut passed = crate::systemd::passed_sockets()?;
    let mut socket = match crate::systemd::control_socket(&mut passed)? {
        Some(fd) => {
            let socket = ControlSocket::from_activation(fd)?;
            if socket.path() != socket_path {
                tracing::info!(
                    passed = %socket.path().display(), configured = %socket_path.display(),
                    "listening on the socket systemd passed, not the configured path"
                );
            }
            socket
        }
        None => ControlSocket::bind_with_group(&socket_path, config.access.socket_group)?,
    };
    let listener = socket.take_listener()?;
    // The pools' own listeners, before anything says the daemon is ready.
    let doors = crate::front::open_doors(&config, passed)?;
    sandbox.prepare(socket.path(), config.sandbox.required)?;
    tracing::info!(sandbox = %sandbox.describe(), "sandbox ready");
    let (stopping, _) = watch::channel(false);
    let state_dir = config.daemon.state_dir.clone().unwrap_or_else(|| crate::state::default_state_dir(socket.path()));
    let state = crate::state::StateDir::open(&state_dir);
    let notifier = crate::systemd::Notifier::from_env();
    let mut core = Core::new(&config);
    core.resume_history(state.load_history(), crate::core::wall_ms());
    notifier.status(&format!("starting {} streamlets", core.starting_count()));
    let fds = crate::fds::FdBudget::of_this_process();
    say_what_descriptors_allow(&fds, &config);
    let daemon = Arc::new(Daemon {
        core: Mutex::new(core),
        state,
        notifier: Mutex::new(notifier),
        access: Mutex::new(config.access.clone()),
        backlog: Arc::default(),
        listing_time: Default::default(),
        fds,
        config,
        socket_path: socket.path().to_owned(),
        worker_binary,
        worker_exe,
        started: Instant::now(),
        sandbox: Arc::new(sandbox),
        worker_reaped: Notify::new(),
        stopping,
        spawner: crate::spawn_thread::SpawnThread::new(tokio::runtime::Handle::current()),
        listening: crate::front::places(&doors),
    });
    tracing::info!(
        socket = %daemon.socket_path.display(), config = %daemon.config.source,
        worker = %daemon.worker_binary.display(), "streamletd starting"
    );
    ready(socket.path());

    let slots = daemon.core().initial_slots();
    for (pool, slot) in slots {
        spawner::fill_slot(daemon.clone(), pool, slot, Duration::ZERO);
    }
    let (orders, mut ordered) = tokio::sync::mpsc::unbounded_channel();
    daemon.core().set_spawn_orders(orders);
    let spawner_daemon = daemon.clone();
    // Ends when the core drops its sender at shutdown, after the orders
    // queued before (each settled by `fill_ordered`, so none stays pending).
    tokio::spawn(async move {
        while let Some(order) = ordered.recv().await {
            spawner::fill_ordered(spawner_daemon.clone(), order);
        }
    });
    let server = tokio::spawn(server::serve(daemon.clone(), listener));
    if let Some(listen) = daemon.config.metrics.clone() {
        let metrics_daemon = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::scrape::serve(metrics_daemon, listen.clone()).await {
                tracing::error!(listen = ?listen, error = %e, "cannot serve metrics");
            }
        });
    }
    tokio::spawn(quota_tick(daemon.clone()));
    for door in doors {
        tokio::spawn(crate::front::serve(daemon.clone(), door));
    }

    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let signal = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                // (The outcome is logged either way.)
                tokio::spawn(reload(daemon.clone()));
            }
        }
    };
    tracing::info!(signal, "shutting down");
    shutdown(&daemon, socket, server).await;
    Ok(())
}

/// The shutdown sequence: end every stream with `shutdown` (refusing new
/// ones), stop accepting and remove the socket, let client connections flush
/// those last events and close, hang up on every streamlet so it exits, and
/// wait for them (killing the rest after `shutdown_timeout`).
async fn shutdown(daemon: &Arc<Daemon>, socket: ControlSocket, server: tokio::task::JoinHandle<()>) {
    let links = daemon.core().begin_shutdown();
    daemon
        .notifier
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .stopping(&format!("shutting down: stopping {} streamlets", links.len()));
    let history = daemon.core().history_file();
    let state = daemon.clone();
    let saved = tokio::task::spawn_blocking(move || state.state.save_history_now(&history));
    if tokio::time::timeout(Duration::from_secs(2), saved).await.is_err() {
        tracing::warn!("writing the demand history takes more than 2 s; not waiting for it");
    }
    daemon.stopping.send_replace(true);
    drop(socket);
    for link in &links {
        link.hang_up();
    }
    drop(links);
    let deadline = tokio::time::Instant::now() + daemon.config.daemon.shutdown_timeout;
    if !wait_for_workers(daemon, deadline).await {
        tracing::warn!("streamlets still running after the shutdown timeout; killing them");
        daemon.core().kill_all();
        wait_for_workers(daemon, tokio::time::Instant::now() + Duration::from_secs(2)).await;
    }
    // The server stopped accepting at once; its connections have had their
    // second to flush.
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    // Removes whatever the monitors' removals have not reached yet, too.
    let sandbox = daemon.sandbox.clone();
    let _ = tokio::task::spawn_blocking(move || sandbox.teardown()).await;
    tracing::info!("streamletd stopped");
}

async fn wait_for_workers(daemon: &Daemon, deadline: tokio::time::Instant) -> bool {
    loop {
        let reaped = daemon.worker_reaped.notified();
        // Spawns in flight count too: one finishing late must not find its
        // cgroup tree torn down.
        let done = |core: &crate::core::Core| core.live_workers() == 0 && core.pending_spawns() == 0;
        if done(&daemon.core()) {
            return true;
        }
        if tokio::time::timeout_at(deadline, reaped).await.is_err() {
            return done(&daemon.core());
        }
    }
}
