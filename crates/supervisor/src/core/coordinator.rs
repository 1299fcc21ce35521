//! [`Core`]: the owners of the daemon's state side by side, and what it
//! does when a streamlet arrives, becomes ready, or the daemon shuts down.
//! The other coordinating files each add one concern to `Core`: `open.rs`
//! (streams begin, waiting opens), `end.rs` (streams end), `rates.rs`
//! (leases and pacing), `monitor.rs` (deaths and operator actions),
//! `autoscale.rs`, `reload.rs` and `views.rs` (read-only listings).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use streamlet_proto::{ErrorBody, ErrorCode, Event, WorkerId, WorkerState};
use streamlet_sandbox::cgroup::WorkerCgroup;
use tokio::sync::mpsc;

use super::bandwidth::Bandwidth;
use super::fleet::{Fleet, NewWorker, Readied, Respawn, SpawnOrder, SPARE_SLOT};
use super::log::EventLog;
use super::streams::Streams;
use super::waiting::Waiting;
use super::worker::KillRequest;
use crate::config::{Config, PoolConfig};
use crate::events::EventSink;
use crate::link::WorkerLink;
use crate::sandbox::Confinement;

/// The daemon's state, behind one mutex in [`Daemon`](crate::Daemon). Each
/// field is the one owner of its part; `Core` keeps them in step.
#[derive(Debug)]
pub struct Core {
    /// The pools: their streamlets, slots, spares and placement.
    pub(super) fleet: Fleet,
    /// The streams it counts, each with its connection.
    pub(super) streams: Streams,
    /// The quota (rates, leases, bursts) and the tenants' counts.
    pub(super) bandwidth: Bandwidth,
    /// Opens waiting for room (or for their upstream), oldest first.
    pub(super) waiting: Waiting,
    /// The last events, for `events`, and who hears each as it happens.
    pub(super) log: EventLog,
    pub(super) shutting_down: bool,
    /// State of the generator behind the restart jitter.
    rng: u64,
    /// How long a rolling restart's drains wait for streams to end.
    pub(super) drain_timeout: Duration,
    /// Where the autoscaler's spawns go.
    pub(super) spawn_orders: Option<mpsc::UnboundedSender<SpawnOrder>>,
    /// What `/metrics` shows.
    pub(super) metrics: Arc<crate::metrics::Metrics>,
    /// The wall-clock minute the demand history was last due to be written.
    pub(super) saved_minute: Option<u64>,
    /// The history of pools the state file has and the config no longer
    /// names, written back untouched.
    pub(super) orphan_history: BTreeMap<String, streamlet_autoscale::history::PoolHistory>,
}

/// Milliseconds since the Unix epoch: the history's and the event log's
/// clock, which must go on across restarts (the scaling rules use the
/// core's monotonic clock).
pub fn wall_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Core {
    pub fn new(config: &Config) -> Self {
        Self {
            fleet: Fleet::new(config),
            streams: Streams::default(),
            bandwidth: Bandwidth::new(config),
            waiting: Waiting::default(),
            log: EventLog::default(),
            shutting_down: false,
            drain_timeout: config.daemon.shutdown_timeout,
            spawn_orders: None,
            metrics: Arc::default(),
            saved_minute: None,
            orphan_history: BTreeMap::new(),
            // Any seed will do; only the spread of restarts depends on it.
            rng: u64::from(std::process::id()) << 32
                | u64::from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos())
                | 1,
        }
    }

    /// The slots to fill at start, then a spare for each pool that keeps
    /// one; each counts as a pending spawn until the spawner settles it.
    pub fn initial_slots(&mut self) -> Vec<(String, usize)> {
        let pools = &self.fleet.pools;
        let slots = pools.iter().flat_map(|(name, p)| (0..p.slots.len()).map(move |s| (name.clone(), s)));
        let spares = pools.iter().filter(|(_, p)| p.config.spare).map(|(name, _)| (name.clone(), SPARE_SLOT));
        let all: Vec<(String, usize)> = slots.chain(spares).collect();
        for (pool, _) in &all {
            self.fleet.scheduled(pool);
        }
        all
    }

    /// A configured pool's settings (`None` for one a reload removed).
    pub fn pool_config(&self, pool: &str) -> Option<Arc<PoolConfig>> {
        self.fleet.live(pool).map(|p| p.config.clone())
    }

    /// Whether streamlets are still wanted in `pool`: false once shutdown
    /// began or a reload removed the pool. Spawns waiting to happen check.
    pub fn spawning_in(&self, pool: &str) -> bool {
        !self.shutting_down && self.fleet.live(pool).is_some()
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub fn alloc_worker_id(&mut self) -> WorkerId {
        self.fleet.next_worker_id()
    }

    /// A streamlet was spawned into a slot; it takes streams once ready. One
    /// spawned while the daemon began shutting down is hung up at once.
    /// Answers the pool's settings now, for the spawner to compare with
    /// those it spawned with (a reload in between).
    pub fn insert_worker(&mut self, new: NewWorker) -> Option<Arc<PoolConfig>> {
        // (A spawn that was on its way when shutdown began, or when a reload
        // removed its pool: it is told to exit at once.)
        let unwanted = !self.spawning_in(&new.pool);
        if unwanted {
            new.link.hang_up();
        }
        let (id, pool, pid) = (new.id, new.pool.clone(), new.pid);
        let restarts = self.fleet.insert(new, unwanted);
        self.publish(Event::WorkerSpawned(streamlet_proto::WorkerSpawned {
            worker: id,
            pool: pool.clone(),
            pid,
            restarts,
        }));
        self.pool_config(&pool)
    }

    /// The streamlet said `Ready`. False if it is not known or not starting.
    pub fn worker_ready(&mut self, id: WorkerId) -> bool {
        if self.shutting_down {
            return false;
        }
        let Some(readied) = self.fleet.ready(id) else { return false };
        let pool = self.fleet.workers[&id].pool.clone();
        match readied {
            // Out of placement until a streamlet of its pool dies.
            Readied::Spare => self.advance_restart(&pool),
            Readied::Serving { took } => {
                self.record_spawn_time(&pool, took);
                self.metrics.spawn.observe(took.as_secs_f64());
                self.announce_ready(id);
                self.retry_waiting();
                self.autoscale(&pool);
            }
        }
        true
    }

    /// Asks a streamlet's monitor to kill it. False if it is not known.
    pub fn kill_worker(&self, id: WorkerId, cause: KillRequest) -> bool {
        self.fleet.workers.get(&id).is_some_and(|w| w.kill.send(cause).is_ok())
    }

    /// A streamlet process ended: its streams move or end, its slot is freed,
    /// and the answer says whether and when to start a new one.
    pub fn worker_exited(&mut self, id: WorkerId, cause: streamlet_proto::ExitCause) -> (Option<Respawn>, Confinement) {
        let Some(mut worker) = self.fleet.workers.remove(&id) else { return (None, Confinement::default()) };
        let confinement = std::mem::take(&mut worker.confinement);
        let pool = worker.pool.clone();
        let respawn = self.forget_worker(id, worker, cause);
        if let Some(plan) = &respawn {
            self.fleet.scheduled(&plan.pool);
        }
        // Its streams' bandwidth is free for opens waiting on it, and a
        // rolling restart may go on (once what was planned here is counted).
        self.retry_waiting();
        self.advance_restart(&pool);
        (respawn, confinement)
    }

    /// Drops the waiting opens of a connection that went away: its client
    /// connections close, and nothing is placed for a gateway that is gone.
    pub fn cancel_waiting(&mut self, sink: &EventSink) {
        self.waiting.cancel(sink);
    }

    /// Stops taking streams, ends every stream with `shutdown`, and returns
    /// the streamlets' links so the caller can hang them up.
    pub fn begin_shutdown(&mut self) -> Vec<Arc<WorkerLink>> {
        self.shutting_down = true;
        // The order task drains what was ordered (settling each, as the
        // daemon is shutting down) and ends.
        self.spawn_orders = None;
        self.waiting.refuse_all(&ErrorBody::new(ErrorCode::ShuttingDown, "streamletd is shutting down"));
        for (id, entry) in self.streams.take_all() {
            entry.fd.shut_down();
            entry.notify_owner(id, streamlet_proto::EndReason::Shutdown, None);
        }
        self.fleet.stop_all()
    }

    /// Kills every streamlet still alive (the end of a shutdown).
    pub fn kill_all(&self) {
        for id in self.fleet.workers.keys() {
            self.kill_worker(*id, None);
        }
    }

    pub fn worker_alive(&self, id: WorkerId) -> bool {
        self.fleet.workers.contains_key(&id)
    }

    /// A streamlet's cgroup, to read its accounting outside the lock.
    pub fn worker_cgroup(&self, id: WorkerId) -> Option<Arc<WorkerCgroup>> {
        self.fleet.workers.get(&id).and_then(|w| w.confinement.cgroup.clone())
    }

    pub fn worker_starting(&self, id: WorkerId) -> bool {
        self.fleet.workers.get(&id).is_some_and(|w| w.state == WorkerState::Starting)
    }

    pub fn live_workers(&self) -> usize {
        self.fleet.workers.len()
    }

    /// A scheduled spawn started its streamlet, or gave up at shutdown.
    pub fn spawn_settled(&mut self, pool: &str) {
        self.fleet.settled(pool);
        self.advance_restart(pool);
    }

    /// Spawns scheduled and not yet done, in all pools.
    pub fn pending_spawns(&self) -> u32 {
        self.fleet.pools.values().map(|p| p.pending).sum()
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Milliseconds on the core's monotonic clock.
    pub(super) fn now_ms(&self) -> u64 {
        self.bandwidth.now_ms()
    }

    /// A connection asks for lifecycle events.
    pub fn subscribe(&mut self, sink: EventSink) {
        self.log.subscribe(sink);
    }

    /// Sends a lifecycle event to every subscriber, and logs it.
    pub(super) fn publish(&mut self, event: Event) {
        self.publish_except(event, None);
    }

    /// [`publish`](Self::publish), but not to `owner` (which hears of its
    /// own streams anyway).
    pub(super) fn publish_except(&mut self, event: Event, owner: Option<&EventSink>) {
        self.log.publish(event, owner, wall_ms());
    }

    /// The last `recent` logged events and, with `follow`, this connection
    /// subscribed in the same step.
    pub fn events(&mut self, recent: Option<u32>, follow: bool, sink: &EventSink) -> streamlet_proto::EventLog {
        let events = self.log.tail(recent);
        if follow {
            self.log.subscribe(sink.clone());
        }
        streamlet_proto::EventLog { events, following: follow }
    }

    /// The restart jitter's next random number (xorshift64*).
    pub(super) fn next_random(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}
