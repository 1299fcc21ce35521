//! The autoscaling half of the core: each pool's [`Scaler`] asked what to do
//! with a snapshot of its slots, and its answer carried out; each pool's
//! [`Demand`] fed with arrivals and durations.
//!
//! The rules are pure (`streamlet_autoscale::policy`); what lives here is the
//! bookkeeping the daemon and the simulator do each in their own way: which
//! slot a new streamlet takes, how a retired one leaves, and when to ask.
//! The daemon asks after an open that took a streamlet's first stream,
//! brought one within a stream of full or found no room, when a streamlet
//! becomes ready, and on its 50 ms tick (idle grace, the forecast).

use std::collections::BTreeMap;
use std::time::Duration;

use streamlet_autoscale::history::HistoryFile;
use streamlet_autoscale::{Decision, Demand, Mode, Reason, Snapshot, WorkerLoad};
use streamlet_proto::{Event, PoolScaled, ScaleDirection, WorkerId, WorkerState};

use super::coordinator::{wall_ms, Core};
use super::fleet::SpawnOrder;
use super::pool::Slot;

impl Core {
    /// Where the autoscaler's spawns go (the daemon's spawner). Until this
    /// is set the pools keep what they started with.
    pub fn set_spawn_orders(&mut self, orders: tokio::sync::mpsc::UnboundedSender<SpawnOrder>) {
        self.spawn_orders = Some(orders);
    }

    /// Every pool's history, to be written to the state file.
    pub fn history_file(&self) -> HistoryFile {
        let mut file = HistoryFile { pools: self.orphan_history.clone() };
        file.pools.extend(self.fleet.pools.iter().map(|(name, p)| (name.clone(), p.demand.history().clone())));
        file
    }

    /// Goes on from the history read at start: each configured pool's
    /// record, with the minutes the daemon was down marked missing.
    pub fn resume_history(&mut self, mut file: HistoryFile, now_wall_ms: u64) {
        for (name, pool) in &mut self.fleet.pools {
            if let Some(history) = file.pools.remove(name) {
                pool.demand = Demand::resume(history, now_wall_ms);
            }
        }
        // Pools no longer configured keep what they learnt (written back
        // as it is), in case they come back.
        self.orphan_history = file.pools;
    }

    /// The 50 ms tick: closes finished minutes into each pool's demand,
    /// refreshes forecasts, and applies each pool's decision. True at the
    /// first tick of each new wall-clock minute: the history is due to be
    /// written.
    pub fn tick_autoscale(&mut self, now_wall_ms: u64) -> bool {
        // (An open may have closed the minute already: `Demand::arrival`
        // ticks too. The wall clock's minute says when to write.)
        let minute = now_wall_ms / 60_000;
        let closed = self.saved_minute.is_some_and(|m| m < minute);
        if self.saved_minute.is_none_or(|m| m < minute) {
            self.saved_minute = Some(minute);
        }
        self.forget_removed_pools();
        let names: Vec<String> = self.fleet.pools.keys().cloned().collect();
        for name in names {
            let pool = self.fleet.pools.get_mut(&name).expect("listed above");
            pool.demand.tick(now_wall_ms);
            if pool.scaler.rules().mode != Mode::Reactive {
                let lead = self.lead(&name);
                let pool = self.fleet.pools.get_mut(&name).expect("listed above");
                let predicted = pool.demand.predicted_concurrency(now_wall_ms, lead.as_millis() as u64);
                pool.scaler.set_prediction(predicted);
            }
            self.autoscale(&name);
        }
        closed
    }

    /// Refits of pools' models that fell due: to run off the lock, each
    /// installed with [`install_model`](Self::install_model).
    pub fn refit_jobs(&mut self) -> Vec<(String, streamlet_autoscale::demand::RefitJob)> {
        self.fleet.pools.iter_mut().filter_map(|(name, p)| Some((name.clone(), p.demand.refit_job()?))).collect()
    }

    pub fn install_model(&mut self, pool: &str, model: streamlet_autoscale::forecast::Model) {
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            p.demand.install(model);
        }
    }

    /// How far ahead a pool's forecast looks: its `lead`, or the time a
    /// streamlet of it took to become ready if that is longer, so that what
    /// the forecast asks for is ready when the demand comes.
    pub(super) fn lead(&self, pool: &str) -> Duration {
        let Some(p) = self.fleet.pools.get(pool) else { return Duration::ZERO };
        p.config.autoscale.lead.max(p.spawn_time)
    }

    /// A stream was asked of `pool` and placed, or refused for want of
    /// room or bandwidth (what more streamlets would have served): one
    /// arrival for its demand. Refusals of the request itself (a tenant's
    /// limit, a bad rate) are no demand for capacity.
    pub(super) fn record_arrival(&mut self, pool: &str) {
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            p.demand.arrival(wall_ms());
        }
    }

    /// A stream of `pool` ended after `lived`.
    pub(super) fn record_duration(&mut self, pool: &str, lived: Duration) {
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            p.demand.ended(lived.as_millis() as u64);
        }
    }

    /// A streamlet of `pool` took `took` from spawn to ready.
    pub(super) fn record_spawn_time(&mut self, pool: &str, took: Duration) {
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            // The slowest of the recent ones, fading: one slow start is
            // remembered for a while, not for ever.
            p.spawn_time = took.max(p.spawn_time.mul_f64(0.9));
        }
    }

    /// One pool's snapshot for its scaler: ready streamlets in its slots,
    /// and how many more are on their way (spawns scheduled, starting, or a
    /// slot whose streamlet is being replaced).
    fn snapshot(&self, pool: &str) -> (Vec<WorkerLoad>, u32, u32) {
        let Some(p) = self.fleet.pools.get(pool) else { return (Vec::new(), 0, 0) };
        let mut ready = Vec::with_capacity(p.slots.len());
        let (mut starting, mut replacing) = (0, 0);
        for slot in p.slots.iter().filter(|s| s.in_use) {
            let live = slot.worker.and_then(|id| self.fleet.workers.get(&id).map(|w| (id, w)));
            match live {
                Some((id, w)) if w.state == WorkerState::Ready => ready.push(WorkerLoad {
                    id: id.0,
                    streams: w.streams.len() as u32,
                    started_ms: self.bandwidth.since_epoch(w.started),
                    idle_since_ms: w.idle_since.map(|t| self.bandwidth.since_epoch(t)),
                }),
                // Spawned, not ready yet: empty capacity on its way.
                Some((_, w)) if w.state == WorkerState::Starting => starting += 1,
                // Draining or dying, to be replaced in its slot: it counts
                // toward min and max, but it is no room, now or to come.
                // (Counted as room on its way, it let the scaler retire the
                // last ready streamlet while an operator drained the other.)
                Some(_) => replacing += 1,
                // Its spawn is ordered, backing off, or replacing the dead.
                None => starting += 1,
            }
        }
        (ready, starting, replacing)
    }

    /// Asks `pool`'s scaler what to do now, and does it.
    pub(super) fn autoscale(&mut self, pool: &str) {
        if self.shutting_down || self.spawn_orders.is_none() || self.fleet.pools.get(pool).is_none_or(|p| p.removed) {
            return;
        }
        let (workers, starting, replacing) = self.snapshot(pool);
        let now_ms = self.now_ms();
        let Some(state) = self.fleet.pools.get_mut(pool) else { return };
        let decision = state.scaler.decide(&Snapshot { now_ms, workers: &workers, starting, replacing });
        self.report_forecast_only(pool, &decision);
        let state = self.fleet.pools.get_mut(pool).expect("checked above");
        state.desired = decision.desired;
        state.forecast = decision.forecast;
        if decision.is_empty() {
            return;
        }
        let mut spawned: BTreeMap<Reason, u32> = BTreeMap::new();
        for &why in &decision.spawn {
            let slot = match state.slots.iter().position(|s| !s.in_use && s.worker.is_none()) {
                Some(free) => free,
                None => {
                    state.slots.push(Slot::default());
                    state.slots.len() - 1
                }
            };
            // A new streamlet: no backoff or deaths of the slot's last one.
            state.slots[slot] = Slot { in_use: true, ..Slot::default() };
            state.pending += 1;
            *spawned.entry(why).or_default() += 1;
            if let Some(orders) = &self.spawn_orders {
                let _ = orders.send(SpawnOrder { pool: pool.to_owned(), slot });
            }
        }
        let mut retired: BTreeMap<Reason, Vec<WorkerId>> = BTreeMap::new();
        for &(key, why) in &decision.retire {
            let id = WorkerId(key);
            let Some(worker) = self.fleet.workers.get_mut(&id) else { continue };
            let state = self.fleet.pools.get_mut(pool).expect("checked above");
            state.placement.remove(key);
            if let Some(slot) = state.slots.get_mut(worker.slot) {
                slot.in_use = false;
            }
            worker.retiring = true;
            worker.stop();
            retired.entry(why).or_default().push(id);
        }
        let forecast = decision.forecast;
        for (why, count) in spawned {
            tracing::info!(pool, reason = %why, count, workers = decision.desired, ?forecast, "scaling up");
            self.publish(Event::PoolScaled(PoolScaled {
                pool: pool.to_owned(),
                direction: ScaleDirection::Up,
                reason: why.into(),
                count,
                workers: decision.desired,
                forecast,
                retired: Vec::new(),
            }));
        }
        for (why, ids) in retired {
            tracing::info!(pool, reason = %why, count = ids.len(), workers = decision.desired, ?forecast, "scaling down");
            self.publish(Event::PoolScaled(PoolScaled {
                pool: pool.to_owned(),
                direction: ScaleDirection::Down,
                reason: why.into(),
                count: ids.len() as u32,
                workers: decision.desired,
                forecast,
                retired: ids,
            }));
        }
    }

    /// `forecast-only`: says, once per change, what the forecast would do.
    fn report_forecast_only(&mut self, pool: &str, decision: &Decision) {
        let Some(state) = self.fleet.pools.get_mut(pool) else { return };
        if state.scaler.rules().mode != Mode::ForecastOnly || decision.would_spawn == state.would_spawn {
            return;
        }
        state.would_spawn = decision.would_spawn;
        tracing::info!(
            pool, forecast = ?decision.forecast, would_spawn = decision.would_spawn,
            predicted_streams = ?state.scaler.prediction().map(|p| p.round() as u64),
            "forecast-only: not acting on the forecast"
        );
    }

    /// A spawn the autoscaler ordered started its streamlet.
    pub fn autoscale_spawned(&mut self, pool: &str) {
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            p.scaler.spawn_succeeded();
        }
        self.spawn_settled(pool);
    }

    /// A spawn the autoscaler ordered failed: its slot is free again and the
    /// pool's next spawns back off.
    pub fn autoscale_spawn_failed(&mut self, pool: &str, slot: usize) {
        let now = self.now_ms();
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            if let Some(s) = p.slots.get_mut(slot).filter(|s| s.worker.is_none()) {
                s.in_use = false;
            }
            p.scaler.spawn_failed(now);
        }
        self.spawn_settled(pool);
    }

    /// Whether an open that placed a stream on a streamlet now holding
    /// `streams` may have changed what the scaler wants: it took the
    /// streamlet's first stream (one fewer empty) or brought it within one
    /// stream of full (lookahead).
    /// (A pool of a fixed size, `min == max`, has nothing to ask.)
    pub(super) fn worth_asking(&self, pool: &str, streams: usize) -> bool {
        self.fleet.pools.get(pool).is_some_and(|p| {
            let per = p.config.streams_per_worker.max(1) as usize;
            p.config.workers_min < p.config.workers_max && (streams == 1 || streams + 1 >= per)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    const MINUTE: u64 = 60_000;

    #[test]
    fn the_history_is_due_once_each_wall_clock_minute() {
        let mut core = Core::new(&Config::embedded());
        let t = 29_000_000 * MINUTE;
        assert!(!core.tick_autoscale(t + 10), "nothing to write at start");
        assert!(!core.tick_autoscale(t + 60));
        // (An open may close the minute through the demand before the tick
        // sees it; the minute of the clock decides, not who closed it.)
        core.fleet.pools.get_mut("echo").unwrap().demand.tick(t + MINUTE + 1);
        assert!(core.tick_autoscale(t + MINUTE + 20), "a new minute: write");
        assert!(!core.tick_autoscale(t + MINUTE + 70), "once");
        assert!(core.tick_autoscale(t + 5 * MINUTE), "after a pause too");
    }

    #[test]
    fn pools_no_longer_configured_keep_their_history() {
        let mut core = Core::new(&Config::embedded());
        let mut file = HistoryFile::default();
        let old = streamlet_autoscale::history::PoolHistory::from_series(1_000, &[5, 6, 7]);
        file.pools.insert("retired-pool".into(), old.clone());
        core.resume_history(file, 1_010 * MINUTE);
        let written = core.history_file();
        assert_eq!(written.pools.get("retired-pool"), Some(&old));
        assert!(written.pools.contains_key("echo"));
    }
}
