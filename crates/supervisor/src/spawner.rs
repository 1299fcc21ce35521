//! Starting streamlets, reading their channels, and reaping them.
//!
//! Each streamlet has three tasks: its reader (messages from it), its flusher
//! (messages to it that did not fit at once) and its monitor, which owns the
//! child process, reaps it through its pidfd (nothing here calls
//! `waitpid(-1)`), kills it on request, and reports the death to the core.

use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use streamlet_proto::channel::{encode, seqpacket_pair, Channel, RecvBuf};
use streamlet_proto::fdpass::send_with_fds;
use streamlet_proto::worker::{FromWorker, Init, ToWorker};
use streamlet_proto::{ExitCause, WorkerId};
use streamlet_sandbox::Child;
use streamlet_sandbox::SpawnSpec;
use tokio::sync::mpsc;

use crate::context::Daemon;
use crate::core::{KillRequest, NewWorker};
use crate::link::WorkerLink;
use crate::sandbox::Confinement;

/// How long a streamlet may keep running after closing its channel before
/// it is killed as broken.
const HANGUP_GRACE: Duration = Duration::from_secs(1);

/// How long a dead streamlet's reader may take to read what it left.
const DRAIN_LIMIT: Duration = Duration::from_millis(100);

/// The first wait after a failed spawn; it doubles to 5 s.
const FIRST_RETRY: Duration = Duration::from_millis(100);

/// How long a new streamlet has to say it is ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often a streamlet says it is alive: four times per timeout, so that
/// one late heartbeat is no death sentence.
fn heartbeat_interval(timeout: Duration) -> Duration {
    timeout / 4
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("pool {0:?} is not configured")]
    UnknownPool(String),
    #[error("control channel: {0}")]
    Channel(#[from] std::io::Error),
    #[error(transparent)]
    Spawn(#[from] streamlet_sandbox::SpawnError),
    #[error("sandbox: {0}")]
    Sandbox(#[from] crate::sandbox::SandboxError),
}

/// Starts a streamlet in `slot` of `pool` after `delay`, retrying with
/// backoff while starting fails. Runs in a task of its own.
///
/// The core counted the spawn as pending when it planned it
/// ([`Core::initial_slots`](crate::core::Core::initial_slots), a death's
/// [`Respawn`](crate::core::Respawn)); this settles it.
pub fn fill_slot(daemon: Arc<Daemon>, pool: String, slot: usize, delay: Duration) {
    tokio::spawn(retry_until_started(daemon, pool, slot, delay));
}

/// The loop of [`fill_slot`].
async fn retry_until_started(daemon: Arc<Daemon>, pool: String, slot: usize, mut delay: Duration) {
    let mut stopping = daemon.stopping.subscribe();
    loop {
        if !delay.is_zero() {
            // A shutdown cuts the wait short (and then settles the spawn).
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = crate::context::stopped(&mut stopping) => {}
            }
        }
        if !daemon.core().spawning_in(&pool) {
            settled(&daemon, &pool);
            return;
        }
        match start_off_thread(&daemon, &pool, slot).await {
            Ok(id) => {
                tracing::debug!(worker = %id, %pool, slot, "streamlet spawned");
                settled(&daemon, &pool);
                return;
            }
            Err(e) => {
                delay = (delay * 2).clamp(FIRST_RETRY, Duration::from_secs(5));
                tracing::error!(%pool, slot, error = %e, retry_in_ms = delay.as_millis() as u64, "cannot start a streamlet");
            }
        }
    }
}

/// Starts a streamlet the autoscaler asked for, once: a failure frees the
/// slot and makes the pool's scaler back off (it asks again later), instead
/// of retrying here.
pub fn fill_ordered(daemon: Arc<Daemon>, order: crate::core::SpawnOrder) {
    tokio::spawn(async move {
        let crate::core::SpawnOrder { pool, slot } = order;
        if !daemon.core().spawning_in(&pool) {
            settled(&daemon, &pool);
            return;
        }
        match start_off_thread(&daemon, &pool, slot).await {
            Ok(id) => {
                tracing::debug!(worker = %id, %pool, slot, "streamlet spawned for the autoscaler");
                daemon.core().autoscale_spawned(&pool);
            }
            Err(e) => {
                tracing::error!(%pool, slot, error = %e, "cannot start a streamlet the autoscaler asked for; backing off");
                daemon.core().autoscale_spawn_failed(&pool, slot);
            }
        }
        daemon.worker_reaped.notify_waiters();
    });
}

/// A scheduled spawn is done (started, or given up at shutdown): the
/// shutdown sequence, which waits for spawns in flight too, looks again.
fn settled(daemon: &Daemon, pool: &str) {
    daemon.core().spawn_settled(pool);
    daemon.worker_reaped.notify_waiters();
}

/// Spawns one streamlet. Its `Init` is queued on the channel before the
/// exec, so it needs no round trip to learn who it is.
pub fn start(daemon: &Arc<Daemon>, pool: &str, slot: usize) -> Result<WorkerId, StartError> {
    let config = daemon.core().pool_config(pool).ok_or_else(|| StartError::UnknownPool(pool.to_owned()))?;
    let (ours, theirs) = seqpacket_pair()?;
    let id = daemon.core().alloc_worker_id();
    let init = ToWorker::Init(Init {
        worker: id,
        pool: pool.to_owned(),
        handler: config.handler.clone(),
        stats_interval_ms: daemon.config.daemon.stats_interval.as_millis().min(u32::MAX as u128) as u32,
        heartbeat_interval_ms: heartbeat_interval(config.heartbeat_timeout).as_millis().min(u32::MAX.into()) as u32,
    });
    send_with_fds(ours.as_fd(), &encode(&init)?, &[])?;
    let (plan, mut cgroup, uid) = daemon.sandbox.plan(&config, id)?;
    let (stderr_read, stderr_write) = crate::stderr::pipe()?;
    let spawned = streamlet_sandbox::spawn(SpawnSpec {
        program: daemon.worker_exe.exec_path(),
        arg0: Some(daemon.worker_exe.arg0().to_owned()),
        args: vec![],
        control: theirs,
        stderr: Some(stderr_write),
        plan: Some(Arc::new(plan)),
    });
    // The child has joined (or failed): the parent needs the descriptors no more.
    if let Some(cgroup) = cgroup.as_mut() {
        cgroup.close_procs();
    }
    let confinement = Confinement { cgroup: cgroup.map(Arc::new), uid };
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let sandbox = daemon.sandbox.clone();
            tokio::task::spawn_blocking(move || sandbox.release(confinement));
            return Err(e.into());
        }
    };
    let pid = child.id();
    tokio::spawn(crate::stderr::forward(id, pool.to_owned(), stderr_read));
    let channel = match Channel::new(ours) {
        Ok(channel) => channel,
        Err(e) => {
            // Not tracked yet: kill it here rather than leave it running.
            let mut child = child;
            let _ = child.start_kill();
            let sandbox = daemon.sandbox.clone();
            tokio::spawn(async move {
                let _ = child.wait().await;
                let _ = tokio::task::spawn_blocking(move || sandbox.release(confinement)).await;
            });
            return Err(e.into());
        }
    };
    let link = Arc::new(WorkerLink::new(channel));
    let (kill, kill_rx) = mpsc::unbounded_channel();
    let cgroup = confinement.cgroup.clone();
    let current = daemon.core().insert_worker(NewWorker {
        id,
        pool: pool.to_owned(),
        slot,
        pid,
        link: link.clone(),
        kill,
        confinement,
    });
    // A reload while it was being spawned: it takes the new limits now
    // (this runs on the spawn thread, where file writes may wait).
    if let (Some(current), Some(cgroup)) = (current, cgroup) {
        if current.limits != config.limits {
            if let Err(e) = daemon.sandbox.update_limits(&cgroup, &current) {
                tracing::warn!(worker = %id, error = %e, "cannot apply the pool's new limits to a new streamlet");
            }
        }
    }
    let budget = StatsBudget::new(daemon.config.daemon.stats_interval, config.streams_per_worker);
    tokio::spawn(read(daemon.clone(), id, link.clone(), budget));
    let flusher = link.clone();
    tokio::spawn(async move {
        if let Err(e) = flusher.flush_until_closed().await {
            tracing::debug!(worker = %id, error = %e, "channel flusher stopped");
        }
    });
    tokio::spawn(monitor(daemon.clone(), id, child, link, kill_rx, config.heartbeat_timeout));
    Ok(id)
}

/// How many stream counters a streamlet may report per `stats_interval`:
/// twice what it has streams for (its runtime reports each busy stream once
/// an interval, in messages of at most `MAX_STATS_PER_MESSAGE`). What it
/// sends beyond is read and ignored, so however fast it talks it costs the
/// daemon a `recv` a message, not a walk of the stream table.
#[derive(Debug)]
struct StatsBudget {
    interval: Duration,
    per_interval: usize,
    since: tokio::time::Instant,
    spent: usize,
}

impl StatsBudget {
    fn new(interval: Duration, streams_per_worker: u32) -> Self {
        let per_interval = 2 * (streams_per_worker as usize).max(streamlet_proto::worker::MAX_STATS_PER_MESSAGE);
        Self { interval, per_interval, since: tokio::time::Instant::now(), spent: 0 }
    }

    /// Whether `counters` more may be taken now.
    fn take(&mut self, counters: usize) -> bool {
        if self.since.elapsed() >= self.interval {
            (self.since, self.spent) = (tokio::time::Instant::now(), 0);
        }
        self.spent = self.spent.saturating_add(counters);
        self.spent <= self.per_interval
    }
}

/// Reads a streamlet's messages until its channel ends. Garbage gets it
/// killed as `protocol_error`.
async fn read(daemon: Arc<Daemon>, id: WorkerId, link: Arc<WorkerLink>, mut stats: StatsBudget) {
    let mut buf = RecvBuf::new();
    let violation = loop {
        // One message a turn: a streamlet that talks as fast as it can waits
        // its turn with every other task (its messages already queued would
        // otherwise be read in a run, without giving the thread up).
        tokio::task::yield_now().await;
        let message = link.channel().recv_with::<FromWorker>(&mut buf).await;
        if matches!(message, Ok(Some(_))) {
            link.heard();
        }
        match message {
            Ok(Some((FromWorker::Heartbeat, None))) => {}
            Ok(Some((_, Some(fd)))) => {
                // Whatever it is, its close must not hold up the daemon.
                streamlet_proto::foreign::dispose(fd);
                break "sent a file descriptor".to_owned();
            }
            Ok(Some((FromWorker::Ready { .. }, None))) => {
                if !daemon.core().worker_ready(id) {
                    tracing::debug!(worker = %id, "ready from a streamlet that is not starting");
                } else {
                    tracing::debug!(worker = %id, "streamlet ready");
                }
            }
            Ok(Some((FromWorker::Ended(mut ended), None))) => {
                let stream = ended.stream;
                // Its words are stored, logged and forwarded: bounded first.
                ended.reason = ended.reason.bounded();
                let mut core = daemon.core();
                // A streamlet that is already reaped had its streams ended for
                // it; its last messages are stragglers.
                if !core.stream_ended(id, ended) && core.worker_alive(id) && !core.is_shutting_down() {
                    drop(core);
                    crate::logcap::limiter().warn_worker(
                        "ended_unknown",
                        id.0,
                        format_args!("streamlet {id} reported the end of stream {stream}, which it does not serve"),
                    );
                }
            }
            Ok(Some((FromWorker::Stats { streams }, None))) => {
                let most = streamlet_proto::worker::MAX_STATS_PER_MESSAGE;
                if streams.len() > most {
                    break format!("sent {} stream counters in one message, at most {most} are allowed", streams.len());
                }
                if stats.take(streams.len()) {
                    daemon.core().stream_stats(id, &streams);
                } else {
                    crate::logcap::limiter().warn_worker(
                        "stats_flood",
                        id.0,
                        format_args!("streamlet {id} reports more stream counters than it has streams; ignoring the rest of this interval's"),
                    );
                }
            }
            Ok(None) => {
                link.mark_drained();
                // The streamlet closed its channel: it is exiting, or broken.
                // (At shutdown the shutdown sequence has its own deadline.)
                tokio::time::sleep(HANGUP_GRACE).await;
                if daemon.core().is_shutting_down() {
                    return;
                }
                let cause = ExitCause::ProtocolError { message: "closed its control channel".into() };
                daemon.core().kill_worker(id, Some(cause));
                return;
            }
            Err(e) => break e.to_string(),
        }
    };
    link.mark_drained();
    tracing::warn!(worker = %id, violation, "streamlet broke the protocol; killing it");
    daemon.core().kill_worker(id, Some(ExitCause::ProtocolError { message: violation }));
}

/// Owns the child: reaps it, kills it when asked (or when it is not ready
/// in time), reports its death, closes its link and starts its replacement.
async fn monitor(
    daemon: Arc<Daemon>,
    id: WorkerId,
    mut child: Child,
    link: Arc<WorkerLink>,
    mut kills: mpsc::UnboundedReceiver<KillRequest>,
    heartbeat_timeout: Duration,
) {
    let mut recorded: Option<ExitCause> = None;
    let ready_deadline = tokio::time::sleep(READY_TIMEOUT);
    tokio::pin!(ready_deadline);
    let mut watching_ready = true;
    let mut pulse = tokio::time::interval(heartbeat_interval(heartbeat_timeout));
    pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = pulse.tick(), if recorded.is_none() => {
                let silent = link.silent_for();
                // (Unread messages mean the daemon, not the streamlet, was slow.)
                if silent >= heartbeat_timeout && !link.unread() && !daemon.core().worker_starting(id) {
                    let silent_ms = silent.as_millis() as u64;
                    tracing::warn!(worker = %id, silent_ms, "streamlet silent past its heartbeat timeout; killing it as hung");
                    recorded = Some(ExitCause::Hung { silent_ms });
                    let _ = child.start_kill();
                }
            }
            _ = &mut ready_deadline, if watching_ready => {
                watching_ready = false;
                if daemon.core().worker_starting(id) {
                    tracing::warn!(worker = %id, "streamlet not ready in time; killing it");
                    recorded = Some(ExitCause::ProtocolError { message: format!("not ready within {READY_TIMEOUT:?}") });
                    let _ = child.start_kill();
                }
            }
            Some(request) = kills.recv() => {
                if recorded.is_none() {
                    recorded = request;
                }
                if let Err(e) = child.start_kill() {
                    tracing::debug!(worker = %id, error = %e, "kill");
                }
            }
        }
    };
    // Its last messages first: an `Ended` it sent just before dying must end
    // that stream, not see it migrated.
    link.wait_drained(DRAIN_LIMIT).await;
    // A SIGKILL with an OOM kill counted in its cgroup is the OOM killer's.
    let cgroup = daemon.core().worker_cgroup(id);
    let oom = cgroup.and_then(|c| daemon.sandbox.usage(&c)).is_some_and(|u| u.oom_kills > 0);
    let cause = match (recorded, status) {
        (Some(cause), _) => cause,
        (None, Ok(status)) if oom && status.signal() == Some(libc::SIGKILL) => ExitCause::Oom,
        (None, Ok(status)) => classify(status),
        (None, Err(e)) => ExitCause::ProtocolError { message: format!("cannot reap: {e}") },
    };
    let (respawn, confinement) = daemon.core().worker_exited(id, cause);
    link.close();
    drop(link);
    daemon.worker_reaped.notify_waiters();
    // Removing the cgroup may wait for stragglers it still holds: off the
    // daemon's thread.
    let sandbox = daemon.sandbox.clone();
    let release = move || sandbox.release(confinement);
    match respawn {
        Some(plan) if plan.delay.is_zero() => {
            // A replacement due now starts before the dead one's cgroup goes:
            // removing a cgroup holds the kernel's cgroup lock for
            // milliseconds, and the new one's creation would wait behind it.
            if !daemon.core().spawning_in(&plan.pool) {
                settled(&daemon, &plan.pool);
            } else {
                match start_off_thread(&daemon, &plan.pool, plan.slot).await {
                    Ok(_) => settled(&daemon, &plan.pool),
                    Err(e) => {
                        tracing::error!(pool = %plan.pool, slot = plan.slot, error = %e, "cannot start a streamlet; retrying");
                        tokio::spawn(retry_until_started(daemon.clone(), plan.pool, plan.slot, FIRST_RETRY));
                    }
                }
            }
            tokio::task::spawn_blocking(release);
        }
        other => {
            tokio::task::spawn_blocking(release);
            if let Some(plan) = other {
                fill_slot(daemon, plan.pool, plan.slot, plan.delay);
            }
        }
    }
}

/// [`start`] on a blocking thread: a spawn waits for the child's exec, and
/// the child's move into its cgroup can take milliseconds (the kernel's
/// cgroup lock), which must not stall the daemon's event loop.
async fn start_off_thread(daemon: &Arc<Daemon>, pool: &str, slot: usize) -> Result<WorkerId, StartError> {
    let (d, pool) = (daemon.clone(), pool.to_owned());
    daemon
        .spawner
        .run(move || start(&d, &pool, slot))
        .await
        .unwrap_or_else(|| Err(StartError::Channel(std::io::Error::other("the spawner thread is gone"))))
}

fn classify(status: ExitStatus) -> ExitCause {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExitCause::Exited { code },
        (None, Some(signal)) => ExitCause::Signaled { signal, core_dumped: status.core_dumped() },
        (None, None) => ExitCause::Exited { code: -1 },
    }
}
