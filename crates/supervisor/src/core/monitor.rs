//! The crash-isolation half of the core: what a streamlet's death does to
//! its slot and its streams, and operator actions (drain, kill, rolling
//! restart).

use std::time::{Duration, Instant};

use streamlet_proto::{
    EndReason, ErrorBody, ErrorCode, Event, ExitCause, PoolDegraded, PoolRecovered, StreamId, StreamMigrated,
    WorkerExited, WorkerId, WorkerReady, WorkerState,
};

use super::coordinator::Core;
use super::fleet::{unknown_worker, DrainOutcome, Respawn, SPARE_SLOT};
use super::handover::{hand_over, HandOverError, Handing, Keep};
use super::pool::DeathRecord;
use super::worker::WorkerEntry;
use crate::config::OnWorkerExit;
use crate::restart::{self, Verdict};

/// How long a dead spare's replacement waits.
const SPARE_RESPAWN: Duration = Duration::from_secs(1);

/// What a death did to its slot.
#[derive(Debug)]
struct Vacated {
    respawn: Option<Respawn>,
    verdict: Verdict,
    /// The spare that took the slot at once.
    promoted: Option<WorkerId>,
}

impl Core {
    /// A streamlet left the table. In order: its slot records the death and,
    /// unless the pool is degraded, the spare takes the slot (quietly, so
    /// that nothing else takes it first); its streams move (possibly to that
    /// spare) or end; then `worker_exited`, the spare's `worker_ready` and
    /// any `pool_degraded` are published. The answer says what to spawn and
    /// when: the slot's replacement, or a new spare.
    pub(super) fn forget_worker(&mut self, id: WorkerId, worker: WorkerEntry, cause: ExitCause) -> Option<Respawn> {
        let pool = self.fleet.pools.get_mut(&worker.pool).expect("a worker's pool exists");
        pool.placement.remove(id.0);
        pool.restarting.retain(|w| *w != id);
        // A relay stream's upstream connection died with the streamlet: it
        // cannot move, and ends.
        let migrate = pool.config.on_worker_exit == OnWorkerExit::Migrate
            && !self.shutting_down
            && pool.config.upstream.is_none();
        let planned = worker.state == WorkerState::Draining || cause == ExitCause::KilledByOperator || worker.retiring;
        let vacated = self.vacate(id, &worker, &cause, planned);
        let served = worker.streams.len() as u32;
        let moved = self.move_or_end(id, &worker, &cause, migrate);
        if self.shutting_down {
            tracing::info!(worker = %id, pool = %worker.pool, pid = worker.pid, %cause, "streamlet exited");
            return vacated.respawn;
        }
        self.report_death(id, &worker, cause, planned, served, moved, &vacated);
        vacated.respawn
    }

    /// The dead streamlet's slot: its death recorded and its replacement
    /// planned, or the spare put in its place at once.
    fn vacate(&mut self, id: WorkerId, worker: &WorkerEntry, cause: &ExitCause, planned: bool) -> Vacated {
        // The process's own run, for what is reported; its time in the slot
        // (shorter for a spare that took it) for the restart policy.
        let uptime = worker.spawned.elapsed();
        let in_slot = worker.started.elapsed();
        let now = self.now_ms();
        let random = self.next_random();
        let shutting_down = self.shutting_down;
        let pool = self.fleet.pools.get_mut(&worker.pool).expect("a worker's pool exists");
        let policy = pool.config.restart;
        let mut vacated =
            Vacated { respawn: None, verdict: Verdict { delay: Duration::ZERO, tripped: false }, promoted: None };
        if pool.removed {
            // Its pool is gone from the configuration: nothing replaces it.
        } else if worker.slot == SPARE_SLOT {
            // A spare that dies is replaced after a pause (it served nothing;
            // a broken binary must not spin here either).
            if pool.spare == Some(id) {
                pool.spare = None;
            }
            vacated.verdict.delay = SPARE_RESPAWN;
            vacated.respawn = (!shutting_down && pool.config.spare).then(|| Respawn {
                pool: worker.pool.clone(),
                slot: SPARE_SLOT,
                delay: SPARE_RESPAWN,
            });
        } else if worker.retiring || pool.slots.get(worker.slot).is_some_and(|s| !s.in_use) {
            // Retired by the autoscaler, or its pool removed and added again
            // while it drained: its slot was given up already.
            if let Some(slot) = pool.slots.get_mut(worker.slot).filter(|s| s.worker == Some(id)) {
                slot.worker = None;
            }
        } else if let Some(slot) = pool.slots.get_mut(worker.slot) {
            let streams = worker.streams.len() as u32;
            slot.record_death(DeathRecord { worker: id, cause: cause.clone(), uptime, at: Instant::now(), streams });
            if !shutting_down {
                // A drained streamlet, or one an operator killed, did not
                // crash: nothing counts against the pool.
                if !planned {
                    vacated.verdict =
                        restart::on_death(&policy, &mut slot.backoff, &mut pool.breaker, in_slot, now, random);
                }
                let labels = crate::metrics::CauseLabels { pool: worker.pool.clone(), cause: cause.kind().to_owned() };
                self.metrics.restarts.get_or_create(&labels).inc();
                // The spare fills the slot now; the backoff then delays the
                // next spare's spawn instead, so a crash loop spawns no faster.
                let degraded = pool.breaker.degraded(now) && !planned;
                vacated.promoted = if degraded { None } else { self.fleet.promote_spare(&worker.pool, worker.slot) };
                let slot = if vacated.promoted.is_some() { SPARE_SLOT } else { worker.slot };
                vacated.respawn = Some(Respawn { pool: worker.pool.clone(), slot, delay: vacated.verdict.delay });
            }
        }
        vacated
    }

    /// The dead streamlet's streams move to another (with `migrate`) or end
    /// with `worker_died`: how many moved.
    fn move_or_end(&mut self, id: WorkerId, worker: &WorkerEntry, cause: &ExitCause, migrate: bool) -> u32 {
        let mut moved = 0u32;
        let mut streams: Vec<StreamId> = worker.streams.iter().copied().collect();
        streams.sort_unstable();
        for stream in streams {
            if migrate && self.migrate(stream, id) {
                moved += 1;
                continue;
            }
            if let Some(entry) = self.streams.remove(&stream) {
                entry.fd.shut_down();
                self.finish(stream, entry, EndReason::WorkerDied { cause: cause.clone() }, None);
            }
        }
        moved
    }

    /// What happened, logged and published in the order PROTOCOL.md gives.
    #[allow(clippy::too_many_arguments)]
    fn report_death(
        &mut self,
        id: WorkerId,
        worker: &WorkerEntry,
        cause: ExitCause,
        planned: bool,
        served: u32,
        moved: u32,
        vacated: &Vacated,
    ) {
        let uptime = worker.spawned.elapsed();
        let filled_in_ms = if vacated.promoted.is_some() { 0 } else { vacated.verdict.delay.as_millis() as u64 };
        if planned {
            tracing::info!(worker = %id, pool = %worker.pool, %cause, streams_moved = moved, "streamlet stopped");
        } else {
            tracing::warn!(
                worker = %id, pool = %worker.pool, pid = worker.pid, %cause, streams_lost = served - moved,
                streams_moved = moved, uptime_ms = uptime.as_millis() as u64, spare = worker.slot == SPARE_SLOT,
                respawn_in_ms = filled_in_ms, "streamlet died"
            );
        }
        self.publish(Event::WorkerExited(WorkerExited {
            worker: id,
            pool: worker.pool.clone(),
            cause,
            uptime_ms: uptime.as_millis() as u64,
            streams: served,
            respawn_in_ms: vacated.respawn.as_ref().map(|_| filled_in_ms),
        }));
        if let Some(spare) = vacated.promoted {
            tracing::debug!(worker = %spare, pool = %worker.pool, slot = worker.slot, "spare took the slot");
            self.publish(Event::WorkerReady(WorkerReady { worker: spare, pool: worker.pool.clone(), startup_ms: 0 }));
        }
        if vacated.verdict.tripped {
            let now = self.now_ms();
            let pool = self.fleet.pools.get_mut(&worker.pool).expect("a worker's pool exists");
            pool.degraded = true;
            let policy = pool.config.restart;
            let deaths = pool.breaker.recent(now, &policy) as u32;
            tracing::error!(
                pool = %worker.pool, deaths, period_ms = policy.period.as_millis() as u64,
                cooldown_ms = policy.cooldown.as_millis() as u64,
                "crash loop: pool degraded, restarts paused for the cool-down"
            );
            self.publish(Event::PoolDegraded(PoolDegraded {
                pool: worker.pool.clone(),
                deaths,
                period_ms: policy.period.as_millis() as u64,
                cooldown_ms: policy.cooldown.as_millis() as u64,
            }));
        }
    }

    /// Places a dead streamlet's stream on another through the one
    /// hand-over; its rate, quota and tenant slot stay as they are. False if
    /// none has room or the hand-over fails for the stream itself: the
    /// caller ends it.
    fn migrate(&mut self, stream: StreamId, from: WorkerId) -> bool {
        let Some(entry) = self.streams.get(&stream) else { return false };
        let handing = Handing {
            pool: &entry.pool,
            stream,
            tenant: &entry.tenant,
            labels: &entry.labels,
            region: entry.region.clone(),
            ingress: entry.ingress,
            fd: std::os::fd::AsFd::as_fd(&entry.fd.0),
        };
        let to = match hand_over(&mut self.fleet, &handing, &mut Keep(entry.rate), "migrating") {
            Ok(to) => to,
            Err(HandOverError::NoRoom | HandOverError::Unsent(_)) => return false,
            Err(HandOverError::Refused(never)) => match never {},
        };
        let entry = self.streams.get_mut(&stream).expect("checked above");
        entry.moved_to(to);
        let pool = entry.pool.clone();
        tracing::info!(%stream, %from, %to, "stream migrated");
        self.publish(Event::StreamMigrated(StreamMigrated { stream, pool, from, to }));
        true
    }

    /// An operator's drain: no new streams; the streamlet exits when its
    /// last stream ends, or is killed (`killed_by_operator`) at `timeout`.
    pub fn drain(&mut self, id: WorkerId, timeout: Duration) -> Result<DrainOutcome, ErrorBody> {
        self.fleet.drain(id, Instant::now() + timeout)
    }

    /// A draining streamlet whose last stream ended is told to exit.
    pub(super) fn drained(&mut self, id: WorkerId) {
        if let Some(worker) = self.fleet.workers.get(&id) {
            if worker.state == WorkerState::Draining && worker.streams.is_empty() {
                worker.link.hang_up();
            }
        }
    }

    /// An operator's kill: the streamlet dies now, recorded as
    /// `killed_by_operator`, and is replaced at once.
    pub fn kill_by_operator(&mut self, id: WorkerId) -> Result<(), ErrorBody> {
        if !self.fleet.workers.contains_key(&id) {
            return Err(unknown_worker(id));
        }
        tracing::info!(worker = %id, "streamlet killed by operator");
        self.kill_worker(id, Some(ExitCause::KilledByOperator));
        Ok(())
    }

    /// Starts a rolling restart of a pool: its streamlets are drained and
    /// replaced one at a time, the next only once the last one's replacement
    /// is ready and the others have room for the pool's streams.
    pub fn restart_pool(&mut self, pool: &str) -> Result<Vec<WorkerId>, ErrorBody> {
        self.fleet.check(Some(pool))?;
        let mut ids: Vec<WorkerId> = self
            .fleet
            .workers_of(pool)
            .filter(|(_, w)| w.slot != SPARE_SLOT)
            .filter(|(_, w)| matches!(w.state, WorkerState::Ready | WorkerState::Starting))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let state = self.fleet.pools.get_mut(pool).expect("checked above");
        if !state.restarting.is_empty() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("pool {pool:?} is already restarting ({} streamlets to go)", state.restarting.len()),
            ));
        }
        state.restarting = ids.iter().copied().collect();
        // The spare is of the old kind too: replaced now (after its pause).
        if let Some(spare) = state.spare {
            self.kill_worker(spare, Some(ExitCause::KilledByOperator));
        }
        tracing::info!(pool, streamlets = ids.len(), "rolling restart");
        self.advance_restart(pool);
        Ok(ids)
    }

    /// Drains the next streamlet of a rolling restart if none is draining or
    /// starting in the pool and the rest can hold the pool's streams.
    pub(super) fn advance_restart(&mut self, pool: &str) {
        let Some(state) = self.fleet.pools.get(pool) else { return };
        let Some(&next) = state.restarting.front() else { return };
        if state.pending > 0 {
            return;
        }
        let per = state.config.streams_per_worker as usize;
        let mine = || self.fleet.workers_of(pool).map(|(_, w)| w);
        if mine().any(|w| matches!(w.state, WorkerState::Draining | WorkerState::Starting)) {
            return;
        }
        let ready = mine().filter(|w| w.state == WorkerState::Ready).count();
        let streams: usize = mine().map(|w| w.streams.len()).sum();
        // Never below the capacity in use: the others must have room for
        // every stream the pool serves. (A pool of one streamlet cannot.)
        if ready > 1 && (ready - 1) * per < streams {
            tracing::info!(pool, worker = %next, "rolling restart waits for room");
            return;
        }
        self.fleet.pools.get_mut(pool).expect("checked above").restarting.pop_front();
        // One that is gone or cannot drain (stopping) is skipped.
        if !self.fleet.workers.contains_key(&next) || self.drain(next, self.drain_timeout).is_err() {
            self.advance_restart(pool);
        }
    }

    /// A streamlet is ready: subscribers hear of it, and a rolling restart
    /// moves on.
    pub(super) fn announce_ready(&mut self, id: WorkerId) {
        let Some(worker) = self.fleet.workers.get(&id) else { return };
        let pool = worker.pool.clone();
        let startup_ms = worker.started.elapsed().as_millis() as u64;
        self.publish(Event::WorkerReady(WorkerReady { worker: id, pool: pool.clone(), startup_ms }));
        self.advance_restart(&pool);
    }

    /// The monitor's clock work, every 50 ms: draining streamlets past their
    /// deadline are killed, and pools whose cool-down ended recover.
    pub fn tick_monitor(&mut self) {
        self.log.prune();
        let late: Vec<WorkerId> = self
            .fleet
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Draining && w.drain_deadline.is_some_and(|d| d <= Instant::now()))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            tracing::warn!(worker = %id, "drain timed out; killing the streamlet");
            if let Some(w) = self.fleet.workers.get_mut(&id) {
                w.drain_deadline = None;
            }
            self.kill_worker(id, Some(ExitCause::KilledByOperator));
        }
        let now = self.now_ms();
        let recovered: Vec<String> = self
            .fleet
            .pools
            .values_mut()
            .filter(|p| p.degraded && !p.breaker.degraded(now))
            .map(|p| {
                p.degraded = false;
                p.config.name.clone()
            })
            .collect();
        for pool in recovered {
            tracing::info!(%pool, "pool recovered from its crash loop");
            self.publish(Event::PoolRecovered(PoolRecovered { pool }));
        }
    }
}
