//! The quota report: bandwidth and streams at each level (the host, each
//! pool, tenants), read from the allocator and the stream table under the
//! lock.

use std::collections::HashMap;

use streamlet_balance::quota::Usage;
use streamlet_proto::{QuotaLine, QuotaReport};

use super::{Core, TenantLines, UNLIMITED};

impl Core {
    /// Capacity, allocated and free, for the host, each pool, and the
    /// tenants `tenants` picks (by name), with the name to ask after for the
    /// next page when more remain. Each line counts its open streams (from
    /// the stream table) and, apart, those under the quota (the allocator's).
    pub fn quota_report(&self, tenants: TenantLines<'_>) -> QuotaReport {
        let report = self.quota.snapshot();
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
        let mut tenant_line = |tenant: &str, held: u32| {
            let limit = self.tenants.limit(tenant);
            let usage = usage_of(tenant).unwrap_or_default();
            // What a tenant holds is its streams, under the quota or not, and its leases.
            let open = held.saturating_sub(usage.leases);
            let mut l = line(tenant, "tenant", &usage, open, limit);
            l.streams = open;
            lines.push(l);
        };
        let mut next = None;
        match tenants {
            TenantLines::Page { after, limit } => {
                let mut page = self.tenants.after(after);
                for (tenant, held) in page.by_ref().take(limit) {
                    tenant_line(tenant, held);
                }
                if page.next().is_some() {
                    next = lines.last().map(|l| l.name.clone());
                }
            }
            TenantLines::Configured => {
                for tenant in self.tenants.configured() {
                    tenant_line(tenant, self.tenants.held(tenant));
                }
            }
        }
        QuotaReport { lines, next }
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
