//! The event loop: one pool, one policy, a virtual clock.
//!
//! Events, earliest first (at the same instant in this order): a stream
//! ends, a streamlet becomes ready, a tick, a stream arrives. What each does
//! is what the daemon does:
//!
//! - **arrival**: one arrival for the demand; the tenant limit, placement
//!   and (for a managed stream) the quota, in the core's order. Placed, or
//!   refused by the tenant limit or the quota (rejected), the scaler is
//!   asked. With no room the scaler is asked first; if a streamlet is then
//!   starting the open waits (FIFO), else it is rejected.
//! - **end**: the slot and the quota are released, the duration goes to the
//!   demand, waiting opens are placed while there is room, the scaler is
//!   asked.
//! - **ready**: the streamlet enters placement, waiting opens are placed,
//!   the scaler is asked.
//! - **tick** (on the 50 ms grid, only where it can matter: see
//!   `next_tick`): waiting opens past their deadline are rejected; the
//!   scaler is asked.
//!
//! Before each event the forecast is brought to what the daemon's last tick
//! at or before it left: that tick closed the finished minutes into the
//! demand and asked it for the streams expected over the lead.
//!
//! A decision's spawns become ready after the spawn delay and count as
//! starting until then; its retirements leave placement at once.
//!
//! Play starts with the warm-up, the minutes just before the window
//! (`Options::warm_up_ms`), with the pool as its rules ask at that instant,
//! ready; nothing is counted before the window, so each policy meets the
//! window with the pool and the streams it would have had.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use streamlet_autoscale::{Demand, Mode, Reason, Rules, Scaler, Snapshot, WorkerLoad};
use streamlet_balance::quota::{Allocator, Priority, Rate, StreamKey, UNLIMITED};
use streamlet_balance::{Placement, Request};
use streamlet_config::{Config, PoolConfig};
use streamlet_proto::DEFAULT_TENANT;

use super::clock::{tick_at_or_after, MINUTE_MS, TICK_MS};
use super::workload::Workload;
use super::{Action, Logged, Minute, Options, Outcome, Policy, Totals};

/// Plays `workload` against `pool` under `policy`.
pub fn run(pool: &PoolConfig, config: &Config, policy: Policy, workload: &Workload, options: &Options) -> Outcome {
    let mut engine = Engine::new(pool, config, policy, workload, options);
    engine.play();
    engine.finish(policy, (pool.workers_min, pool.workers_max))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    End,
    Ready,
    Tick,
    Arrival,
}

#[derive(Debug, Clone, Copy)]
struct Starting {
    ready_at: u64,
    id: u64,
    spawned_at: u64,
    slot: usize,
}

#[derive(Debug, Clone, Copy)]
struct Waiter {
    arrived: u64,
    duration: u64,
    deadline: u64,
}

enum Placed {
    Yes,
    NoRoom,
    Refused,
}

struct Engine<'a> {
    pool: &'a PoolConfig,
    workload: &'a Workload,
    rules: Rules,
    scaler: Scaler,
    demand: Demand,
    lead_ms: u64,
    spawn_delay_ms: u64,
    wait_ms: u64,
    placement: Box<dyn Placement>,
    quota: Allocator,
    managed: bool,
    rate: Rate,
    tenant_limit: Option<u32>,
    now: u64,
    start: u64,
    end: u64,
    /// Ready streamlets as the scaler sees them, and where each is.
    ready: Vec<WorkerLoad>,
    index: HashMap<u64, usize>,
    slot_of: HashMap<u64, usize>,
    slots: Vec<bool>,
    starting: VecDeque<Starting>,
    /// `(end, stream, streamlet, duration)`.
    ends: BinaryHeap<Reverse<(u64, u64, u64, u64)>>,
    waiting: VecDeque<Waiter>,
    open_streams: u32,
    next_worker: u64,
    next_stream: u64,
    next_arrival: usize,
    next_minute: u64,
    /// When `now + lead` next reaches a new minute (if not with `now`).
    next_lead: Option<u64>,
    /// Spawns during set-up are ready at once.
    warm: bool,
    /// The tick the forecast was last refreshed at, and what it asked for.
    refreshed: Option<u64>,
    forecast: Option<u32>,
    /// The first gap of the trace not yet passed.
    next_gap: usize,
    totals: Totals,
    cold_wait_ms: u64,
    worker_ms: u128,
    decisions: Vec<Logged>,
    minutes: Vec<Minute>,
}

impl<'a> Engine<'a> {
    fn new(pool: &'a PoolConfig, config: &Config, policy: Policy, workload: &'a Workload, options: &Options) -> Self {
        let rules = policy.rules(pool);
        let mut quota = Allocator::new(config.quota.egress.unwrap_or(u64::MAX));
        for p in config.pools.values() {
            quota.set_pool(&p.name, p.egress, p.preempt);
        }
        quota.set_burst_window(config.quota.burst.as_millis() as u64);
        let rate = pool
            .default_rate
            .map_or(Rate { min: 0, max: UNLIMITED }, |r| Rate { min: r.min, max: r.max.min(UNLIMITED) });
        let per = rules.streams_per_worker.max(1);
        let minutes = workload
            .demand
            .iter()
            .enumerate()
            .map(|(i, d)| Minute {
                at_ms: workload.start_ms + i as u64 * MINUTE_MS,
                arrivals: d.arrivals,
                streams: d.streams,
                needed: d.streams.div_ceil(per),
                forecast: None,
                live: 0,
                cold_waits: 0,
                rejected: 0,
            })
            .collect();
        let lead_ms = (pool.autoscale.lead.as_millis() as u64).max(options.spawn_delay_ms);
        Self {
            pool,
            workload,
            rules,
            scaler: Scaler::new(rules),
            demand: workload.trained_demand(),
            lead_ms,
            spawn_delay_ms: options.spawn_delay_ms,
            wait_ms: options.wait_ms,
            placement: pool.placement(config),
            quota,
            managed: pool.default_rate.is_some() || config.quota.egress.is_some() || pool.egress.is_some(),
            rate,
            tenant_limit: config.quota.tenants.get(DEFAULT_TENANT).copied().or(config.quota.default_max_streams),
            now: workload.warm_ms,
            start: workload.start_ms,
            end: workload.end_ms,
            ready: Vec::new(),
            index: HashMap::new(),
            slot_of: HashMap::new(),
            slots: Vec::new(),
            starting: VecDeque::new(),
            ends: BinaryHeap::new(),
            waiting: VecDeque::new(),
            open_streams: 0,
            next_worker: 1,
            next_stream: 1,
            next_arrival: 0,
            next_minute: workload.warm_ms,
            next_lead: None,
            warm: false,
            refreshed: None,
            forecast: None,
            next_gap: 0,
            totals: Totals::default(),
            cold_wait_ms: 0,
            worker_ms: 0,
            decisions: Vec::new(),
            minutes,
        }
    }

    fn play(&mut self) {
        let offset = self.lead_ms % MINUTE_MS;
        if offset != 0 {
            // now + lead reaches a new minute at k * MINUTE - offset.
            self.next_lead = Some((self.now + offset).div_ceil(MINUTE_MS) * MINUTE_MS - offset);
        }
        self.refresh();
        self.next_minute += MINUTE_MS;
        self.note_live();
        self.warm = true;
        self.decide();
        self.warm = false;
        loop {
            let end = self.ends.peek().map(|Reverse(e)| e.0);
            let ready = self.starting.front().map(|s| s.ready_at);
            let tick = self.next_tick();
            let arrival = self.workload.streams.get(self.next_arrival).map(|s| s.at_ms);
            let next = [(end, Event::End), (ready, Event::Ready), (tick, Event::Tick), (arrival, Event::Arrival)]
                .into_iter()
                .filter_map(|(at, event)| at.map(|at| (at, event)))
                .min();
            let Some((at, event)) = next else { break };
            if at >= self.end && self.waiting.is_empty() {
                break;
            }
            self.advance(at);
            self.refresh();
            match event {
                Event::End => self.stream_ended(),
                Event::Ready => self.streamlet_ready(),
                Event::Tick => self.tick(),
                Event::Arrival => self.arrival(),
            }
        }
        self.advance(self.end.max(self.now));
    }

    fn finish(self, policy: Policy, workers: (u32, u32)) -> Outcome {
        let totals = Totals {
            cold_wait_seconds: self.cold_wait_ms as f64 / 1000.0,
            worker_seconds: self.worker_ms as f64 / 1000.0,
            ..self.totals
        };
        Outcome { policy, workers, totals, decisions: self.decisions, minutes: self.minutes }
    }

    fn live(&self) -> u32 {
        (self.ready.len() + self.starting.len()) as u32
    }

    /// The clock moves to `at`; the streamlets alive meanwhile are paid for.
    fn advance(&mut self, at: u64) {
        let (from, to) = (self.now.max(self.start), at.min(self.end));
        if to > from {
            self.worker_ms += u128::from(self.live()) * u128::from(to - from);
        }
        self.now = at;
    }

    fn minute(&mut self) -> Option<&mut Minute> {
        self.minute_of(self.now)
    }

    fn minute_of(&mut self, at: u64) -> Option<&mut Minute> {
        let i = at.checked_sub(self.start)? / MINUTE_MS;
        self.minutes.get_mut(i as usize)
    }

    /// A stream that arrived at `arrived` is refused.
    fn rejected(&mut self, arrived: u64) {
        if self.counted(arrived) {
            self.totals.rejected += 1;
            if let Some(m) = self.minute_of(arrived) {
                m.rejected += 1;
            }
        }
    }

    /// Whether `at` is in the evaluation window (not the warm-up).
    fn counted(&self, at: u64) -> bool {
        (self.start..self.end).contains(&at)
    }

    fn note_live(&mut self) {
        if self.counted(self.now) {
            let live = self.live();
            self.totals.peak_workers = self.totals.peak_workers.max(live);
            if let Some(m) = self.minute() {
                m.live = m.live.max(live);
            }
        }
    }

    /// The next instant the daemon's tick could decide differently.
    fn next_tick(&self) -> Option<u64> {
        let mut next: Option<u64> = None;
        let mut consider = |at: u64| next = Some(next.map_or(at, |n| n.min(at)));
        if self.next_minute < self.end {
            consider(self.next_minute);
        }
        if let Some(at) = self.next_lead.map(tick_at_or_after).filter(|at| *at < self.end) {
            consider(at);
        }
        if let Some(w) = self.waiting.front() {
            consider(tick_at_or_after(w.deadline));
        }
        let mut held = false;
        for w in &self.ready {
            if let Some(due) = w.idle_since_ms.map(|since| since.saturating_add(self.rules.idle_grace_ms)) {
                if due > self.now {
                    consider(tick_at_or_after(due));
                } else {
                    held = true;
                }
            }
        }
        // An idle streamlet past its grace that the forecast holds: the
        // forecast falls as its minute passes with nothing arriving, so every
        // tick may let it go.
        if held && self.rules.mode == Mode::Predictive && self.forecast.is_some_and(|f| f > self.rules.min) {
            consider(tick_at_or_after(self.now + 1));
        }
        next
    }

    fn tick(&mut self) {
        if self.now == self.next_minute {
            self.next_minute += MINUTE_MS;
            self.note_live();
        }
        if let Some(at) = self.next_lead.filter(|at| tick_at_or_after(*at) == self.now) {
            self.next_lead = Some(at + MINUTE_MS);
        }
        while let Some(w) = self.waiting.front().copied().filter(|w| w.deadline <= self.now) {
            self.waiting.pop_front();
            self.rejected(w.arrived);
        }
        self.decide();
    }

    /// The forecast as the daemon's last tick (the latest 50 ms instant at
    /// or before now) left it: that tick closed the finished minutes into
    /// the demand and asked it for the concurrent streams over the lead,
    /// counting what had arrived before it. Called before every event.
    fn refresh(&mut self) {
        let tick = self.now / TICK_MS * TICK_MS;
        if self.refreshed == Some(tick) {
            return;
        }
        self.refreshed = Some(tick);
        let minute = tick / MINUTE_MS;
        // Minutes `[from, to)` nobody counted: the daemon was down for them.
        match self.workload.gaps.get(self.next_gap).copied() {
            Some((_, to)) if minute >= to => {
                self.demand = Demand::resume(self.demand.history().clone(), to * MINUTE_MS);
                self.next_gap += 1;
                self.demand.tick(tick);
                self.demand.refit_now();
            }
            Some((from, _)) if minute > from => {}
            _ => {
                self.demand.tick(tick);
                self.demand.refit_now();
            }
        }
        let predicted = self.demand.predicted_concurrency(tick, self.lead_ms).filter(|p| p.is_finite());
        if self.rules.mode != Mode::Reactive {
            self.scaler.set_prediction(predicted);
        }
        self.forecast = predicted.map(|p| self.rules.forecast_workers(p));
        if let Some(wanted) = self.forecast.filter(|_| self.counted(self.now)) {
            if let Some(m) = self.minute() {
                m.forecast = Some(m.forecast.map_or(wanted, |f| f.max(wanted)));
            }
        }
    }

    fn decide(&mut self) {
        // (Nothing drains or dies here: no streamlet is being replaced.)
        let snapshot =
            Snapshot { now_ms: self.now, workers: &self.ready, starting: self.starting.len() as u32, replacing: 0 };
        let decision = self.scaler.decide(&snapshot);
        if decision.is_empty() {
            return;
        }
        for reason in decision.spawn {
            self.spawn(reason);
        }
        for (id, reason) in decision.retire {
            self.retire(id, reason);
        }
        self.note_live();
    }

    fn log(&mut self, action: Action, reason: Reason) {
        if self.counted(self.now) {
            self.decisions.push(Logged { at_ms: self.now, action, reason });
        }
    }

    fn spawn(&mut self, reason: Reason) {
        let slot = match self.slots.iter().position(|used| !used) {
            Some(free) => free,
            None => {
                self.slots.push(false);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = true;
        let id = self.next_worker;
        self.next_worker += 1;
        let ready_at = if self.warm { self.now } else { self.now.saturating_add(self.spawn_delay_ms) };
        self.starting.push_back(Starting { ready_at, id, spawned_at: self.now, slot });
        self.log(Action::Spawn { worker: id }, reason);
    }

    fn retire(&mut self, id: u64, reason: Reason) {
        let Some(i) = self.index.remove(&id) else { return };
        self.ready.swap_remove(i);
        if let Some(moved) = self.ready.get(i) {
            self.index.insert(moved.id, i);
        }
        self.placement.remove(id);
        if let Some(slot) = self.slot_of.remove(&id) {
            self.slots[slot] = false;
        }
        self.log(Action::Retire { worker: id }, reason);
    }

    fn streamlet_ready(&mut self) {
        let Some(s) = self.starting.pop_front() else { return };
        self.placement.add(s.id, self.rules.streams_per_worker, &self.pool.labels_of(s.slot));
        self.slot_of.insert(s.id, s.slot);
        self.index.insert(s.id, self.ready.len());
        self.ready.push(WorkerLoad { id: s.id, streams: 0, started_ms: s.spawned_at, idle_since_ms: Some(self.now) });
        self.serve_waiting();
        self.decide();
    }

    /// The core's open: tenant limit, placement, then the quota.
    fn place(&mut self, duration: u64) -> Placed {
        if self.tenant_limit.is_some_and(|limit| self.open_streams >= limit) {
            return Placed::Refused;
        }
        let Some(key) = self.placement.place(&Request::default()) else { return Placed::NoRoom };
        let stream = self.next_stream;
        self.next_stream += 1;
        if self.managed {
            let admitted =
                self.quota.admit(StreamKey(stream), &self.pool.name, DEFAULT_TENANT, Priority(0), self.rate, self.now);
            if admitted.is_err() {
                self.placement.release(key);
                return Placed::Refused;
            }
        }
        self.open_streams += 1;
        let worker = &mut self.ready[self.index[&key]];
        worker.streams += 1;
        worker.idle_since_ms = None;
        self.ends.push(Reverse((self.now.saturating_add(duration), stream, key, duration)));
        Placed::Yes
    }

    fn arrival(&mut self) {
        let stream = self.workload.streams[self.next_arrival];
        self.next_arrival += 1;
        self.demand.arrival(self.now);
        match self.place(stream.duration_ms) {
            Placed::Yes if self.counted(self.now) => self.totals.admitted += 1,
            Placed::Yes => {}
            Placed::Refused => self.rejected(self.now),
            Placed::NoRoom => {
                self.decide();
                if self.starting.is_empty() {
                    self.rejected(self.now);
                } else {
                    let deadline = self.now.saturating_add(self.wait_ms);
                    self.waiting.push_back(Waiter { arrived: self.now, duration: stream.duration_ms, deadline });
                }
                return;
            }
        }
        self.decide();
    }

    fn stream_ended(&mut self) {
        let Some(Reverse((_, stream, worker, duration))) = self.ends.pop() else { return };
        self.placement.release(worker);
        if self.managed {
            self.quota.release(StreamKey(stream));
        }
        self.demand.ended(duration);
        self.open_streams -= 1;
        let w = &mut self.ready[self.index[&worker]];
        w.streams -= 1;
        if w.streams == 0 {
            w.idle_since_ms = Some(self.now);
        }
        self.serve_waiting();
        self.decide();
    }

    /// Places waiting opens, oldest first, while there is room.
    fn serve_waiting(&mut self) {
        while let Some(w) = self.waiting.front().copied() {
            match self.place(w.duration) {
                Placed::Yes if self.counted(w.arrived) => {
                    self.totals.admitted += 1;
                    self.totals.cold_waits += 1;
                    self.cold_wait_ms += self.now - w.arrived;
                    if let Some(m) = self.minute_of(w.arrived) {
                        m.cold_waits += 1;
                    }
                }
                Placed::Yes => {}
                Placed::Refused => self.rejected(w.arrived),
                Placed::NoRoom => break,
            }
            self.waiting.pop_front();
        }
    }
}
