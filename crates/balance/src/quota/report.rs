//! What `streamletctl quota` shows: capacity, reserved, allocated and free.

use super::allocator::Allocator;
use super::types::{Holder, PoolId, TenantId};

/// Bandwidth at one level, in bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// The level's capacity; `None` if only the level above limits it.
    pub capacity: Option<u64>,
    /// The sum of the minimums held.
    pub reserved: u64,
    /// The sum of the allocations.
    pub allocated: u64,
    /// `capacity - allocated`, if there is a capacity.
    pub free: Option<u64>,
    /// Streams held.
    pub streams: u32,
    /// Leases held.
    pub leases: u32,
}

/// One pool's line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolReport {
    /// The pool.
    pub pool: PoolId,
    /// Whether its streams preempt and may be preempted.
    pub preempt: bool,
    /// Its bandwidth.
    pub usage: Usage,
}

/// One tenant's line. Tenants have no bandwidth cap: `usage.capacity` is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantReport {
    /// The tenant.
    pub tenant: TenantId,
    /// Its `max_streams`, streams and leases together.
    pub max_streams: u32,
    /// Its bandwidth.
    pub usage: Usage,
}

/// The whole allocator, pools and tenants sorted by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaReport {
    /// The host.
    pub host: Usage,
    /// Every declared pool.
    pub pools: Vec<PoolReport>,
    /// Every tenant seen.
    pub tenants: Vec<TenantReport>,
}

impl Allocator {
    /// A report of every level. O(n) in the holders.
    pub fn snapshot(&self) -> QuotaReport {
        let mut host = Usage { capacity: Some(self.host_capacity), ..Usage::default() };
        let mut pools: Vec<Usage> =
            self.pools.iter().map(|p| Usage { capacity: p.capacity, ..Usage::default() }).collect();
        let mut tenants = vec![Usage::default(); self.tenants.len()];
        for e in &self.entries {
            let lease = matches!(e.holder, Holder::Lease(_));
            for u in [&mut host, &mut pools[e.demand.pool], &mut tenants[e.tenant]] {
                u.reserved = u.reserved.saturating_add(e.demand.min);
                u.allocated = u.allocated.saturating_add(self.allocation_of(e));
                if lease {
                    u.leases += 1;
                } else {
                    u.streams += 1;
                }
            }
        }
        for u in std::iter::once(&mut host).chain(pools.iter_mut()) {
            u.free = u.capacity.map(|c| c.saturating_sub(u.allocated));
        }
        let mut pools: Vec<PoolReport> = self
            .pools
            .iter()
            .zip(pools)
            .map(|(p, usage)| PoolReport { pool: p.name.clone(), preempt: p.preempt, usage })
            .collect();
        pools.sort_by(|a, b| a.pool.cmp(&b.pool));
        let mut tenants: Vec<TenantReport> = self
            .tenants
            .iter()
            .zip(tenants)
            .enumerate()
            .filter(|(i, (t, _))| self.tenant_index.get(&t.name) == Some(i))
            .map(|(_, (t, usage))| TenantReport {
                tenant: t.name.clone(),
                max_streams: t.limit.unwrap_or(self.default_tenant_limit),
                usage,
            })
            .collect();
        tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        QuotaReport { host, pools, tenants }
    }
}
