//! The daemon's state: pools, streamlets, streams.
//!
//! One `Core` behind one mutex, owned by [`Daemon`](crate::Daemon). The
//! locking rule: the lock is taken for a state change and released before any
//! `.await`; nothing under it blocks (sends to streamlets never wait, events to
//! gateways go into the connection's unbounded, ordered queue). Methods return what the caller must do next
//! (respawn a slot, ...) instead of doing IO themselves.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_balance::policies::PolicyOptions;
use streamlet_balance::quota::{Admission, Allocator, LeaseId, Priority, Rate, Refusal, StreamKey};
use streamlet_balance::Placement;
use streamlet_proto::channel::encode;
use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::sock;
use streamlet_proto::worker::{Assign, Ended, StreamCounters, ToWorker};
use streamlet_proto::{
    EndReason, ErrorBody, ErrorCode, Event, ExitCause, Opened, PoolStatus, StreamEnded, StreamId, StreamInfo, WorkerId,
    WorkerInfo, WorkerState,
};
use streamlet_proto::{LeaseGranted, ReplyBody};
use streams::{StreamEntry, StreamFd};
pub use tenants::{TenantFull, MAX_LEASES};
use tokio::sync::{mpsc, oneshot};
use waiting::{answer, Waiter};

use crate::config::{Config, PoolConfig};
use crate::events::EventSink;
use crate::link::{SendError, WorkerLink};
use crate::restart::{Breaker, SlotBackoff};
use crate::sandbox::Confinement;
use crate::validate::{Lease, Open};
use streamlet_sandbox::cgroup::WorkerCgroup;

mod autoscale;
mod log;
mod monitor;
mod quota_report;
mod reload;
mod streams;
mod tenants;
#[cfg(test)]
mod tests;
mod waiting;

pub use autoscale::{wall_ms, SpawnOrder};
pub use reload::Reconfigured;

pub use monitor::{unknown_worker, DrainOutcome, DEATHS_KEPT};

/// The slot number of a pool's spare streamlet, which has no slot of its own.
pub const SPARE_SLOT: usize = usize::MAX;

pub use crate::validate::DEFAULT_TENANT;

/// A request to the monitor of a streamlet to kill it, with the cause to
/// record (`None`: record what the kernel reports).
pub type KillRequest = Option<ExitCause>;

#[derive(Debug)]
pub struct Core {
    pools: BTreeMap<String, PoolState>,
    workers: HashMap<WorkerId, WorkerEntry>,
    /// Ordered by id, so that listings page through it.
    streams: BTreeMap<StreamId, StreamEntry>,
    next_stream: u64,
    next_worker: u64,
    shutting_down: bool,
    /// Bandwidth, for the streams that have a rate (or that a capacity covers).
    quota: Allocator,
    /// Whether the host has an egress capacity to share.
    host_capacity: bool,
    /// What each tenant holds against its `max_streams`.
    tenants: tenants::Tenants,
    /// The quota's clock starts here.
    epoch: Instant,
    /// Opens waiting for room (or for their upstream), oldest first.
    waiting: waiting::Waiting,
    /// When the streams' send rates were last sampled for bursts.
    sampled: Instant,
    /// State of the generator behind the restart jitter.
    rng: u64,
    /// How long a rolling restart's drains wait for streams to end.
    drain_timeout: Duration,
    /// Where the autoscaler's spawns go.
    spawn_orders: Option<mpsc::UnboundedSender<SpawnOrder>>,
    /// What `/metrics` shows.
    metrics: Arc<crate::metrics::Metrics>,
    /// The last events, for `events`, and who hears each as it happens.
    log: log::EventLog,
    /// The wall-clock minute the demand history was last due to be written.
    saved_minute: Option<u64>,
    /// The history of pools the state file has and the config no longer
    /// names, written back untouched.
    orphan_history: BTreeMap<String, streamlet_autoscale::history::PoolHistory>,
}

/// An open that could not go now but may wait: its connection, and what it
/// waits for.
#[derive(Debug)]
struct Retry {
    fd: ForeignFd,
    /// Its relay upstream's backlog was full (else: no room).
    upstream: bool,
}

/// Which tenants a quota report lists.
#[derive(Debug, Clone, Copy)]
pub enum TenantLines<'a> {
    /// Those holding streams or leases and those the configuration names
    /// (`[tenants.NAME]`), by name: at most `limit`, after `after`.
    Page { after: Option<&'a str>, limit: usize },
    /// Those the configuration names (`[tenants.NAME]`), held or not.
    Configured,
}

/// What became of an open.
#[derive(Debug)]
pub enum OpenOutcome {
    Done(Result<Opened, ErrorBody>),
    /// It waits for room; the reply goes into the connection's queue, and
    /// this resolves when it is there.
    Waiting(oneshot::Receiver<()>),
}

#[derive(Debug)]
struct PoolState {
    config: Arc<PoolConfig>,
    placement: Box<dyn Placement>,
    slots: Vec<Slot>,
    /// The pool's crash-loop breaker.
    breaker: Breaker,
    /// `PoolDegraded` was published and `PoolRecovered` is still due.
    degraded: bool,
    /// A rolling restart's streamlets still to replace, in order.
    restarting: VecDeque<WorkerId>,
    /// Its spare streamlet, starting or ready, if it keeps one.
    spare: Option<WorkerId>,
    /// Spawns scheduled and not yet done (in a backoff, or on a blocking
    /// thread): its streamlets to come.
    pending: u32,
    /// Error counts by kind (`PoolStatus::errors`).
    errors: BTreeMap<String, u64>,
    /// Its scaling rules and the latest forecast.
    scaler: streamlet_autoscale::Scaler,
    /// Its arrivals, stream durations and their model.
    demand: streamlet_autoscale::Demand,
    /// The scaler's last answer: streamlets wanted, and what the forecast
    /// asked for.
    desired: u32,
    forecast: Option<u32>,
    /// `forecast-only`: the spawns last reported as skipped.
    would_spawn: u32,
    /// How long its streamlets take to become ready (the slowest of late).
    spawn_time: Duration,
    /// Gone from the configuration (a reload): no new streams; it goes when
    /// its last streamlet has.
    removed: bool,
}

impl PoolState {
    /// A pool with `slots` places to fill at once.
    fn new(pool: &Arc<PoolConfig>, config: &Config, slots: u32) -> Self {
        PoolState {
            config: pool.clone(),
            placement: placement_for(pool, config),
            slots: (0..slots).map(|_| Slot { in_use: true, ..Slot::default() }).collect(),
            breaker: Breaker::default(),
            degraded: false,
            restarting: VecDeque::new(),
            spare: None,
            pending: 0,
            errors: BTreeMap::new(),
            scaler: streamlet_autoscale::Scaler::new(pool.rules()),
            demand: streamlet_autoscale::Demand::new(Default::default()),
            desired: pool.workers_min,
            forecast: None,
            would_spawn: 0,
            spawn_time: Duration::ZERO,
            removed: false,
        }
    }
}

/// A place in a pool for one streamlet; a replacement takes its dead
/// predecessor's slot (and its labels).
#[derive(Debug, Default)]
struct Slot {
    /// The pool keeps a streamlet here: live, starting, or to be replaced.
    /// False once the autoscaler retired it (the slot may be taken again).
    in_use: bool,
    worker: Option<WorkerId>,
    /// Streamlets of this slot that died.
    restarts: u32,
    last_exit: Option<ExitCause>,
    /// Deaths in a row, for the backoff.
    backoff: SlotBackoff,
    /// The last [`DEATHS_KEPT`] deaths, newest last.
    history: VecDeque<monitor::DeathRecord>,
}

#[derive(Debug)]
struct WorkerEntry {
    pool: String,
    slot: usize,
    pid: u32,
    state: WorkerState,
    link: Arc<WorkerLink>,
    kill: mpsc::UnboundedSender<KillRequest>,
    /// When its process was spawned: its uptime in listings and events.
    spawned: Instant,
    /// When it began to serve its slot: at its spawn, or when it took the
    /// slot as the spare. `healthy_after` counts from here.
    started: Instant,
    streams: HashSet<StreamId>,
    confinement: Confinement,
    /// Its labels, for placement and listings.
    labels: BTreeMap<String, String>,
    /// Draining: killed at this instant if streams remain.
    drain_deadline: Option<Instant>,
    /// Since when it has had no stream (ready streamlets only).
    idle_since: Option<Instant>,
    /// The autoscaler retired it: its exit is planned and nothing replaces it.
    retiring: bool,
    /// In a pool with `tenant_isolation`: whom its streams are of, while it
    /// has any.
    tenant: Option<Serving>,
}

impl WorkerEntry {
    /// It took `stream` (of `tenant`) in a hand-over: no longer idle, and in
    /// a pool with `tenant_isolation` now of that tenant.
    fn took(&mut self, stream: StreamId, tenant: &str, isolation: bool) {
        self.streams.insert(stream);
        self.idle_since = None;
        if isolation && self.tenant.is_none() {
            self.tenant = Some(Serving::One(tenant.to_owned()));
        }
    }

    /// Its channel failed, or is stuck past its outbox, during a hand-over
    /// (`doing` says which): out of placement (`key` in `placement`), killed
    /// (a stuck one as `protocol_error`), and replaced by its monitor. The
    /// hand-over tries the next streamlet.
    fn evict(&mut self, id: WorkerId, placement: &mut dyn Placement, key: u64, error: &SendError, doing: &str) {
        tracing::warn!(worker = %id, error = %error, "streamlet channel failed while {doing}; killing it");
        placement.remove(key);
        self.state = WorkerState::Stopping;
        let cause = matches!(error, SendError::Stuck).then(|| ExitCause::ProtocolError { message: error.to_string() });
        let _ = self.kill.send(cause);
    }
}

/// Whom a streamlet of a pool with `tenant_isolation` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Serving {
    One(String),
    /// Several tenants (streams it had when a reload turned isolation on):
    /// it takes no new stream until it is empty.
    Several,
}

/// A new streamlet, as the spawner hands it to the core.
#[derive(Debug)]
pub struct NewWorker {
    pub id: WorkerId,
    pub pool: String,
    pub slot: usize,
    pub pid: u32,
    pub link: Arc<WorkerLink>,
    pub kill: mpsc::UnboundedSender<KillRequest>,
    pub confinement: Confinement,
}

/// A streamlet's listing and its cgroup (read outside the lock).
pub type WorkerRow = (WorkerInfo, Option<Arc<WorkerCgroup>>);

/// What to do after a streamlet died: start a new one in its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respawn {
    pub pool: String,
    pub slot: usize,
    pub delay: Duration,
}

impl Core {
    pub fn new(config: &Config) -> Self {
        let pools = config
            .pools
            .values()
            .map(|pool| (pool.name.clone(), PoolState::new(pool, config, pool.workers_min)))
            .collect();
        let mut quota = Allocator::new(config.quota.egress.unwrap_or(u64::MAX));
        for pool in config.pools.values() {
            quota.set_pool(&pool.name, pool.egress, pool.preempt);
        }
        quota.set_burst_window(config.quota.burst.as_millis() as u64);
        Self {
            pools,
            workers: HashMap::new(),
            streams: BTreeMap::new(),
            next_stream: 1,
            next_worker: 1,
            shutting_down: false,
            quota,
            host_capacity: config.quota.egress.is_some(),
            tenants: tenants::Tenants::new(config.quota.tenants.clone(), config.quota.default_max_streams),
            epoch: Instant::now(),
            waiting: waiting::Waiting::default(),
            sampled: Instant::now(),
            drain_timeout: config.daemon.shutdown_timeout,
            spawn_orders: None,
            metrics: Arc::default(),
            log: log::EventLog::default(),
            saved_minute: None,
            orphan_history: BTreeMap::new(),
            // Any seed will do; only the spread of restarts depends on it.
            rng: u64::from(std::process::id()) << 32
                | u64::from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap_or_default()
                        .subsec_nanos(),
                )
                | 1,
        }
    }

    /// Every `(pool, slot)` the pools start with.
    /// The slots to fill at start, then a spare for each pool that keeps
    /// one; each counts as a pending spawn until the spawner settles it.
    pub fn initial_slots(&mut self) -> Vec<(String, usize)> {
        let slots = self.pools.iter().flat_map(|(name, p)| (0..p.slots.len()).map(move |s| (name.clone(), s)));
        let spares = self.pools.iter().filter(|(_, p)| p.config.spare).map(|(name, _)| (name.clone(), SPARE_SLOT));
        let all: Vec<(String, usize)> = slots.chain(spares).collect();
        for (pool, _) in &all {
            self.spawn_scheduled(pool);
        }
        all
    }

    /// A configured pool's settings (`None` for one a reload removed).
    pub fn pool_config(&self, pool: &str) -> Option<Arc<PoolConfig>> {
        self.pools.get(pool).filter(|p| !p.removed).map(|p| p.config.clone())
    }

    /// Whether streamlets are still wanted in `pool`: false once shutdown
    /// began or a reload removed the pool. Spawns waiting to happen check.
    pub fn spawning_in(&self, pool: &str) -> bool {
        !self.shutting_down && self.pools.get(pool).is_some_and(|p| !p.removed)
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    pub fn alloc_worker_id(&mut self) -> WorkerId {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        id
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
        let mut labels = BTreeMap::new();
        let restarts = self.pools.get(&new.pool).and_then(|p| p.slots.get(new.slot)).map_or(0, |s| s.restarts);
        self.publish(Event::WorkerSpawned(streamlet_proto::WorkerSpawned {
            worker: new.id,
            pool: new.pool.clone(),
            pid: new.pid,
            restarts,
        }));
        if let Some(pool) = self.pools.get_mut(&new.pool) {
            if new.slot == SPARE_SLOT {
                pool.spare = Some(new.id);
            } else {
                labels = pool.config.labels_of(new.slot);
                if let Some(slot) = pool.slots.get_mut(new.slot) {
                    slot.worker = Some(new.id);
                }
            }
        }
        let pool_name = new.pool.clone();
        let entry = WorkerEntry {
            pool: new.pool,
            slot: new.slot,
            pid: new.pid,
            state: if unwanted { WorkerState::Stopping } else { WorkerState::Starting },
            link: new.link,
            kill: new.kill,
            spawned: Instant::now(),
            started: Instant::now(),
            streams: HashSet::new(),
            confinement: new.confinement,
            labels,
            drain_deadline: None,
            idle_since: None,
            retiring: false,
            tenant: None,
        };
        self.workers.insert(new.id, entry);
        self.pool_config(&pool_name)
    }

    /// The streamlet said `Ready`. False if it is not known or not starting.
    pub fn worker_ready(&mut self, id: WorkerId) -> bool {
        let Some(worker) = self.workers.get_mut(&id) else { return false };
        if worker.state != WorkerState::Starting || self.shutting_down {
            return false;
        }
        if worker.slot == SPARE_SLOT {
            // Out of placement until a streamlet of its pool dies.
            worker.state = WorkerState::Spare;
            let pool = worker.pool.clone();
            self.advance_restart(&pool);
            return true;
        }
        worker.state = WorkerState::Ready;
        worker.idle_since = Some(Instant::now());
        let took = worker.started.elapsed();
        let pool_name = worker.pool.clone();
        let pool = self.pools.get_mut(&worker.pool).expect("a worker's pool exists");
        pool.placement.add(id.0, pool.config.streams_per_worker, &worker.labels);
        self.record_spawn_time(&pool_name, took);
        self.metrics.spawn.observe(took.as_secs_f64());
        self.announce_ready(id);
        self.retry_waiting();
        self.autoscale(&pool_name);
        true
    }

    /// Places a new stream and hands its connection to the chosen streamlet.
    ///
    /// When no streamlet has room or the minimum rate does not fit, and the
    /// request asks to wait, it waits (with its connection) until
    /// [`retry_waiting`](Self::retry_waiting) can place it or its time is up;
    /// the reply then goes straight into the connection's queue.
    ///
    /// The request was checked ([`crate::validate`]); what is left
    /// to refuse depends on the daemon's state.
    pub(crate) fn open(
        &mut self,
        request: Open,
        fd: ForeignFd,
        owner: Option<EventSink>,
        reply_id: u64,
    ) -> OpenOutcome {
        let wait = request.wait;
        let keep = request.clone();
        let mut retry = None;
        let pool = request.pool.clone();
        let began = Instant::now();
        let result = self.open_now(request, fd, owner.clone(), &mut retry);
        if self.pools.contains_key(&pool) {
            let outcome = match &result {
                Ok(_) => "opened",
                Err(e) => e.code.as_str(),
            };
            self.metrics.opened(&pool, outcome, began.elapsed());
        }
        if result.is_ok() || retry.as_ref().is_some_and(|r| !r.upstream) {
            self.record_arrival(&pool);
        }
        if self.after_open(&pool, &result) {
            self.autoscale(&pool);
        }
        // An open waits if it asked to, or for a busy upstream (for as long
        // as it asked, or UPSTREAM_WAIT if longer).
        let wait = match &retry {
            Some(Retry { upstream: true, .. }) => Some(wait.map_or(UPSTREAM_WAIT, |w| w.max(UPSTREAM_WAIT))),
            Some(_) => wait,
            None => None,
        };
        match result {
            Ok(opened) => OpenOutcome::Done(Ok(opened)),
            Err(error) => match (retry, owner, wait) {
                (Some(Retry { fd, upstream }), Some(owner), Some(wait)) => {
                    let (done, waiting) = oneshot::channel();
                    // (At most ten minutes: the request's check.)
                    let deadline = Instant::now() + wait;
                    self.waiting.push(Waiter {
                        request: keep,
                        fd,
                        owner,
                        id: reply_id,
                        deadline,
                        last: error,
                        upstream,
                        done,
                    });
                    OpenOutcome::Waiting(waiting)
                }
                _ => OpenOutcome::Done(Err(error)),
            },
        }
    }

    /// Tries the waiting opens again, in arrival order: after a stream or a
    /// lease ended, or a streamlet became ready.
    pub fn retry_waiting(&mut self) {
        if self.waiting.is_empty() || self.shutting_down {
            return;
        }
        let queue = self.waiting.take_all();
        let mut ask: Vec<String> = Vec::new();
        for Waiter { request, fd, owner, id, deadline, last: _, upstream: _, done } in queue {
            let mut retry = None;
            let result = self.open_now(request.clone(), fd, Some(owner.clone()), &mut retry);
            if self.after_open(&request.pool, &result) && !ask.contains(&request.pool) {
                ask.push(request.pool.clone());
            }
            match result {
                Ok(opened) => answer(&owner, id, done, ReplyBody::Opened(opened)),
                Err(error) => match retry {
                    Some(Retry { fd, upstream }) => {
                        self.waiting.push(Waiter { request, fd, owner, id, deadline, last: error, upstream, done })
                    }
                    None => answer(&owner, id, done, ReplyBody::Error(error)),
                },
            }
        }
        for pool in ask {
            self.autoscale(&pool);
        }
    }

    /// Tries again the waiting opens whose upstream was busy (nothing tells
    /// the daemon when an upstream accepts: the tick asks), then answers
    /// those whose time is up.
    pub fn tick_waiting(&mut self) {
        if self.waiting.any_for_upstream() {
            self.retry_waiting();
        }
        self.expire_waiting();
    }

    /// Answers the waiting opens whose time is up with the error that made
    /// them wait.
    pub fn expire_waiting(&mut self) {
        self.waiting.expire(Instant::now());
    }

    fn open_now(
        &mut self,
        request: Open,
        fd: ForeignFd,
        owner: Option<EventSink>,
        retry: &mut Option<Retry>,
    ) -> Result<Opened, ErrorBody> {
        if self.shutting_down {
            return Err(ErrorBody::new(
                ErrorCode::ShuttingDown,
                "streamletd is shutting down and takes no new streams",
            ));
        }
        let tenant = request.tenant;
        if self.pools.get(&request.pool).is_some_and(|p| !p.removed) {
            self.tenants.check(&tenant).map_err(|full| ErrorBody::new(ErrorCode::TenantLimit, full.to_string()))?;
        }
        let Some(pool) = self.pools.get_mut(&request.pool).filter(|p| !p.removed) else {
            let known: Vec<&str> = self.pools.iter().filter(|(_, p)| !p.removed).map(|(n, _)| n.as_str()).collect();
            return Err(ErrorBody::new(
                ErrorCode::UnknownPool,
                format!("pool {:?} is not configured; configured pools: {}", request.pool, known.join(", ")),
            ));
        };
        // Taken up front: a failed open never leaves its key behind for the next.
        let stream = StreamId(self.next_stream);
        self.next_stream += 1;
        // The quota covers a stream with a rate, or one in a pool or host
        // with a capacity to share; others go unpaced and cost it nothing.
        // (Both checked: the request's by `validate`, the pool's by the
        // configuration.)
        let rate = request
            .rate
            .map(|r| Rate { min: r.min, max: r.max })
            .or(pool.config.default_rate.map(|r| Rate { min: r.min, max: r.max }));
        let managed = rate.is_some() || self.host_capacity || pool.config.egress.is_some();
        // (Above UNLIMITED is no limit: many such maxima must not add up to a cap.)
        let rate = rate.map_or(Rate { min: 0, max: UNLIMITED }, |r| Rate { min: r.min, max: r.max.min(UNLIMITED) });
        let priority = request.priority;
        // Checked now, connected once a slot and the bandwidth are held.
        let target = relay_upstream(&pool.config, &request.labels)?.cloned();
        let mut upstream: Option<std::os::fd::OwnedFd> = None;
        let ingress = (pool.config.ingress_limit && rate.max < UNLIMITED).then_some(rate.max);
        let wanted = streamlet_balance::Request { region: request.region };
        let labels = request.labels;
        let now = self.epoch.elapsed().as_millis() as u64;
        let mut admission: Option<Admission> = None;
        let placed = loop {
            let Some(key) = place_for(pool, &self.workers, &tenant, &wanted) else {
                // (Only after a broken streamlet was skipped can an admission
                // already be held here.)
                let admitted = admission.is_some();
                if admitted {
                    self.quota.release(StreamKey(stream.0));
                }
                let ready = self.workers.values().filter(|w| w.pool == request.pool && w.state == WorkerState::Ready);
                let message = match ready.count() {
                    0 => format!("no streamlet of pool {:?} is ready yet", request.pool),
                    n if pool.config.tenant_isolation => format!(
                        "none of the {n} streamlets of pool {:?} has room for tenant {tenant:?}: each serves one tenant at a time (tenant_isolation)",
                        request.pool
                    ),
                    n => format!(
                        "all {n} streamlets of pool {:?} are full ({} streams each)",
                        request.pool, pool.config.streams_per_worker
                    ),
                };
                let error = ErrorBody::new(ErrorCode::NoCapacity, message);
                if admitted {
                    break Err(error);
                }
                *retry = Some(Retry { fd, upstream: false });
                return Err(error);
            };
            // Admission once a slot is held, so a refusal preempts nothing.
            if managed && admission.is_none() {
                match self.quota.admit(StreamKey(stream.0), &request.pool, &tenant, Priority(priority), rate, now) {
                    Ok(granted) => admission = Some(granted),
                    Err(refusal) => {
                        pool.placement.release(key);
                        if matches!(refusal, Refusal::Insufficient { .. }) {
                            *retry = Some(Retry { fd, upstream: false });
                        }
                        return Err(refusal_error(&refusal));
                    }
                }
            }
            let allocated = admission.as_ref().and_then(|a| limit(a.rate));
            let assign = ToWorker::Assign(Assign {
                stream,
                tenant: tenant.clone(),
                labels: labels.clone(),
                rate: allocated,
                ingress,
            });
            let assign = match encode(&assign) {
                Ok(assign) => assign,
                Err(e) => {
                    pool.placement.release(key);
                    if admission.is_some() {
                        self.quota.release(StreamKey(stream.0));
                    }
                    break Err(ErrorBody::new(ErrorCode::BadRequest, format!("stream too large to hand over: {e}")));
                }
            };
            // The upstream, once a slot and the bandwidth are held: never a
            // connect (nor its cost to the upstream) for an open refused.
            if let (Some(target), None) = (&target, &upstream) {
                let connected = match target.try_connect() {
                    Ok(Some(fd)) => Ok(fd),
                    Ok(None) => Err(None),
                    Err(e) => Err(Some(e)),
                };
                match connected {
                    Ok(fd) => upstream = Some(fd),
                    Err(cause) => {
                        // Nothing is held while it waits, or once refused.
                        pool.placement.release(key);
                        if admission.is_some() {
                            self.quota.release(StreamKey(stream.0));
                        }
                        let message = match &cause {
                            None => format!("the upstream {target} takes no connection now (its backlog is full)"),
                            Some(e) => format!("cannot connect to the upstream {target}: {e}"),
                        };
                        // (As below: what the admission preempted has ended.)
                        if let Some(admission) = &admission {
                            self.preempted(&admission.changes);
                            self.apply_rates(&admission.changes.rates);
                        }
                        if cause.is_none() {
                            *retry = Some(Retry { fd, upstream: true });
                        }
                        return Err(ErrorBody::new(ErrorCode::UpstreamUnavailable, message));
                    }
                }
            }
            let id = WorkerId(key);
            let entry = self.workers.get_mut(&id).expect("placement holds only known streamlets");
            let sent = match &upstream {
                Some(up) => entry.link.send(&ToWorker::Upstream { stream }, Some(up.as_fd())),
                None => Ok(()),
            };
            match sent.and_then(|()| entry.link.send_encoded(assign, Some(fd.as_fd()))) {
                Ok(()) => {
                    entry.took(stream, &tenant, pool.config.tenant_isolation);
                    break Ok(id);
                }
                Err(e @ (SendError::Resources(_) | SendError::Message(_))) => {
                    // Nothing wrong with the streamlet: give its slot back.
                    pool.placement.release(key);
                    if admission.is_some() {
                        self.quota.release(StreamKey(stream.0));
                    }
                    crate::logcap::limiter().warn_worker(
                        "handover_failed",
                        id.0,
                        format_args!("cannot hand a stream to streamlet {id}: {e}"),
                    );
                    let code = if matches!(e, SendError::Resources(_)) {
                        ErrorCode::Overloaded
                    } else {
                        ErrorCode::BadRequest
                    };
                    break Err(ErrorBody::new(code, e.to_string()));
                }
                Err(e @ (SendError::Channel(_) | SendError::Stuck)) => {
                    entry.evict(id, pool.placement.as_mut(), key, &e, "handing a stream over");
                }
            }
        };
        let worker = match placed {
            Ok(worker) => worker,
            Err(error) => {
                // What the admission preempted left the quota already: those
                // streams and leases end even though this stream did not start.
                // Those it lowered are lowered (the quota counts them so), and
                // the next sweep raises them again.
                if let Some(admission) = &admission {
                    self.preempted(&admission.changes);
                    self.apply_rates(&admission.changes.rates);
                }
                return Err(error);
            }
        };
        self.tenants.take(&tenant);
        let rate = admission.as_ref().and_then(|a| limit(a.rate));
        let kernel_paced = sock::kernel_paces(fd.as_fd());
        let fd = StreamFd(fd);
        if let (Some(rate), true) = (rate, kernel_paced) {
            fd.pace(Some(rate));
        }
        let entry = StreamEntry {
            pool: request.pool.clone(),
            tenant,
            worker,
            fd,
            opened: Instant::now(),
            bytes_in: 0,
            bytes_out: 0,
            usage_base: (Instant::now(), 0),
            owner,
            closing: None,
            rate,
            priority,
            managed,
            kernel_paced,
            labels,
            ingress,
            region: wanted.region,
            carried: (0, 0),
            sending: None,
            stalled_us: 0,
            carried_stalled_us: 0,
            corrupt_frames: 0,
        };
        let opened =
            streamlet_proto::StreamOpened { stream, pool: request.pool.clone(), worker, tenant: entry.tenant.clone() };
        let owner = entry.owner.clone();
        self.streams.insert(stream, entry);
        self.publish_except(Event::StreamOpened(opened), owner.as_ref());
        if let Some(admission) = admission {
            self.preempted(&admission.changes);
            self.apply_rates(&admission.changes.rates);
        }
        Ok(Opened { stream, pool: request.pool, worker, rate })
    }

    /// Whether an open may have changed what the pool's scaler wants.
    fn after_open(&self, pool: &str, result: &Result<Opened, ErrorBody>) -> bool {
        match result {
            Ok(opened) => {
                let streams = self.workers.get(&opened.worker).map_or(0, |w| w.streams.len());
                self.worth_asking(pool, streams)
            }
            Err(e) => e.code == ErrorCode::NoCapacity,
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Grants a lease: bandwidth and a tenant slot without a stream. The
    /// request was checked ([`crate::validate`]).
    pub(crate) fn lease(&mut self, request: Lease) -> Result<LeaseGranted, LeaseError> {
        if self.shutting_down {
            return Err(LeaseError::ShuttingDown);
        }
        if !self.pools.contains_key(&request.pool) {
            return Err(LeaseError::UnknownPool { pool: request.pool, known: self.pool_names() });
        }
        if self.tenants.leases_full() {
            return Err(LeaseError::TooMany);
        }
        self.tenants.check(&request.tenant)?;
        let now = self.now_ms();
        let rate = Rate { min: request.rate.min, max: request.rate.max.min(UNLIMITED) };
        let priority = Priority(request.priority);
        let grant = self
            .quota
            .lease(&request.tenant, &request.pool, priority, rate, request.ttl_ms, now)
            .map_err(LeaseError::Refused)?;
        self.tenants.take_lease(grant.id, request.tenant);
        self.preempted(&grant.changes);
        self.apply_rates(&grant.changes.rates);
        Ok(LeaseGranted { lease: grant.id.0, rate: grant.rate, expires_in_ms: grant.expires_at.saturating_sub(now) })
    }

    /// Extends a lease by its TTL.
    pub fn refresh(&mut self, lease: u64) -> Result<LeaseGranted, ErrorBody> {
        let now = self.now_ms();
        let (rate, expires_at) = self.quota.refresh(LeaseId(lease), now).map_err(|r| refusal_error(&r))?;
        Ok(LeaseGranted { lease, rate, expires_in_ms: expires_at.saturating_sub(now) })
    }

    /// Gives a lease back.
    pub fn release_lease(&mut self, lease: u64) -> Result<(), ErrorBody> {
        self.quota.release_lease(LeaseId(lease)).map_err(|r| refusal_error(&r))?;
        self.tenants.end_lease(LeaseId(lease));
        self.retry_waiting();
        Ok(())
    }

    /// Frees every lease whose TTL has passed: a gateway that crashed leaks
    /// nothing. Called by the daemon's expiry task.
    pub fn expire_leases(&mut self) -> usize {
        // (At most this many a tick: 65,536 leases due at once would
        // otherwise hold the thread for a whole tick.)
        let expired = self.quota.expire_up_to(self.now_ms(), LEASES_EXPIRED_PER_TICK);
        for lease in &expired {
            if let Some(tenant) = self.tenants.end_lease(*lease) {
                crate::logcap::limiter()
                    .info("lease_expired", format_args!("lease {} of tenant {tenant:?} expired", lease.0));
            }
        }
        if !expired.is_empty() {
            self.retry_waiting();
        }
        expired.len()
    }

    /// Brings the streams' pacing up to date with the quota: re-paces those
    /// whose allocation moved since the last time and ends bursts past their
    /// window; once per `stats_interval`, takes streams that reported nothing
    /// as idle and grants bursts. Called by the daemon every 50 ms.
    pub fn pace(&mut self, stats_interval: Duration) {
        if self.quota.stale() {
            let rates = self.quota.sweep();
            self.apply_rates(&rates);
        }
        let now = self.now_ms();
        let rates = self.quota.end_bursts(now);
        self.apply_rates(&rates);
        if self.sampled.elapsed() < stats_interval {
            return;
        }
        self.sampled = Instant::now();
        // Streamlets report only the streams whose counters moved.
        let silent = stats_interval * 2;
        for (id, s) in &mut self.streams {
            if s.usage_base.0.elapsed() >= silent {
                s.usage_base = (self.sampled, s.bytes_out);
                s.sending = Some(0);
                if s.managed {
                    self.quota.record_usage(StreamKey(id.0), 0);
                }
            }
        }
        let rates = self.quota.grant_bursts(now);
        self.apply_rates(&rates);
    }

    /// Ends what an admission preempted: streams with reason `preempted`;
    /// leases lose their tenant slot (their next refresh hears why).
    fn preempted(&mut self, changes: &streamlet_balance::quota::Changes) {
        for victim in &changes.preempted {
            self.end_by_daemon(StreamId(victim.0), EndReason::Preempted);
        }
        for lease in &changes.preempted_leases {
            self.tenants.end_lease(*lease);
        }
    }

    /// New allocations from the quota reach the streams: their streamlets
    /// (`UpdateRate`) and, where the kernel paces the socket, its pacing.
    fn apply_rates(&mut self, rates: &[(StreamKey, u64)]) {
        for (key, rate) in rates {
            let stream = StreamId(key.0);
            let Some(entry) = self.streams.get_mut(&stream) else { continue };
            let rate = limit(*rate);
            if entry.rate == rate {
                continue;
            }
            entry.rate = rate;
            if entry.kernel_paced {
                entry.fd.pace(rate);
            }
            if let Some(worker) = self.workers.get(&entry.worker) {
                let _ = worker.link.send(&ToWorker::UpdateRate { stream, rate: rate.unwrap_or(0) }, None);
            }
        }
    }

    /// A stream leaves the quota and its tenant's count; the others' rates
    /// follow at the next [`Core::pace`].
    fn forget_stream(&mut self, stream: StreamId, entry: &StreamEntry) {
        self.tenants.give_back(&entry.tenant);
        if entry.managed {
            self.quota.release(StreamKey(stream.0));
        }
    }

    /// Asks for a stream to end: its connection is shut down and its
    /// streamlet told; the stream leaves the table when the streamlet reports
    /// the end.
    pub fn close(&mut self, stream: StreamId) -> Result<(), ErrorBody> {
        if !self.streams.contains_key(&stream) {
            return Err(ErrorBody::new(ErrorCode::UnknownStream, format!("stream {stream} is not open")));
        }
        self.end_by_daemon(stream, EndReason::Closed);
        Ok(())
    }

    /// Ends a stream for the daemon's own reason (a close, a preemption): its
    /// connection is shut down and its streamlet told; it leaves the table
    /// when the streamlet reports the end, reported with `reason`.
    fn end_by_daemon(&mut self, stream: StreamId, reason: EndReason) {
        let Some(entry) = self.streams.get_mut(&stream) else { return };
        if entry.closing.is_some() {
            return;
        }
        entry.closing = Some(reason);
        entry.fd.shut_down();
        if let Some(worker) = self.workers.get(&entry.worker) {
            if let Err(e) = worker.link.send(&ToWorker::Close { stream }, None) {
                // The shutdown above ends the stream for the streamlet anyway.
                crate::logcap::limiter().warn_worker(
                    "close_unsent",
                    entry.worker.0,
                    format_args!("cannot tell streamlet {} to close stream {stream}: {e}", entry.worker),
                );
            }
        }
    }

    /// A streamlet reported a stream's end. False if the stream was not its.
    pub fn stream_ended(&mut self, worker: WorkerId, ended: Ended) -> bool {
        match self.streams.get(&ended.stream) {
            Some(entry) if entry.worker == worker => {}
            _ => return false,
        }
        let mut entry = self.streams.remove(&ended.stream).expect("checked above");
        self.release_slot(worker, ended.stream);
        self.record_duration(&entry.pool, entry.opened.elapsed());
        self.forget_stream(ended.stream, &entry);
        let reason = entry.closing.take().unwrap_or(ended.reason);
        self.count_end(&entry.pool, &reason);
        self.retry_waiting();
        tracing::debug!(stream = %ended.stream, %worker, %reason, "stream ended");
        // (Counts from a streamlet are whatever it says: saturate.)
        let bytes = (entry.carried.0.saturating_add(ended.bytes_in), entry.carried.1.saturating_add(ended.bytes_out));
        let pool = entry.pool.clone();
        self.publish_end(ended.stream, &entry, &reason, Some(bytes));
        notify_end(ended.stream, entry, reason, Some(bytes));
        self.drained(worker);
        self.advance_restart(&pool);
        true
    }

    fn release_slot(&mut self, worker: WorkerId, stream: StreamId) {
        if let Some(entry) = self.workers.get_mut(&worker) {
            entry.streams.remove(&stream);
            if entry.streams.is_empty() {
                entry.tenant = None;
            }
            if entry.state == WorkerState::Ready {
                if let Some(pool) = self.pools.get_mut(&entry.pool) {
                    pool.placement.release(worker.0);
                }
            }
        }
        self.mark_idle(worker);
    }

    /// A streamlet's counters. Each report also measures the stream's send
    /// rate since the one before, for bursts.
    pub fn stream_stats(&mut self, worker: WorkerId, counters: &[StreamCounters]) {
        let now = Instant::now();
        for c in counters {
            if let Some(entry) = self.streams.get_mut(&c.stream).filter(|e| e.worker == worker) {
                // Whatever the streamlet says, no counter wraps.
                entry.bytes_in = entry.carried.0.saturating_add(c.bytes_in);
                entry.bytes_out = entry.carried.1.saturating_add(c.bytes_out);
                entry.stalled_us = entry.carried_stalled_us.saturating_add(c.stalled_us);
                let dropped = c.corrupt_frames.saturating_sub(entry.corrupt_frames);
                entry.corrupt_frames = c.corrupt_frames;
                if dropped > 0 {
                    if let Some(pool) = self.pools.get_mut(&entry.pool) {
                        let count = pool.errors.entry("corrupt_frames_dropped".into()).or_default();
                        *count = count.saturating_add(dropped);
                    }
                }
                let (at, base) = entry.usage_base;
                let ms = now.duration_since(at).as_millis();
                if ms >= MIN_USAGE_SPAN_MS {
                    let used = u128::from(entry.bytes_out.saturating_sub(base)) * 1000 / ms;
                    let used = u64::try_from(used).unwrap_or(u64::MAX);
                    entry.sending = Some(used);
                    entry.usage_base = (now, entry.bytes_out);
                    if entry.managed {
                        self.quota.record_usage(StreamKey(c.stream.0), used);
                    }
                }
            }
        }
    }

    /// Asks a streamlet's monitor to kill it. False if it is not known.
    pub fn kill_worker(&self, id: WorkerId, cause: KillRequest) -> bool {
        self.workers.get(&id).is_some_and(|w| w.kill.send(cause).is_ok())
    }

    /// A streamlet process ended: its streams end with `worker_died`, its slot
    /// is freed, and the answer says whether and when to start a new one.
    pub fn worker_exited(&mut self, id: WorkerId, cause: ExitCause) -> (Option<Respawn>, Confinement) {
        let Some(mut worker) = self.workers.remove(&id) else { return (None, Confinement::default()) };
        let confinement = std::mem::take(&mut worker.confinement);
        let pool = worker.pool.clone();
        let respawn = self.forget_worker(id, worker, cause);
        if let Some(plan) = &respawn {
            self.spawn_scheduled(&plan.pool);
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
        for (id, entry) in std::mem::take(&mut self.streams) {
            entry.fd.shut_down();
            notify_end(id, entry, EndReason::Shutdown, None);
        }
        for pool in self.pools.values_mut() {
            for (id, worker) in &mut self.workers {
                if worker.pool == pool.config.name {
                    pool.placement.remove(id.0);
                }
            }
        }
        self.workers
            .values_mut()
            .map(|w| {
                w.state = WorkerState::Stopping;
                w.streams.clear();
                w.link.clone()
            })
            .collect()
    }

    /// Kills every streamlet still alive (the end of a shutdown).
    pub fn kill_all(&self) {
        for id in self.workers.keys() {
            self.kill_worker(*id, None);
        }
    }

    pub fn worker_alive(&self, id: WorkerId) -> bool {
        self.workers.contains_key(&id)
    }

    /// A streamlet's cgroup, to read its accounting outside the lock.
    pub fn worker_cgroup(&self, id: WorkerId) -> Option<Arc<WorkerCgroup>> {
        self.workers.get(&id).and_then(|w| w.confinement.cgroup.clone())
    }

    pub fn worker_starting(&self, id: WorkerId) -> bool {
        self.workers.get(&id).is_some_and(|w| w.state == WorkerState::Starting)
    }

    /// The metrics, their gauges read from the state now.
    pub fn refresh_metrics(&self) -> Arc<crate::metrics::Metrics> {
        use crate::metrics::{BandwidthLabels, PoolLabel, StateLabels};
        let m = &self.metrics;
        m.workers.clear();
        m.streams.clear();
        m.desired.clear();
        m.forecast.clear();
        m.predicted_streams.clear();
        for (name, pool) in self.pools.iter().filter(|(_, p)| !p.removed) {
            for state in ["starting", "ready", "draining", "stopping", "spare"] {
                m.workers.get_or_create(&StateLabels { pool: name.clone(), state: state.into() }).set(0);
            }
            let label = PoolLabel { pool: name.clone() };
            let streams = self.streams.values().filter(|s| &s.pool == name).count();
            m.streams.get_or_create(&label).set(streams as i64);
            m.desired.get_or_create(&label).set(i64::from(pool.desired));
            match pool.forecast {
                Some(f) => {
                    m.forecast.get_or_create(&label).set(i64::from(f));
                }
                None => {
                    m.forecast.remove(&label);
                }
            }
            match pool.scaler.prediction() {
                Some(p) => {
                    m.predicted_streams.get_or_create(&label).set(p.round() as i64);
                }
                None => {
                    m.predicted_streams.remove(&label);
                }
            }
        }
        for w in self.workers.values() {
            let state = match w.state {
                WorkerState::Starting => "starting",
                WorkerState::Ready => "ready",
                WorkerState::Draining => "draining",
                WorkerState::Stopping => "stopping",
                WorkerState::Spare => "spare",
            };
            m.workers.get_or_create(&StateLabels { pool: w.pool.clone(), state: state.into() }).inc();
        }
        m.bandwidth.clear();
        // Tenant names come from clients: only the tenants the configuration
        // names get series of their own.
        for line in self.quota_report(TenantLines::Configured).lines {
            let set = |kind: &str, value: u64| {
                let labels = BandwidthLabels { level: line.level.clone(), name: line.name.clone(), kind: kind.into() };
                m.bandwidth.get_or_create(&labels).set(i64::try_from(value).unwrap_or(i64::MAX));
            };
            if let Some(capacity) = line.capacity {
                set("capacity", capacity);
            }
            set("allocated", line.allocated);
            if let Some(free) = line.free {
                set("free", free);
            }
        }
        self.metrics.clone()
    }

    /// Whether every pool has at least its `workers.min` streamlets ready:
    /// when the daemon tells systemd it is ready.
    pub fn at_min(&self) -> bool {
        self.pools.values().filter(|p| !p.removed).all(|p| {
            let ready = p
                .slots
                .iter()
                .filter_map(|s| s.worker)
                .filter(|id| self.workers.get(id).is_some_and(|w| w.state == WorkerState::Ready));
            ready.count() as u32 >= p.config.workers_min
        })
    }

    /// The streamlets the pools start with.
    pub fn starting_count(&self) -> u32 {
        self.pools.values().map(|p| p.slots.iter().filter(|s| s.in_use).count() as u32).sum()
    }

    /// One line of what the daemon is doing, for systemd's `STATUS=`.
    pub fn status_line(&self) -> String {
        let ready = self.workers.values().filter(|w| w.state == WorkerState::Ready).count();
        let pools = self.pools.len();
        let degraded = self.pools.values().filter(|p| p.degraded).count();
        let mut line = format!(
            "{pools} pool{}, {ready} streamlet{} ready, {} stream{}",
            if pools == 1 { "" } else { "s" },
            if ready == 1 { "" } else { "s" },
            self.streams.len(),
            if self.streams.len() == 1 { "" } else { "s" },
        );
        if degraded > 0 {
            line.push_str(&format!(", {degraded} degraded"));
        }
        line
    }

    pub fn live_workers(&self) -> usize {
        self.workers.len()
    }

    /// A spawn for `pool` is scheduled: it counts until [`Core::spawn_settled`].
    fn spawn_scheduled(&mut self, pool: &str) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.pending += 1;
        }
    }

    /// A scheduled spawn started its streamlet, or gave up at shutdown.
    pub fn spawn_settled(&mut self, pool: &str) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.pending = p.pending.saturating_sub(1);
        }
        self.advance_restart(pool);
    }

    /// Counts a stream's end among its pool's errors, if it is one.
    pub(super) fn count_end(&mut self, pool: &str, reason: &EndReason) {
        let kind = match reason {
            EndReason::IoError { .. } => "io_error",
            EndReason::HandlerError { .. } => "handler_error",
            EndReason::CommandExited { .. } => "command_exited",
            EndReason::CorruptFrame { .. } => "corrupt_frame",
            EndReason::WorkerDied { .. } => "worker_died",
            _ => return,
        };
        if let Some(p) = self.pools.get_mut(pool) {
            let count = p.errors.entry(kind.to_owned()).or_default();
            *count = count.saturating_add(1);
        }
    }

    /// Spawns scheduled and not yet done, in all pools.
    pub fn pending_spawns(&self) -> u32 {
        self.pools.values().map(|p| p.pending).sum()
    }

    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    pub fn pool_statuses(&self) -> Vec<PoolStatus> {
        self.pools
            .values()
            .filter(|pool| !pool.removed)
            .map(|pool| {
                let all = || self.workers.values().filter(|w| w.pool == pool.config.name);
                let mine = || all().filter(|w| w.slot != SPARE_SLOT);
                let ready = mine().filter(|w| w.state == WorkerState::Ready).count() as u32;
                PoolStatus {
                    name: pool.config.name.clone(),
                    handler: pool.config.handler.kind().to_owned(),
                    placement: pool.config.placement.name().to_owned(),
                    workers: mine().count() as u32,
                    ready,
                    streams: mine().map(|w| w.streams.len() as u32).sum(),
                    capacity: ready * pool.config.streams_per_worker,
                    degraded_for_ms: self.degraded_for(&pool.config.name),
                    errors: pool.errors.clone(),
                    spares: all().filter(|w| w.slot == SPARE_SLOT).count() as u32,
                    slots: pool.slots.iter().filter(|s| s.in_use).count() as u32,
                    min: pool.config.workers_min,
                    max: pool.config.workers_max,
                    desired: pool.desired,
                    forecast: pool.forecast,
                    predicted_streams: pool.scaler.prediction().map(|p| p.round() as u32),
                    autoscale: pool.config.autoscale.mode.as_str().to_owned(),
                }
            })
            .collect()
    }

    /// The streamlets, each with its cgroup (whose accounting the caller
    /// reads after releasing the lock).
    pub fn worker_infos(&self, pool: Option<&str>) -> Result<Vec<WorkerRow>, ErrorBody> {
        self.check_pool(pool)?;
        let mut infos: Vec<WorkerRow> = self
            .workers
            .iter()
            .filter(|(_, w)| pool.is_none_or(|p| w.pool == p))
            .map(|(id, w)| {
                let state = self.pools.get(&w.pool);
                let slot = state.and_then(|p| p.slots.get(w.slot));
                let info = WorkerInfo {
                    id: *id,
                    pool: w.pool.clone(),
                    pid: w.pid,
                    state: w.state,
                    streams: w.streams.len() as u32,
                    capacity: state.map_or(0, |p| p.config.streams_per_worker),
                    uptime_ms: w.spawned.elapsed().as_millis() as u64,
                    restarts: slot.map_or(0, |s| s.restarts),
                    last_exit: slot.and_then(|s| s.last_exit.clone()),
                    usage: None,
                    labels: w.labels.clone(),
                };
                (info, w.confinement.cgroup.clone())
            })
            .collect();
        infos.sort_by(|(a, _), (b, _)| (&a.pool, a.id).cmp(&(&b.pool, b.id)));
        Ok(infos)
    }

    /// Up to `limit` streams with ids above `after`, by id, and the id to
    /// ask after for the next page when more remain.
    pub fn stream_infos(
        &self,
        pool: Option<&str>,
        after: Option<StreamId>,
        limit: usize,
    ) -> Result<(Vec<StreamInfo>, Option<StreamId>), ErrorBody> {
        use std::ops::Bound;
        self.check_pool(pool)?;
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut listed = self.streams.range((from, Bound::Unbounded)).filter(|(_, s)| pool.is_none_or(|p| s.pool == p));
        let infos: Vec<StreamInfo> = listed
            .by_ref()
            .take(limit)
            .map(|(id, s)| StreamInfo {
                id: *id,
                pool: s.pool.clone(),
                tenant: s.tenant.clone(),
                worker: s.worker,
                age_ms: s.opened.elapsed().as_millis() as u64,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                rate: s.managed.then(|| self.quota.allocation(StreamKey(id.0))).flatten().filter(|r| *r < UNLIMITED),
                priority: s.priority,
                sending: s.sending,
                stalled_ms: s.stalled_us / 1000,
            })
            .collect();
        let next = listed.next().and(infos.last().map(|s| s.id));
        Ok((infos, next))
    }

    fn check_pool(&self, pool: Option<&str>) -> Result<(), ErrorBody> {
        match pool {
            Some(name) if !self.pools.contains_key(name) => Err(ErrorBody::new(
                ErrorCode::UnknownPool,
                format!("pool {name:?} is not configured; configured pools: {}", self.pool_names()),
            )),
            _ => Ok(()),
        }
    }

    fn pool_names(&self) -> String {
        self.pools.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }
}

/// Send rates are measured over at least this many milliseconds: shorter
/// spans between reports are added to the next.
const MIN_USAGE_SPAN_MS: u128 = 10;

/// A slot for a stream of `tenant`: the pool's placement's choice, claimed.
/// In a pool with `tenant_isolation`, only a streamlet that serves `tenant`
/// already or serves no one: the placement's choice if it serves `tenant`;
/// else the streamlet of `tenant` with room and the fewest streams (so empty
/// streamlets stay for other tenants); else the placement's choice if it is
/// empty; else any empty one.
fn place_for(
    pool: &mut PoolState,
    workers: &HashMap<WorkerId, WorkerEntry>,
    tenant: &str,
    wanted: &streamlet_balance::Request,
) -> Option<u64> {
    let key = pool.placement.place(wanted)?;
    if !pool.config.tenant_isolation {
        return Some(key);
    }
    let own = Some(Serving::One(tenant.to_owned()));
    // (Empty is judged by its streams, not by what it was last known to serve.)
    let serving = |w: &WorkerEntry| if w.streams.is_empty() { None } else { w.tenant.clone() };
    let picked = workers.get(&WorkerId(key)).map(serving);
    if picked.as_ref() == Some(&own) {
        return Some(key);
    }
    let placement = &pool.placement;
    let with_room = |wanted: &Option<Serving>| {
        workers
            .iter()
            .filter(|(_, w)| w.pool == pool.config.name && w.state == WorkerState::Ready)
            .filter(|(_, w)| serving(w) == *wanted)
            .filter_map(|(id, _)| placement.load(id.0).filter(|(n, cap)| n < cap).map(|(n, _)| (n, id.0)))
            .min()
            .map(|(_, id)| id)
    };
    let choice = match with_room(&own) {
        Some(own) => Some(own),
        None if picked == Some(None) => return Some(key),
        None => with_room(&None),
    };
    pool.placement.release(key);
    let choice = choice?;
    pool.placement.occupy(choice);
    Some(choice)
}

/// The upstream a `relay` stream goes to: the pool's, or the one its
/// `upstream` label names, which must be in the pool's `upstream_allow`.
fn relay_upstream<'a>(
    config: &'a PoolConfig,
    labels: &BTreeMap<String, String>,
) -> Result<Option<&'a crate::upstream::Upstream>, ErrorBody> {
    let Some(default) = &config.upstream else { return Ok(None) };
    let Some(asked) = labels.get("upstream") else { return Ok(Some(default)) };
    let allowed = std::iter::once(default).chain(&config.upstream_allow);
    for upstream in allowed {
        if upstream.to_string() == *asked {
            return Ok(Some(upstream));
        }
    }
    let allowed: Vec<String> =
        std::iter::once(default).chain(&config.upstream_allow).map(ToString::to_string).collect();
    Err(ErrorBody::new(
        ErrorCode::BadRequest,
        format!("upstream {asked:?} is not allowed for pool {:?}; allowed: {}", config.name, allowed.join(", ")),
    ))
}

/// How long an open waits, at least, for a Unix upstream whose backlog is
/// full to take a connection, before it is refused as `upstream_unavailable`.
pub const UPSTREAM_WAIT: Duration = Duration::from_secs(1);

/// An allocation at or above this is no limit: the stream is not paced.
/// (A stream's max is capped here too: many unlimited maxima must not add
/// up to a cap.)
pub(crate) const UNLIMITED: u64 = 1 << 60;

/// The rate a streamlet and the kernel are given for a paced rate: `None`
/// for no limit; never 0, which the protocol reads as no limit (a stream
/// allocated nothing is held to 1 byte per second).
fn limit(rate: u64) -> Option<u64> {
    (rate < UNLIMITED).then_some(rate.max(1))
}

/// Leases freed at their expiry per tick, at most; the rest the next tick.
pub const LEASES_EXPIRED_PER_TICK: usize = 4096;

/// Why a lease was not granted. (Its request was checked before; these
/// depend on the daemon's state.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeaseError {
    #[error("streamletd is shutting down")]
    ShuttingDown,
    #[error("pool {pool:?} is not configured; configured pools: {known}")]
    UnknownPool { pool: String, known: String },
    #[error("streamletd holds {MAX_LEASES} leases, its most; release or let some expire first")]
    TooMany,
    #[error(transparent)]
    TenantFull(#[from] TenantFull),
    /// The quota's answer: `insufficient` (preempting what the pool allows
    /// would not make room).
    #[error("{0}")]
    Refused(Refusal),
}

/// The reply to a quota refusal.
pub(crate) fn refusal_error(refusal: &Refusal) -> ErrorBody {
    let code = match refusal {
        Refusal::TenantLimit { .. } => ErrorCode::TenantLimit,
        Refusal::Insufficient { .. } => ErrorCode::Insufficient,
        Refusal::Expired(_) => ErrorCode::Expired,
        Refusal::Preempted(_) => ErrorCode::Preempted,
        Refusal::UnknownLease(_) => ErrorCode::UnknownLease,
        _ => ErrorCode::BadRequest,
    };
    ErrorBody::new(code, refusal.to_string())
}

/// A distance of this many units weighs, in `geo`'s score, as much as a
/// streamlet's whole capacity in use.
const GEO_DISTANCE_PER_FULL_LOAD: f64 = 100.0;

/// The pool's placement policy, with what it needs from the configuration.
pub(crate) fn placement_for(pool: &PoolConfig, config: &Config) -> Box<dyn Placement> {
    let options = PolicyOptions {
        prefer: pool.prefer.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        distances: config.quota.distances.iter().map(|(pair, d)| (pair.clone(), *d)).collect(),
        penalty_per_unit: 1.0 / GEO_DISTANCE_PER_FULL_LOAD,
        // A seed of the pool's name: the same choices on every run.
        seed: pool.name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| h.rotate_left(5) ^ u64::from(b)),
    };
    pool.placement.build(&options)
}

impl Core {
    /// A stream's end, to subscribers other than its owner (which
    /// [`notify_end`] tells) and into the event log.
    /// `bytes`: the exact totals the streamlet reported at the end; `None`
    /// for those of its last report.
    fn publish_end(&mut self, stream: StreamId, entry: &StreamEntry, reason: &EndReason, bytes: Option<(u64, u64)>) {
        let ended = ended(stream, entry, reason.clone(), bytes);
        self.publish_except(Event::StreamEnded(ended), entry.owner.as_ref());
    }
}

/// Tells a stream's owner of its end ([`Core::publish_end`] for `bytes`).
fn notify_end(stream: StreamId, entry: StreamEntry, reason: EndReason, bytes: Option<(u64, u64)>) {
    let Some(owner) = &entry.owner else { return };
    owner.send(Event::StreamEnded(ended(stream, &entry, reason, bytes)));
}

fn ended(stream: StreamId, entry: &StreamEntry, reason: EndReason, bytes: Option<(u64, u64)>) -> StreamEnded {
    let ((bytes_in, bytes_out), bytes_exact) = match bytes {
        Some(exact) => (exact, true),
        None => ((entry.bytes_in, entry.bytes_out), false),
    };
    StreamEnded { stream, pool: entry.pool.clone(), worker: entry.worker, reason, bytes_in, bytes_out, bytes_exact }
}
