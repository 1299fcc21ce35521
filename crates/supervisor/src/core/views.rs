//! Read-only views of the core for status and listings: pools, streamlets,
//! streams, the quota report, the metrics' gauges and systemd's status line.
//! Nothing here changes state.

use std::collections::HashMap;
use std::sync::Arc;

use streamlet_balance::quota::Usage;
use streamlet_proto::{
    Death, ErrorBody, PoolStatus, QuotaLine, QuotaReport, StreamId, StreamInfo, WorkerDetail, WorkerId, WorkerInfo,
    WorkerState,
};

use super::bandwidth::UNLIMITED;
use super::coordinator::Core;
use super::fleet::{unknown_worker, WorkerRow, SPARE_SLOT};

/// Which tenants a quota report lists.
#[derive(Debug, Clone, Copy)]
pub enum TenantLines<'a> {
    /// Those holding streams or leases and those the configuration names
    /// (`[tenants.NAME]`), by name: at most `limit`, after `after`.
    Page { after: Option<&'a str>, limit: usize },
    /// Those the configuration names (`[tenants.NAME]`), held or not.
    Configured,
}

impl Core {
    /// Whether every pool has at least its `workers.min` streamlets ready:
    /// when the daemon tells systemd it is ready.
    pub fn at_min(&self) -> bool {
        self.fleet.at_min()
    }

    /// Places free for new streams on `pool`'s ready streamlets (0 for a pool
    /// not configured): what its front door may accept now.
    pub fn room_in(&self, pool: &str) -> usize {
        let Some(state) = self.fleet.live(pool) else { return 0 };
        let per = state.config.streams_per_worker as usize;
        self.fleet
            .workers_of(pool)
            .filter(|(_, w)| w.state == WorkerState::Ready)
            .map(|(_, w)| per.saturating_sub(w.streams.len()))
            .sum()
    }

    /// The streamlets the pools start with.
    pub fn starting_count(&self) -> u32 {
        self.fleet.pools.values().map(|p| p.slots.iter().filter(|s| s.in_use).count() as u32).sum()
    }

    /// One line of what the daemon is doing, for systemd's `STATUS=`.
    pub fn status_line(&self) -> String {
        let ready = self.fleet.workers.values().filter(|w| w.state == WorkerState::Ready).count();
        let pools = self.fleet.pools.len();
        let degraded = self.fleet.pools.values().filter(|p| p.degraded).count();
        let streams = self.streams.len();
        let s = |n: usize| if n == 1 { "" } else { "s" };
        let mut line =
            format!("{pools} pool{}, {ready} streamlet{} ready, {streams} stream{}", s(pools), s(ready), s(streams));
        if degraded > 0 {
            line.push_str(&format!(", {degraded} degraded"));
        }
        line
    }

    pub fn pool_statuses(&self) -> Vec<PoolStatus> {
        self.fleet
            .pools
            .values()
            .filter(|pool| !pool.removed)
            .map(|pool| {
                let all = || self.fleet.workers_of(&pool.config.name).map(|(_, w)| w);
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
                    listening: Vec::new(),
                }
            })
            .collect()
    }

    /// How much longer a pool's restarts are paused, if they are.
    pub(super) fn degraded_for(&self, pool: &str) -> Option<u64> {
        let now = self.now_ms();
        self.fleet.pools.get(pool)?.breaker.degraded_until(now).map(|until| until - now)
    }

    /// The streamlets, each with its cgroup (whose accounting the caller
    /// reads after releasing the lock).
    pub fn worker_infos(&self, pool: Option<&str>) -> Result<Vec<WorkerRow>, ErrorBody> {
        self.fleet.check(pool)?;
        let mut infos: Vec<WorkerRow> = self
            .fleet
            .workers
            .iter()
            .filter(|(_, w)| pool.is_none_or(|p| w.pool == p))
            .map(|(id, w)| {
                let state = self.fleet.pools.get(&w.pool);
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

    /// One streamlet, its streams and its slot's deaths.
    pub fn worker_detail(&self, id: WorkerId, info: WorkerInfo) -> Result<WorkerDetail, ErrorBody> {
        let worker = self.fleet.workers.get(&id).ok_or_else(|| unknown_worker(id))?;
        let mut streams: Vec<StreamId> = worker.streams.iter().copied().collect();
        streams.sort_unstable();
        let slot = self.fleet.pools.get(&worker.pool).and_then(|p| p.slots.get(worker.slot));
        let deaths = slot.map_or_else(Vec::new, |s| {
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
        });
        Ok(WorkerDetail { info, streams, deaths })
    }

    /// Up to `limit` streams with ids above `after`, by id, and the id to
    /// ask after for the next page when more remain.
    pub fn stream_infos(
        &self,
        pool: Option<&str>,
        after: Option<StreamId>,
        limit: usize,
    ) -> Result<(Vec<StreamInfo>, Option<StreamId>), ErrorBody> {
        self.fleet.check(pool)?;
        let (page, more) = self.streams.page(pool, after, limit);
        let infos: Vec<StreamInfo> = page
            .into_iter()
            .map(|(id, s)| StreamInfo {
                id,
                pool: s.pool.clone(),
                tenant: s.tenant.clone(),
                worker: s.worker,
                age_ms: s.opened.elapsed().as_millis() as u64,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
                rate: s.managed.then(|| self.bandwidth.allocation(id)).flatten(),
                priority: s.priority,
                sending: s.sending,
                stalled_ms: s.stalled_us / 1000,
            })
            .collect();
        let next = if more { infos.last().map(|s| s.id) } else { None };
        Ok((infos, next))
    }

    /// Capacity, allocated and free, for the host, each pool, and the
    /// tenants `tenants` picks (by name), with the name to ask after for the
    /// next page when more remain. Each line counts its open streams (from
    /// the stream table) and, apart, those under the quota (the allocator's).
    pub fn quota_report(&self, tenants: TenantLines<'_>) -> QuotaReport {
        let report = self.bandwidth.snapshot();
        let mut open_in_pool: HashMap<&str, u32> = HashMap::new();
        for stream in self.streams.values() {
            *open_in_pool.entry(stream.pool.as_str()).or_default() += 1;
        }
        let host = self.streams.len() as u32;
        let mut lines = vec![line("host", "host", &report.host, host, None)];
        for p in &report.pools {
            let open = open_in_pool.get(p.pool.as_str()).copied().unwrap_or(0);
            lines.push(line(&p.pool, "pool", &p.usage, open, None));
        }
        // (The allocator's report is sorted by tenant.)
        let usage_of = |tenant: &str| {
            report.tenants.binary_search_by(|t| t.tenant.as_str().cmp(tenant)).map(|i| report.tenants[i].usage)
        };
        let held = &self.bandwidth.tenants;
        let mut tenant_line = |tenant: &str, count: u32| {
            let usage = usage_of(tenant).unwrap_or_default();
            // What a tenant holds is its streams, under the quota or not, and its leases.
            let open = count.saturating_sub(usage.leases);
            let mut l = line(tenant, "tenant", &usage, open, held.limit(tenant));
            l.streams = open;
            lines.push(l);
        };
        let mut next = None;
        match tenants {
            TenantLines::Page { after, limit } => {
                let mut page = held.after(after);
                for (tenant, count) in page.by_ref().take(limit) {
                    tenant_line(tenant, count);
                }
                if page.next().is_some() {
                    next = lines.last().map(|l| l.name.clone());
                }
            }
            TenantLines::Configured => {
                for tenant in held.configured() {
                    tenant_line(tenant, held.held(tenant));
                }
            }
        }
        QuotaReport { lines, next }
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
        for (name, pool) in self.fleet.pools.iter().filter(|(_, p)| !p.removed) {
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
        for w in self.fleet.workers.values() {
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
}

fn line(name: &str, level: &str, u: &Usage, open: u32, max_streams: Option<u32>) -> QuotaLine {
    QuotaLine {
        name: name.to_owned(),
        level: level.to_owned(),
        capacity: u.capacity.filter(|c| *c < UNLIMITED),
        reserved: u.reserved,
        allocated: u.allocated.min(UNLIMITED),
        free: u.free.filter(|_| u.capacity.is_some_and(|c| c < UNLIMITED)),
        streams: u.streams,
        leases: u.leases,
        max_streams,
        open_streams: open,
        rated_streams: u.streams,
    }
}
