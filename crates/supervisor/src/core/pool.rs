//! A pool's own state: its configuration, placement, slots (each with the
//! deaths it remembers), crash-loop breaker, spare, scaler and demand; and
//! how a place is chosen for a stream in it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_balance::Placement;
use streamlet_proto::{ExitCause, WorkerId, WorkerState};

use super::idmap::IdMap;
use super::worker::{Serving, WorkerEntry};
use crate::config::{Config, PoolConfig};
use crate::restart::{Breaker, SlotBackoff};

#[derive(Debug)]
pub(super) struct PoolState {
    pub(super) config: Arc<PoolConfig>,
    pub(super) placement: Box<dyn Placement>,
    pub(super) slots: Vec<Slot>,
    /// The pool's crash-loop breaker.
    pub(super) breaker: Breaker,
    /// `PoolDegraded` was published and `PoolRecovered` is still due.
    pub(super) degraded: bool,
    /// A rolling restart's streamlets still to replace, in order.
    pub(super) restarting: VecDeque<WorkerId>,
    /// Its spare streamlet, starting or ready, if it keeps one.
    pub(super) spare: Option<WorkerId>,
    /// Spawns scheduled and not yet done (in a backoff, or on a blocking
    /// thread): its streamlets to come.
    pub(super) pending: u32,
    /// Error counts by kind (`PoolStatus::errors`).
    pub(super) errors: BTreeMap<String, u64>,
    /// Its scaling rules and the latest forecast.
    pub(super) scaler: streamlet_autoscale::Scaler,
    /// Its arrivals, stream durations and their model.
    pub(super) demand: streamlet_autoscale::Demand,
    /// The scaler's last answer: streamlets wanted, and what the forecast
    /// asked for.
    pub(super) desired: u32,
    pub(super) forecast: Option<u32>,
    /// `forecast-only`: the spawns last reported as skipped.
    pub(super) would_spawn: u32,
    /// How long its streamlets take to become ready (the slowest of late).
    pub(super) spawn_time: Duration,
    /// Gone from the configuration (a reload): no new streams; it goes when
    /// its last streamlet has.
    pub(super) removed: bool,
}

impl PoolState {
    /// A pool with `slots` places to fill at once.
    pub(super) fn new(pool: &Arc<PoolConfig>, config: &Config, slots: u32) -> Self {
        PoolState {
            config: pool.clone(),
            placement: pool.placement(config),
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

    /// Adds `n` to the pool's count of errors of `kind`.
    pub(super) fn count_error(&mut self, kind: &str, n: u64) {
        let count = self.errors.entry(kind.to_owned()).or_default();
        *count = count.saturating_add(n);
    }
}

/// A place in a pool for one streamlet; a replacement takes its dead
/// predecessor's slot (and its labels).
#[derive(Debug, Default)]
pub(super) struct Slot {
    /// The pool keeps a streamlet here: live, starting, or to be replaced.
    /// False once the autoscaler retired it (the slot may be taken again).
    pub(super) in_use: bool,
    pub(super) worker: Option<WorkerId>,
    /// Streamlets of this slot that died.
    pub(super) restarts: u32,
    pub(super) last_exit: Option<ExitCause>,
    /// Deaths in a row, for the backoff.
    pub(super) backoff: SlotBackoff,
    /// The last [`DEATHS_KEPT`] deaths, newest last.
    pub(super) history: VecDeque<DeathRecord>,
}

/// Deaths each slot remembers for `streamletctl worker`.
pub const DEATHS_KEPT: usize = 16;

/// One death, as its slot remembers it.
#[derive(Debug, Clone)]
pub(super) struct DeathRecord {
    pub(super) worker: WorkerId,
    pub(super) cause: ExitCause,
    pub(super) uptime: Duration,
    pub(super) at: Instant,
    pub(super) streams: u32,
}

impl Slot {
    /// Its streamlet `id` died of `cause`: counted and remembered.
    pub(super) fn record_death(&mut self, record: DeathRecord) {
        if self.worker == Some(record.worker) {
            self.worker = None;
        }
        self.restarts += 1;
        self.last_exit = Some(record.cause.clone());
        if self.history.len() == DEATHS_KEPT {
            self.history.pop_front();
        }
        self.history.push_back(record);
    }
}

/// A slot for a stream of `tenant`: the pool's placement's choice, claimed.
/// In a pool with `tenant_isolation`, only a streamlet that serves `tenant`
/// already or serves no one: the placement's choice if it serves `tenant`;
/// else the streamlet of `tenant` with room and the fewest streams (so empty
/// streamlets stay for other tenants); else the placement's choice if it is
/// empty; else any empty one.
pub(super) fn place_for(
    pool: &mut PoolState,
    workers: &IdMap<WorkerId, WorkerEntry>,
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
