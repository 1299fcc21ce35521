//! What each tenant holds (its streams and leases) against its
//! `max_streams`: the one owner of the tenant counts, and of which tenant
//! holds each lease.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use streamlet_balance::quota::LeaseId;

/// Leases held at once, at most: each costs memory and a place in the
/// allocator, and a gateway could otherwise ask for them without end.
pub const MAX_LEASES: usize = 65_536;

/// A tenant that holds its `max_streams` already, in streams and leases.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {tenant:?} holds {held} streams and leases, its max_streams")]
pub struct TenantFull {
    pub tenant: String,
    pub held: u32,
}

#[derive(Debug, Default)]
pub struct Tenants {
    /// Streams and leases per tenant, of tenants holding any (by name, so
    /// that the quota report pages through them).
    held: BTreeMap<String, u32>,
    /// `[tenants.NAME] max_streams`.
    limits: BTreeMap<String, u32>,
    /// `[quota] default_max_streams`, for the tenants the config names not.
    default_limit: Option<u32>,
    /// The tenant of each live lease.
    leases: HashMap<LeaseId, String>,
}

impl Tenants {
    pub fn new(limits: BTreeMap<String, u32>, default_limit: Option<u32>) -> Self {
        Self { held: BTreeMap::new(), limits, default_limit, leases: HashMap::new() }
    }

    /// New limits (a reload); what each holds stays.
    pub fn configure(&mut self, limits: BTreeMap<String, u32>, default_limit: Option<u32>) {
        self.limits = limits;
        self.default_limit = default_limit;
    }

    /// `tenant`'s `max_streams`, if it has one.
    pub fn limit(&self, tenant: &str) -> Option<u32> {
        self.limits.get(tenant).copied().or(self.default_limit)
    }

    /// Streams and leases `tenant` holds.
    pub fn held(&self, tenant: &str) -> u32 {
        self.held.get(tenant).copied().unwrap_or(0)
    }

    /// Whether `tenant` may take one more stream or lease.
    pub fn check(&self, tenant: &str) -> Result<(), TenantFull> {
        let held = self.held(tenant);
        if self.limit(tenant).is_some_and(|limit| held >= limit) {
            return Err(TenantFull { tenant: tenant.to_owned(), held });
        }
        Ok(())
    }

    /// `tenant` took a stream or a lease.
    pub fn take(&mut self, tenant: &str) {
        *self.held.entry(tenant.to_owned()).or_default() += 1;
    }

    /// `tenant` gave one back; a tenant holding nothing is forgotten.
    pub fn give_back(&mut self, tenant: &str) {
        if let Some(count) = self.held.get_mut(tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.held.remove(tenant);
            }
        }
    }

    /// Whether [`MAX_LEASES`] are held.
    pub fn leases_full(&self) -> bool {
        self.leases.len() >= MAX_LEASES
    }

    /// `tenant` took `lease`.
    pub fn take_lease(&mut self, lease: LeaseId, tenant: String) {
        self.take(&tenant);
        self.leases.insert(lease, tenant);
    }

    /// `lease` ended (released, expired, preempted): its tenant gives it
    /// back. The tenant, if the lease was held.
    pub fn end_lease(&mut self, lease: LeaseId) -> Option<String> {
        let tenant = self.leases.remove(&lease)?;
        self.give_back(&tenant);
        Some(tenant)
    }

    /// The tenants the config names, in name order.
    pub fn configured(&self) -> impl Iterator<Item = &str> {
        self.limits.keys().map(String::as_str)
    }

    /// The tenants named after `after`, in name order, with what each holds:
    /// those holding something, and those the configuration names, which
    /// hold 0 until their first stream.
    pub fn after<'a>(&'a self, after: Option<&'a str>) -> impl Iterator<Item = (&'a str, u32)> + 'a {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut held = self.held.range::<str, _>((from, Bound::Unbounded)).peekable();
        let mut configured = self.limits.range::<str, _>((from, Bound::Unbounded)).peekable();
        std::iter::from_fn(move || {
            let take_held = match (held.peek().map(|(h, _)| *h), configured.peek().map(|(c, _)| *c)) {
                (None, None) => return None,
                (Some(h), Some(c)) => {
                    if h == c {
                        // Configured and holding: one line.
                        configured.next();
                    }
                    h <= c
                }
                (h, _) => h.is_some(),
            };
            if take_held {
                held.next().map(|(name, count)| (name.as_str(), *count))
            } else {
                configured.next().map(|(name, _)| (name.as_str(), 0))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Tenants {
        Tenants::new([("acme".to_owned(), 2), ("zeta".to_owned(), 1)].into(), Some(3))
    }

    #[test]
    fn a_tenant_is_held_to_its_limit_or_the_default() {
        let mut t = tenants();
        t.take("acme");
        t.take("acme");
        assert_eq!(t.check("acme"), Err(TenantFull { tenant: "acme".into(), held: 2 }));
        t.give_back("acme");
        assert_eq!(t.check("acme"), Ok(()));
        for _ in 0..3 {
            t.check("other").unwrap();
            t.take("other");
        }
        assert!(t.check("other").is_err(), "the default limit");
        t.configure(BTreeMap::new(), None);
        assert_eq!(t.check("other"), Ok(()), "no limit after a reload that names none");
        assert_eq!(t.held("other"), 3, "what it holds stays");
    }

    #[test]
    fn giving_back_more_than_held_never_wraps_and_forgets_the_tenant() {
        let mut t = tenants();
        t.give_back("nobody");
        t.take("b");
        t.give_back("b");
        t.give_back("b");
        assert_eq!(t.held("b"), 0);
        assert_eq!(t.after(None).map(|(n, _)| n).collect::<Vec<_>>(), ["acme", "zeta"], "only the configured remain");
    }

    #[test]
    fn a_lease_counts_for_its_tenant_until_it_ends_once() {
        let mut t = tenants();
        t.take_lease(LeaseId(7), "zeta".into());
        assert!(t.check("zeta").is_err(), "zeta's one slot is the lease");
        assert_eq!(t.end_lease(LeaseId(7)).as_deref(), Some("zeta"));
        assert_eq!(t.end_lease(LeaseId(7)), None, "ended once");
        assert_eq!(t.held("zeta"), 0);
        assert!(!t.leases_full());
    }

    #[test]
    fn paging_lists_each_tenant_once_in_name_order() {
        let mut t = tenants();
        for name in ["acme", "beta", "beta", "zz"] {
            t.take(name);
        }
        let all: Vec<(&str, u32)> = t.after(None).collect();
        assert_eq!(all, [("acme", 1), ("beta", 2), ("zeta", 0), ("zz", 1)]);
        assert_eq!(t.after(Some("beta")).collect::<Vec<_>>(), [("zeta", 0), ("zz", 1)]);
        assert_eq!(t.after(Some("zz")).count(), 0);
        assert_eq!(t.configured().collect::<Vec<_>>(), ["acme", "zeta"]);
    }
}
