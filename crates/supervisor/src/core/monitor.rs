//! The crash-isolation half of the core: what a streamlet's death does to
//! its streams and its slot, operator actions (drain, kill, rolling
//! restart), and the lifecycle events published to subscribers.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use streamlet_proto::worker::{Assign, ToWorker};
use streamlet_proto::{
    Death, EndReason, ErrorBody, ErrorCode, Event, ExitCause, PoolDegraded, PoolRecovered, StreamId, StreamMigrated,
    WorkerDetail, WorkerExited, WorkerId, WorkerInfo, WorkerReady, WorkerState,
};

use super::{notify_end, Core, Respawn, WorkerEntry, SPARE_SLOT};
use crate::config::OnWorkerExit;
use crate::link::SendError;
use crate::restart;

/// Deaths each slot remembers for `streamletctl worker`.
pub const DEATHS_KEPT: usize = 16;

/// How long a dead spare's replacement waits.
const SPARE_RESPAWN: Duration = Duration::from_secs(1);

/// One death, as its slot remembers it.
#[derive(Debug, Clone)]
pub(super) struct DeathRecord {
    worker: WorkerId,
    cause: ExitCause,
    uptime: Duration,
    at: Instant,
    streams: u32,
}

/// What an operator's drain asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainOutcome {
    /// It had no streams and was told to exit.
    Exiting,
    /// It takes no new streams and exits when its last one ends.
    Draining,
}

impl Core {
    /// A streamlet left the table. In order: its slot records the death and,
    /// unless the pool is degraded, the spare takes the slot (quietly, so
    /// that nothing else takes it first); its streams move (possibly to that
    /// spare) or end; then `worker_exited`, the spare's `worker_ready` and
    /// any `pool_degraded` are published. The answer says what to spawn and
    /// when: the slot's replacement, or a new spare.
    pub(super) fn forget_worker(&mut self, id: WorkerId, worker: WorkerEntry, cause: ExitCause) -> Option<Respawn> {
        // The process's own run, for what is reported; its time in the slot
        // (shorter for a spare that took it) for the restart policy.
        let uptime = worker.spawned.elapsed();
        let in_slot = worker.started.elapsed();
        let served = worker.streams.len() as u32;
        let now = self.now_ms();
        let random = self.next_random();
        let shutting_down = self.shutting_down;
        let pool = self.pools.get_mut(&worker.pool).expect("a worker's pool exists");
        pool.placement.remove(id.0);
        pool.restarting.retain(|w| *w != id);
        let removed = pool.removed;
        let policy = pool.config.restart;
        // A relay stream's upstream connection died with the streamlet: it
        // cannot move, and ends.
        let relay = pool.config.upstream.is_some();
        let migrate = pool.config.on_worker_exit == OnWorkerExit::Migrate && !shutting_down && !relay;
        let planned = worker.state == WorkerState::Draining || cause == ExitCause::KilledByOperator || worker.retiring;

        // The slot, and what replaces it.
        let mut verdict = restart::Verdict { delay: Duration::ZERO, tripped: false };
        let mut promoted = None;
        let respawn = if removed {
            // Its pool is gone from the configuration: nothing replaces it.
            None
        } else if worker.slot == SPARE_SLOT {
            // A spare that dies is replaced after a pause (it served nothing;
            // a broken binary must not spin here either).
            if pool.spare == Some(id) {
                pool.spare = None;
            }
            verdict.delay = SPARE_RESPAWN;
            (!shutting_down && pool.config.spare).then(|| Respawn {
                pool: worker.pool.clone(),
                slot: SPARE_SLOT,
                delay: SPARE_RESPAWN,
            })
        } else if worker.retiring || pool.slots.get(worker.slot).is_some_and(|s| !s.in_use) {
            // Retired by the autoscaler, or its pool removed and added again
            // while it drained: its slot was given up already.
            if let Some(slot) = pool.slots.get_mut(worker.slot).filter(|s| s.worker == Some(id)) {
                slot.worker = None;
            }
            None
        } else if let Some(slot) = pool.slots.get_mut(worker.slot) {
            if slot.worker == Some(id) {
                slot.worker = None;
            }
            slot.restarts += 1;
            slot.last_exit = Some(cause.clone());
            if slot.history.len() == DEATHS_KEPT {
                slot.history.pop_front();
            }
            let record = DeathRecord { worker: id, cause: cause.clone(), uptime, at: Instant::now(), streams: served };
            slot.history.push_back(record);
            if shutting_down {
                None
            } else {
                // A drained streamlet, or one an operator killed, did not
                // crash: nothing counts against the pool.
                if !planned {
                    verdict = restart::on_death(&policy, &mut slot.backoff, &mut pool.breaker, in_slot, now, random);
                }
                let labels = crate::metrics::CauseLabels { pool: worker.pool.clone(), cause: cause.kind().to_owned() };
                self.metrics.restarts.get_or_create(&labels).inc();
                // The spare fills the slot now; the backoff then delays the
                // next spare's spawn instead, so a crash loop spawns no faster.
                let degraded = pool.breaker.degraded(now) && !planned;
                promoted = if degraded { None } else { self.promote_spare(&worker.pool, worker.slot) };
                let slot = if promoted.is_some() { SPARE_SLOT } else { worker.slot };
                Some(Respawn { pool: worker.pool.clone(), slot, delay: verdict.delay })
            }
        } else {
            None
        };

        // Its streams.
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
                self.forget_stream(stream, &entry);
                self.record_duration(&entry.pool, entry.opened.elapsed());
                let reason = EndReason::WorkerDied { cause: cause.clone() };
                self.count_end(&entry.pool, &reason);
                self.publish_end(stream, &entry, &reason, None);
                notify_end(stream, entry, reason, None);
            }
        }
        if shutting_down {
            tracing::info!(worker = %id, pool = %worker.pool, pid = worker.pid, %cause, "streamlet exited");
            return respawn;
        }

        // What happened, in the order PROTOCOL.md gives.
        let filled_in_ms = if promoted.is_some() { 0 } else { verdict.delay.as_millis() as u64 };
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
            respawn_in_ms: respawn.as_ref().map(|_| filled_in_ms),
        }));
        if let Some(spare) = promoted {
            tracing::debug!(worker = %spare, pool = %worker.pool, slot = worker.slot, "spare took the slot");
            self.publish(Event::WorkerReady(WorkerReady { worker: spare, pool: worker.pool.clone(), startup_ms: 0 }));
        }
        if verdict.tripped {
            let pool = self.pools.get_mut(&worker.pool).expect("a worker's pool exists");
            pool.degraded = true;
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
        respawn
    }

    /// Puts the pool's ready spare into `slot` (with the slot's labels) and
    /// into placement, without announcing it; its id, if there was one.
    fn promote_spare(&mut self, pool_name: &str, slot: usize) -> Option<WorkerId> {
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

    /// Places a dead streamlet's stream on another through the pool's
    /// placement; its quota and tenant slot stay as they are. A streamlet
    /// whose channel fails is taken out (and killed) and the next is tried.
    /// False if none has room or the hand-over fails for the stream itself:
    /// the caller ends it.
    fn migrate(&mut self, stream: StreamId, from: WorkerId) -> bool {
        loop {
            let Some(entry) = self.streams.get(&stream) else { return false };
            let Some(pool) = self.pools.get_mut(&entry.pool) else { return false };
            let wanted = streamlet_balance::Request { region: entry.region.clone() };
            let Some(key) = super::place_for(pool, &self.workers, &entry.tenant, &wanted) else { return false };
            let to = WorkerId(key);
            let assign = ToWorker::Assign(Assign {
                stream,
                tenant: entry.tenant.clone(),
                labels: entry.labels.clone(),
                rate: entry.rate,
                ingress: entry.ingress,
            });
            let Some(worker) = self.workers.get_mut(&to) else {
                pool.placement.remove(key);
                continue;
            };
            match worker.link.send(&assign, Some(entry.fd.0.as_fd())) {
                Ok(()) => {}
                Err(e @ (SendError::Channel(_) | SendError::Stuck)) => {
                    worker.evict(to, pool.placement.as_mut(), key, &e, "migrating");
                    continue;
                }
                Err(e) => {
                    pool.placement.release(key);
                    crate::logcap::limiter().warn_worker(
                        "migrate_failed",
                        to.0,
                        format_args!("cannot migrate stream {stream} to streamlet {to}: {e}"),
                    );
                    return false;
                }
            }
            worker.took(stream, &entry.tenant, pool.config.tenant_isolation);
            let entry = self.streams.get_mut(&stream).expect("checked above");
            entry.worker = to;
            entry.carried = (entry.bytes_in, entry.bytes_out);
            entry.carried_stalled_us = entry.stalled_us;
            entry.corrupt_frames = 0;
            entry.usage_base = (Instant::now(), entry.bytes_out);
            let pool_name = entry.pool.clone();
            tracing::info!(%stream, %from, %to, "stream migrated");
            self.publish(Event::StreamMigrated(StreamMigrated { stream, pool: pool_name, from, to }));
            return true;
        }
    }

    /// An operator's drain: no new streams; the streamlet exits when its
    /// last stream ends, or is killed (`killed_by_operator`) at `timeout`.
    pub fn drain(&mut self, id: WorkerId, timeout: Duration) -> Result<DrainOutcome, ErrorBody> {
        let worker = self.workers.get_mut(&id).ok_or_else(|| unknown_worker(id))?;
        match worker.state {
            WorkerState::Ready | WorkerState::Starting | WorkerState::Spare => {}
            WorkerState::Draining => {
                // A second drain may shorten the deadline, never lengthen it.
                let deadline = Instant::now() + timeout;
                worker.drain_deadline = Some(worker.drain_deadline.map_or(deadline, |d| d.min(deadline)));
                return Ok(if worker.streams.is_empty() { DrainOutcome::Exiting } else { DrainOutcome::Draining });
            }
            WorkerState::Stopping => {
                return Err(ErrorBody::new(ErrorCode::BadRequest, format!("streamlet {id} is already stopping")))
            }
        }
        worker.state = WorkerState::Draining;
        worker.drain_deadline = Some(Instant::now() + timeout);
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

    /// A draining streamlet whose last stream ended is told to exit.
    pub(super) fn drained(&mut self, id: WorkerId) {
        if let Some(worker) = self.workers.get(&id) {
            if worker.state == WorkerState::Draining && worker.streams.is_empty() {
                worker.link.hang_up();
            }
        }
    }

    /// An operator's kill: the streamlet dies now, recorded as
    /// `killed_by_operator`, and is replaced at once.
    pub fn kill_by_operator(&mut self, id: WorkerId) -> Result<(), ErrorBody> {
        if !self.workers.contains_key(&id) {
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
        self.check_pool(Some(pool))?;
        let mut ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|(_, w)| w.pool == pool && w.slot != SPARE_SLOT)
            .filter(|(_, w)| matches!(w.state, WorkerState::Ready | WorkerState::Starting))
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        let state = self.pools.get_mut(pool).expect("checked above");
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
        let Some(state) = self.pools.get(pool) else { return };
        let Some(&next) = state.restarting.front() else { return };
        if state.pending > 0 {
            return;
        }
        let per = state.config.streams_per_worker as usize;
        let mine = || self.workers.values().filter(|w| w.pool == pool);
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
        self.pools.get_mut(pool).expect("checked above").restarting.pop_front();
        // One that is gone or cannot drain (stopping) is skipped.
        if !self.workers.contains_key(&next) || self.drain(next, self.drain_timeout).is_err() {
            self.advance_restart(pool);
        }
    }

    /// One streamlet, its streams and its slot's deaths.
    pub fn worker_detail(&self, id: WorkerId, info: WorkerInfo) -> Result<WorkerDetail, ErrorBody> {
        let worker = self.workers.get(&id).ok_or_else(|| unknown_worker(id))?;
        let mut streams: Vec<StreamId> = worker.streams.iter().copied().collect();
        streams.sort_unstable();
        let slot = self.pools.get(&worker.pool).and_then(|p| p.slots.get(worker.slot));
        let deaths = slot
            .map(|s| {
                s.history
                    .iter()
                    .rev()
                    .map(|d| Death {
                        worker: d.worker,
                        cause: d.cause.clone(),
                        uptime_ms: d.uptime.as_millis() as u64,
                        ago_ms: d.at.elapsed().as_millis() as u64,
                        streams: d.streams,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(WorkerDetail { info, streams, deaths })
    }

    /// A connection asks for lifecycle events.
    pub fn subscribe(&mut self, sink: crate::events::EventSink) {
        self.log.subscribe(sink);
    }

    /// Sends a lifecycle event to every subscriber, and logs it.
    pub(super) fn publish(&mut self, event: Event) {
        self.publish_except(event, None);
    }

    /// [`publish`](Self::publish), but not to `owner` (which hears of its
    /// own streams anyway).
    pub(super) fn publish_except(&mut self, event: Event, owner: Option<&crate::events::EventSink>) {
        self.log.publish(event, owner, super::wall_ms());
    }

    /// The last `recent` logged events and, with `follow`, this connection
    /// subscribed in the same step.
    pub fn events(
        &mut self,
        recent: Option<u32>,
        follow: bool,
        sink: &crate::events::EventSink,
    ) -> streamlet_proto::EventLog {
        let events = self.log.tail(recent);
        if follow {
            self.log.subscribe(sink.clone());
        }
        streamlet_proto::EventLog { events, following: follow }
    }

    /// A streamlet is ready: subscribers hear of it, and a rolling restart
    /// moves on.
    pub(super) fn announce_ready(&mut self, id: WorkerId) {
        let Some(worker) = self.workers.get(&id) else { return };
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
            .workers
            .iter()
            .filter(|(_, w)| w.state == WorkerState::Draining && w.drain_deadline.is_some_and(|d| d <= Instant::now()))
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            tracing::warn!(worker = %id, "drain timed out; killing the streamlet");
            if let Some(w) = self.workers.get_mut(&id) {
                w.drain_deadline = None;
            }
            self.kill_worker(id, Some(ExitCause::KilledByOperator));
        }
        let now = self.now_ms();
        let recovered: Vec<String> = self
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

    /// How much longer a pool's restarts are paused, if they are.
    pub(super) fn degraded_for(&self, pool: &str) -> Option<u64> {
        let now = self.now_ms();
        self.pools.get(pool)?.breaker.degraded_until(now).map(|until| until - now)
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// The error for a streamlet id that is not (or no longer) running.
pub fn unknown_worker(id: WorkerId) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::UnknownWorker,
        format!("streamlet {id} is not running (it may have died: `streamletctl workers` lists the live ones)"),
    )
}
