//! The streamlets: each pool's slots, its spare and its placement, and the
//! table of streamlets by id. [`Fleet`] owns them and keeps them in step:
//! a streamlet is in its pool's placement exactly while it is ready (and
//! not draining, retiring or evicted), and each slot names at most the one
//! streamlet that serves it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_proto::{ErrorBody, ErrorCode, ExitCause, StreamId, WorkerId, WorkerInfo, WorkerState};
use streamlet_sandbox::cgroup::WorkerCgroup;
use tokio::sync::mpsc;

use super::idmap::{IdMap, IdSet};
use super::pool::{place_for, PoolState};
use super::worker::{KillRequest, Serving, WorkerEntry};
use crate::config::Config;
use crate::link::{SendError, WorkerLink};
use crate::sandbox::Confinement;

/// The slot number of a pool's spare streamlet, which has no slot of its own.
pub const SPARE_SLOT: usize = usize::MAX;

/// A streamlet the autoscaler (or a reload) wants: the spawner starts it in
/// this slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnOrder {
    pub pool: String,
    pub slot: usize,
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

/// What to do after a streamlet died: start a new one in its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respawn {
    pub pool: String,
    pub slot: usize,
    pub delay: Duration,
}

/// A streamlet's listing and its cgroup (read outside the lock).
pub type WorkerRow = (WorkerInfo, Option<Arc<WorkerCgroup>>);

/// The streamlets of every pool.
#[derive(Debug, Default)]
pub(super) struct Fleet {
    pub(super) pools: BTreeMap<String, PoolState>,
    pub(super) workers: IdMap<WorkerId, WorkerEntry>,
    next_worker: u64,
}

/// What an operator's drain asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// It had no streams and was told to exit.
    Exiting,
    /// It takes no new streams and exits when its last one ends.
    Draining,
}

/// What became of a streamlet that said it is ready.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Readied {
    /// It waits as its pool's spare, out of placement.
    Spare,
    /// It serves its slot, after `took` from spawn.
    Serving { took: Duration },
}

impl Fleet {
    pub(super) fn new(config: &Config) -> Self {
        let pools = config
            .pools
            .values()
            .map(|pool| (pool.name.clone(), PoolState::new(pool, config, pool.workers_min)))
            .collect();
        Fleet { pools, workers: IdMap::default(), next_worker: 1 }
    }

    pub(super) fn next_worker_id(&mut self) -> WorkerId {
        let id = WorkerId(self.next_worker);
        self.next_worker += 1;
        id
    }

    /// A pool the configuration names (not one a reload removed).
    pub(super) fn live(&self, pool: &str) -> Option<&PoolState> {
        self.pools.get(pool).filter(|p| !p.removed)
    }

    /// `unknown_pool` for a pool that is not (or no longer) configured.
    pub(super) fn check(&self, pool: Option<&str>) -> Result<(), ErrorBody> {
        match pool {
            Some(name) if !self.pools.contains_key(name) => Err(ErrorBody::new(
                ErrorCode::UnknownPool,
                format!("pool {name:?} is not configured; configured pools: {}", self.names()),
            )),
            _ => Ok(()),
        }
    }

    /// The pools' names, for an error that lists them.
    pub(super) fn names(&self) -> String {
        self.pools.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }

    /// The streamlets of `pool`.
    pub(super) fn workers_of<'a>(&'a self, pool: &'a str) -> impl Iterator<Item = (&'a WorkerId, &'a WorkerEntry)> {
        self.workers.iter().filter(move |(_, w)| w.pool == pool)
    }

    /// A new streamlet takes its slot (or the spare's place), starting or,
    /// if `unwanted`, stopping. Answers its slot's restarts so far.
    pub(super) fn insert(&mut self, new: NewWorker, unwanted: bool) -> u32 {
        let mut labels = BTreeMap::new();
        let mut restarts = 0;
        if let Some(pool) = self.pools.get_mut(&new.pool) {
            if new.slot == SPARE_SLOT {
                pool.spare = Some(new.id);
            } else {
                labels = pool.config.labels_of(new.slot);
                if let Some(slot) = pool.slots.get_mut(new.slot) {
                    restarts = slot.restarts;
                    slot.worker = Some(new.id);
                }
            }
        }
        let entry = WorkerEntry {
            pool: new.pool,
            slot: new.slot,
            pid: new.pid,
            state: if unwanted { WorkerState::Stopping } else { WorkerState::Starting },
            link: new.link,
            kill: new.kill,
            spawned: Instant::now(),
            started: Instant::now(),
            streams: IdSet::default(),
            confinement: new.confinement,
            labels,
            drain_deadline: None,
            idle_since: None,
            retiring: false,
            tenant: None,
        };
        self.workers.insert(new.id, entry);
        restarts
    }

    /// A starting streamlet said it is ready: a spare waits out of
    /// placement; any other enters its pool's placement. `None` if it is not
    /// known or not starting.
    pub(super) fn ready(&mut self, id: WorkerId) -> Option<Readied> {
        let worker = self.workers.get_mut(&id).filter(|w| w.state == WorkerState::Starting)?;
        if worker.slot == SPARE_SLOT {
            worker.state = WorkerState::Spare;
            return Some(Readied::Spare);
        }
        worker.state = WorkerState::Ready;
        worker.idle_since = Some(Instant::now());
        let pool = self.pools.get_mut(&worker.pool).expect("a worker's pool exists");
        pool.placement.add(id.0, pool.config.streams_per_worker, &worker.labels);
        Some(Readied::Serving { took: worker.started.elapsed() })
    }

    /// A place for a stream of `tenant` in `pool`: the placement's choice,
    /// claimed (see [`place_for`]). A choice that is not a known streamlet
    /// leaves placement and the next is asked.
    pub(super) fn claim(&mut self, pool: &str, tenant: &str, wanted: &streamlet_balance::Request) -> Option<WorkerId> {
        loop {
            let state = self.pools.get_mut(pool)?;
            let key = place_for(state, &self.workers, tenant, wanted)?;
            if self.workers.contains_key(&WorkerId(key)) {
                return Some(WorkerId(key));
            }
            state.placement.remove(key);
        }
    }

    /// Gives back a place [`claim`](Self::claim) took, unused.
    pub(super) fn unclaim(&mut self, pool: &str, id: WorkerId) {
        if let Some(state) = self.pools.get_mut(pool) {
            state.placement.release(id.0);
        }
    }

    /// A claimed streamlet took `stream` (of `tenant`): no longer idle, and
    /// in a pool with `tenant_isolation` now of that tenant.
    pub(super) fn took(&mut self, id: WorkerId, stream: StreamId, tenant: &str) {
        let Some(worker) = self.workers.get_mut(&id) else { return };
        let isolation = self.pools.get(&worker.pool).is_some_and(|p| p.config.tenant_isolation);
        worker.streams.insert(stream);
        worker.idle_since = None;
        if isolation && worker.tenant.is_none() {
            worker.tenant = Some(Serving::One(tenant.to_owned()));
        }
    }

    /// A claimed streamlet's channel failed, or is stuck past its outbox,
    /// during a hand-over (`doing` says which): out of placement, killed (a
    /// stuck one as `protocol_error`), and replaced by its monitor.
    pub(super) fn evict(&mut self, id: WorkerId, error: &SendError, doing: &str) {
        tracing::warn!(worker = %id, error = %error, "streamlet channel failed while {doing}; killing it");
        let Some(worker) = self.workers.get_mut(&id) else { return };
        if let Some(pool) = self.pools.get_mut(&worker.pool) {
            pool.placement.remove(id.0);
        }
        worker.state = WorkerState::Stopping;
        let cause = matches!(error, SendError::Stuck).then(|| ExitCause::ProtocolError { message: error.to_string() });
        let _ = worker.kill.send(cause);
    }

    /// `stream` left streamlet `id`: its place is free again, and an empty
    /// streamlet is idle from now and nobody's.
    pub(super) fn free(&mut self, id: WorkerId, stream: StreamId) {
        let Some(worker) = self.workers.get_mut(&id) else { return };
        worker.streams.remove(&stream);
        if worker.streams.is_empty() {
            worker.tenant = None;
            if worker.idle_since.is_none() {
                worker.idle_since = Some(Instant::now());
            }
        }
        if worker.state == WorkerState::Ready {
            if let Some(pool) = self.pools.get_mut(&worker.pool) {
                pool.placement.release(id.0);
            }
        }
    }

    /// Puts the pool's ready spare into `slot` (with the slot's labels) and
    /// into placement, without announcing it; its id, if there was one.
    pub(super) fn promote_spare(&mut self, pool_name: &str, slot: usize) -> Option<WorkerId> {
        let pool = self.pools.get_mut(pool_name)?;
        let id = pool.spare?;
        let spare = self.workers.get_mut(&id).filter(|w| w.state == WorkerState::Spare)?;
        pool.spare = None;
        spare.slot = slot;
        spare.state = WorkerState::Ready;
        spare.labels = pool.config.labels_of(slot);
        // Its service starts now: `healthy_after` counts from here (its
        // uptime stays its process's).
        spare.started = Instant::now();
        spare.idle_since = Some(Instant::now());
        pool.slots[slot].worker = Some(id);
        pool.placement.add(id.0, pool.config.streams_per_worker, &spare.labels);
        Some(id)
    }

    /// An operator's drain: out of placement; it exits when its last stream
    /// ends, or is killed at the deadline (a second drain may bring the
    /// deadline nearer, never push it away).
    pub(super) fn drain(&mut self, id: WorkerId, deadline: Instant) -> Result<DrainOutcome, ErrorBody> {
        let worker = self.workers.get_mut(&id).ok_or_else(|| unknown_worker(id))?;
        match worker.state {
            WorkerState::Ready | WorkerState::Starting | WorkerState::Spare => {}
            WorkerState::Draining => {
                worker.drain_deadline = Some(worker.drain_deadline.map_or(deadline, |d| d.min(deadline)));
                return Ok(if worker.streams.is_empty() { DrainOutcome::Exiting } else { DrainOutcome::Draining });
            }
            WorkerState::Stopping => {
                return Err(ErrorBody::new(ErrorCode::BadRequest, format!("streamlet {id} is already stopping")))
            }
        }
        worker.state = WorkerState::Draining;
        worker.drain_deadline = Some(deadline);
        if let Some(pool) = self.pools.get_mut(&worker.pool) {
            pool.placement.remove(id.0);
        }
        tracing::info!(worker = %id, streams = worker.streams.len(), "streamlet draining");
        if worker.streams.is_empty() {
            worker.link.hang_up();
            return Ok(DrainOutcome::Exiting);
        }
        Ok(DrainOutcome::Draining)
    }

    /// Every pool has at least its `workers.min` streamlets ready.
    pub(super) fn at_min(&self) -> bool {
        self.pools.values().filter(|p| !p.removed).all(|p| {
            let ready = p
                .slots
                .iter()
                .filter_map(|s| s.worker)
                .filter(|id| self.workers.get(id).is_some_and(|w| w.state == WorkerState::Ready));
            ready.count() as u32 >= p.config.workers_min
        })
    }

    /// A spawn for `pool` is scheduled: it counts until [`settled`](Self::settled).
    pub(super) fn scheduled(&mut self, pool: &str) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.pending += 1;
        }
    }

    /// A scheduled spawn started its streamlet, or gave up.
    pub(super) fn settled(&mut self, pool: &str) {
        if let Some(p) = self.pools.get_mut(pool) {
            p.pending = p.pending.saturating_sub(1);
        }
    }

    /// Out of every placement, each streamlet stopping and emptied (the
    /// daemon is shutting down): their links, to hang up.
    pub(super) fn stop_all(&mut self) -> Vec<Arc<WorkerLink>> {
        for (id, worker) in &mut self.workers {
            if let Some(pool) = self.pools.get_mut(&worker.pool) {
                pool.placement.remove(id.0);
            }
            worker.state = WorkerState::Stopping;
            worker.streams.clear();
        }
        self.workers.values().map(|w| w.link.clone()).collect()
    }
}

/// The error for a streamlet id that is not (or no longer) running.
pub fn unknown_worker(id: WorkerId) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownWorker,
        format!("streamlet {id} is not running (it may have died: `streamletctl workers` lists the live ones)"),
    )
}

#[cfg(test)]
#[path = "fleet_tests.rs"]
mod tests;
