//! A new configuration applied to the live core, without dropping a stream:
//! pools added (their streamlets start), removed (no new streams; their
//! streamlets leave as their streams end), and changed in place (scaling
//! rules, bandwidth, placement policy and labels, limits on the live
//! cgroups). What only new streamlets can take (the handler, the sandbox of
//! a pool) is noted, not forced.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use streamlet_balance::quota::StreamKey;
use streamlet_proto::{ErrorBody, ErrorCode, Event, Reloaded, ScaleAccepted, StreamId, WorkerId, WorkerState};
use streamlet_sandbox::cgroup::WorkerCgroup;

use super::coordinator::Core;
use super::fleet::{SpawnOrder, SPARE_SLOT};
use super::pool::PoolState;
use super::worker::Serving;
use crate::config::{Config, PoolConfig};
use crate::validate::Scale;

/// What a reload leaves for the caller to do off the lock.
#[derive(Debug, Default)]
pub struct Reconfigured {
    pub summary: Reloaded,
    /// Live cgroups whose pool's limits changed, with the new limits.
    pub limits: Vec<(Arc<WorkerCgroup>, Arc<PoolConfig>)>,
}

impl Core {
    /// Applies `config` (already validated) to the running pools.
    pub fn reconfigure(&mut self, config: &Config) -> Reconfigured {
        let mut out = Reconfigured::default();
        out.summary.source = config.source.clone();

        // The host's bandwidth and the tenants.
        let changes = self.bandwidth.reconfigure(config);
        self.apply_changes(&changes);

        let gone: Vec<String> = self
            .fleet
            .pools
            .iter()
            .filter(|(n, p)| !p.removed && !config.pools.contains_key(*n))
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            self.remove_pool(&name);
            out.summary.removed.push(name);
        }
        for (name, pool) in &config.pools {
            match self.fleet.pools.get(name) {
                None => {
                    self.add_pool(pool, config);
                    out.summary.added.push(name.clone());
                    if !pool.listen.is_empty() {
                        out.summary.notes.push(listen_note(name));
                    }
                }
                Some(state) if state.removed || *state.config != **pool => {
                    let was_removed = state.removed;
                    self.change_pool(pool, config, &mut out);
                    if was_removed {
                        out.summary.added.push(name.clone());
                    } else {
                        out.summary.changed.push(name.clone());
                    }
                }
                Some(_) => {}
            }
        }
        self.manage_unmanaged(&mut out.summary.notes);
        tracing::info!(
            source = %config.source, added = ?out.summary.added, removed = ?out.summary.removed,
            changed = ?out.summary.changed, "configuration reloaded"
        );
        self.publish(Event::Reloaded(out.summary.clone()));
        self.retry_waiting();
        out
    }

    /// Streams opened when no capacity covered them, whose pool or host now
    /// has one (or a default rate): admitted into the quota as they are
    /// (min 0, or the pool's default rate), so the new capacity holds for
    /// them too.
    fn manage_unmanaged(&mut self, notes: &mut Vec<String>) {
        let mut pending: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|(_, e)| !e.managed)
            // (What an open of the pool with no rate of its own would be now.)
            .filter(|(_, e)| self.fleet.pools.get(&e.pool).is_some_and(|p| self.bandwidth.ask(&p.config, None).managed))
            .map(|(id, _)| *id)
            .collect();
        pending.sort_unstable();
        let mut refused = 0;
        for id in pending {
            let Some(entry) = self.streams.get(&id) else { continue };
            // (As it is: min 0, or the pool's default rate.)
            let ask = self.bandwidth.ask(&self.fleet.pools[&entry.pool].config, None);
            let (pool, tenant, priority) = (entry.pool.clone(), entry.tenant.clone(), entry.priority);
            match self.bandwidth.admit(id, &pool, &tenant, priority, ask.rate) {
                Ok(admission) => {
                    if let Some(entry) = self.streams.get_mut(&id) {
                        entry.managed = true;
                    }
                    self.apply_changes(&admission.changes);
                    self.apply_rates(&[(StreamKey(id.0), admission.rate)]);
                }
                Err(_) => refused += 1,
            }
        }
        if refused > 0 {
            notes.push(format!(
                "{refused} streams opened before the new capacity do not fit under it at their minimum; they stay \
                 unpaced until they end"
            ));
        }
    }

    /// A new pool: the autoscaler fills it to its minimum at once (and its
    /// spare is ordered).
    fn add_pool(&mut self, pool: &Arc<PoolConfig>, config: &Config) {
        let changes = self.bandwidth.set_pool(&pool.name, pool.egress, pool.preempt);
        self.apply_rates(&changes.rates);
        self.fleet.pools.insert(pool.name.clone(), PoolState::new(pool, config, 0));
        if pool.spare {
            self.order_spawn(&pool.name, SPARE_SLOT);
        }
        self.autoscale(&pool.name);
    }

    /// A pool gone from the file: out of reach for new streams; its
    /// streamlets drain (no deadline: a stream is never cut for a reload)
    /// and nothing replaces them.
    fn remove_pool(&mut self, name: &str) {
        let Some(pool) = self.fleet.pools.get_mut(name) else { return };
        pool.removed = true;
        pool.restarting.clear();
        for slot in &mut pool.slots {
            slot.in_use = false;
        }
        let spare = pool.spare.take();
        let ids: Vec<WorkerId> = self.fleet.workers.iter().filter(|(_, w)| w.pool == name).map(|(id, _)| *id).collect();
        for id in ids {
            let pool = self.fleet.pools.get_mut(name).expect("checked above");
            pool.placement.remove(id.0);
            let Some(worker) = self.fleet.workers.get_mut(&id) else { continue };
            if Some(id) == spare || worker.state == WorkerState::Starting {
                worker.stop();
                continue;
            }
            if matches!(worker.state, WorkerState::Ready | WorkerState::Draining) {
                worker.state = WorkerState::Draining;
                worker.drain_deadline = None;
                if worker.streams.is_empty() {
                    worker.link.hang_up();
                }
            }
        }
        tracing::info!(pool = name, "pool removed: its streamlets leave as their streams end");
    }

    /// A pool whose settings changed, in place.
    fn change_pool(&mut self, pool: &Arc<PoolConfig>, config: &Config, out: &mut Reconfigured) {
        let name = pool.name.clone();
        let changes = self.bandwidth.set_pool(&name, pool.egress, pool.preempt);
        self.apply_changes(&changes);
        let state = self.fleet.pools.get_mut(&name).expect("the caller found it");
        let old = std::mem::replace(&mut state.config, pool.clone());
        let revived = std::mem::take(&mut state.removed);
        state.scaler.set_rules(pool.rules());
        let notes = &mut out.summary.notes;
        if old.handler != pool.handler
            || old.run_as != pool.run_as
            || old.network != pool.network
            || old.readonly_root != pool.readonly_root
            || old.heartbeat_timeout != pool.heartbeat_timeout
        {
            notes.push(format!(
                "pool {name}: its handler or sandbox changed; streamlets started from now on have it \
                 (`streamletctl restart {name}` replaces the running ones one at a time)"
            ));
        }
        if old.listen != pool.listen || old.listen_tenant != pool.listen_tenant {
            notes.push(listen_note(&name));
        }
        // Tenant isolation turned on: each streamlet's tenant is learnt from
        // the streams it serves now; one that serves several is nobody's
        // until it is empty.
        if pool.tenant_isolation && !old.tenant_isolation {
            let mut tenants: HashMap<WorkerId, BTreeSet<&str>> = HashMap::new();
            for stream in self.streams.values().filter(|s| s.pool == name) {
                tenants.entry(stream.worker).or_default().insert(stream.tenant.as_str());
            }
            for (id, worker) in self.fleet.workers.iter_mut().filter(|(_, w)| w.pool == name) {
                let serves = tenants.get(id).map(|t| t.iter().copied().collect::<Vec<_>>()).unwrap_or_default();
                worker.tenant = match serves.as_slice() {
                    [] => None,
                    [one] => Some(Serving::One((*one).to_owned())),
                    _ => Some(Serving::Several),
                };
            }
            let mixed = tenants.values().filter(|t| t.len() > 1).count();
            if mixed > 0 {
                notes.push(format!(
                    "pool {name}: {mixed} streamlets serve several tenants; no new stream goes to them until they are empty"
                ));
            }
        }
        // Placement: rebuilt with the streams where they are, when the
        // policy, the capacity or the labels it reads changed.
        let placement_changed = old.placement != pool.placement
            || old.prefer != pool.prefer
            || old.streams_per_worker != pool.streams_per_worker
            || old.labels != pool.labels
            || old.worker_labels != pool.worker_labels
            || revived;
        if placement_changed {
            let mut placement = pool.placement(config);
            let live: Vec<(usize, WorkerId)> = state
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.in_use || revived)
                .filter_map(|(i, s)| s.worker.map(|w| (i, w)))
                .collect();
            for (slot, id) in live {
                let Some(worker) = self.fleet.workers.get_mut(&id) else { continue };
                worker.labels = pool.labels_of(slot);
                if worker.state == WorkerState::Ready {
                    placement.add(id.0, pool.streams_per_worker, &worker.labels);
                    for _ in 0..worker.streams.len() {
                        placement.occupy(id.0);
                    }
                }
            }
            let state = self.fleet.pools.get_mut(&name).expect("the caller found it");
            state.placement = placement;
        }
        if old.limits != pool.limits {
            let cgroups = self
                .fleet
                .workers
                .values()
                .filter(|w| w.pool == name && w.state != WorkerState::Stopping)
                .filter_map(|w| w.confinement.cgroup.clone());
            out.limits.extend(cgroups.map(|c| (c, pool.clone())));
        }
        // The spare: ordered if the pool now keeps one and has none (or
        // came back), told to exit if it no longer does.
        let state = self.fleet.pools.get_mut(&name).expect("the caller found it");
        let spare_coming = state.spare.is_some() || (old.spare && !revived && state.pending > 0);
        if pool.spare && !spare_coming {
            self.order_spawn(&name, SPARE_SLOT);
        } else if !pool.spare {
            if let Some(spare) = state.spare.take() {
                if let Some(w) = self.fleet.workers.get_mut(&spare) {
                    w.stop();
                }
            }
        }
        // (A pool back before its last streamlets left: they finish
        // draining, and the autoscaler starts new ones.)
        self.autoscale(&name);
    }

    /// An operator's `scale`: new bounds for a pool until the next reload
    /// (which goes back to the file's). Each bound given was checked
    /// ([`crate::validate`]); one given alone must still fit the
    /// pool's other bound.
    pub(crate) fn scale(&mut self, request: &Scale) -> Result<ScaleAccepted, ErrorBody> {
        let pool = request.pool.as_str();
        self.fleet.check(Some(pool))?;
        let state = self.fleet.pools.get_mut(pool).expect("checked above");
        let (min, max) =
            (request.min.unwrap_or(state.config.workers_min), request.max.unwrap_or(state.config.workers_max));
        if min > max {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!(
                    "min {min} and max {max} do not make bounds: min may not be above max (give both to move both)"
                ),
            ));
        }
        let mut config = (*state.config).clone();
        config.workers_min = min;
        config.workers_max = max;
        state.config = Arc::new(config);
        state.scaler.set_rules(state.config.rules());
        tracing::info!(pool, min, max, "pool bounds set by an operator (until the next reload)");
        self.autoscale(pool);
        let desired = self.fleet.pools.get(pool).map_or(0, |p| p.desired);
        Ok(ScaleAccepted { pool: pool.to_owned(), min, max, desired })
    }

    /// Orders a spawn into `slot` of `pool` from the spawner (counted as
    /// pending until it settles).
    pub(super) fn order_spawn(&mut self, pool: &str, slot: usize) {
        let Some(orders) = self.spawn_orders.clone() else { return };
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            p.pending += 1;
            let _ = orders.send(SpawnOrder { pool: pool.to_owned(), slot });
        }
    }

    /// Removed pools whose last streamlet is gone are forgotten.
    pub(super) fn forget_removed_pools(&mut self) {
        let empty: Vec<String> = self
            .fleet
            .pools
            .iter()
            .filter(|(name, p)| p.removed && p.pending == 0 && !self.fleet.workers.values().any(|w| &w.pool == *name))
            .map(|(name, _)| name.clone())
            .collect();
        for name in empty {
            self.fleet.pools.remove(&name);
            let changes = self.bandwidth.set_pool(&name, None, false);
            self.apply_rates(&changes.rates);
            self.metrics.forget_pool(&name);
            tracing::info!(pool = %name, "removed pool's last streamlet is gone");
        }
    }
}

/// What a reload cannot do for a pool's `listen`.
fn listen_note(pool: &str) -> String {
    format!(
        "pool {pool}: its listen or listen_tenant is new or changed; the daemon opens its listeners at start: \
         restart streamletd to apply (a removed pool's listeners close at their next client)"
    )
}
