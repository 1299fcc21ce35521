//! The uids a daemon hands out: its leased range, and which of it is free.

use std::collections::VecDeque;
use std::path::Path;

use super::{Sandbox, SandboxError};
use crate::config::AUTO_UIDS_SLICE;
use crate::instance;

/// The uids of `[sandbox] uids` not held by a live streamlet.
#[derive(Debug)]
pub(super) struct UidPool {
    /// The lowest uid never handed out.
    pub(super) next_fresh: u32,
    /// Freed uids, the longest-freed first.
    pub(super) freed: VecDeque<u32>,
}

impl UidPool {
    pub(super) fn allocate(&mut self, last: u32) -> Option<u32> {
        if self.next_fresh <= last {
            self.next_fresh += 1;
            return Some(self.next_fresh - 1);
        }
        self.freed.pop_front()
    }
}

impl Sandbox {
    /// Leases this daemon's uids in the host's registry (`registry`): the
    /// configured range, refused if another live daemon holds any of it, or
    /// without one a free slice of the default range, the socket's own
    /// slice first (so a daemon restarted on its socket usually gets its
    /// old one).
    pub(super) fn lease_uids(&mut self, registry: &Path) -> Result<(), SandboxError> {
        let registry = streamlet_sandbox::uids::Registry::new(registry);
        let lease = if self.uids_given {
            registry.take(self.uid_range)?
        } else {
            let slices = ((self.uid_range.1 - self.uid_range.0 + 1) / AUTO_UIDS_SLICE).max(1) as u64;
            registry.take_slice(self.uid_range, AUTO_UIDS_SLICE, (instance::hash(&self.socket) % slices) as usize)?
        };
        self.uid_range = lease.range();
        *self.uids.lock().unwrap_or_else(|p| p.into_inner()) =
            UidPool { next_fresh: lease.range().0, freed: VecDeque::new() };
        self.uid_lease = Some(lease);
        Ok(())
    }

    /// A uid no live streamlet has: one never used yet while there are
    /// any, then the one freed longest ago, so a uid's next holder comes as
    /// late as possible after its last.
    pub(super) fn allocate_uid(&self) -> Result<u32, SandboxError> {
        let (first, last) = self.uid_range;
        self.uids.lock().unwrap_or_else(|p| p.into_inner()).allocate(last).ok_or(SandboxError::NoUid(first, last))
    }

    pub(super) fn free_uid(&self, uid: u32) {
        self.uids.lock().unwrap_or_else(|p| p.into_inner()).freed.push_back(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn uids_are_fresh_first_then_least_recently_freed() {
        let mut pool = UidPool { next_fresh: 10, freed: VecDeque::new() };
        assert_eq!((pool.allocate(12), pool.allocate(12), pool.allocate(12)), (Some(10), Some(11), Some(12)));
        assert_eq!(pool.allocate(12), None, "all held");
        pool.freed.push_back(11);
        pool.freed.push_back(10);
        assert_eq!(pool.allocate(12), Some(11), "the one freed longest ago");
        assert_eq!(pool.allocate(12), Some(10));
        assert_eq!(pool.allocate(12), None);
    }

    #[test]
    fn daemons_lease_disjoint_uids_and_an_overlap_is_refused() {
        let registry = tempfile::tempdir().unwrap();
        let config = Config::embedded();
        let mut a = Sandbox::probe(&config, Path::new("/run/a.sock"));
        let mut b = Sandbox::probe(&config, Path::new("/run/b.sock"));
        a.lease_uids(registry.path()).unwrap();
        b.lease_uids(registry.path()).unwrap();
        let (ra, rb) = (a.uid_range, b.uid_range);
        assert_eq!((ra.1 - ra.0 + 1, rb.1 - rb.0 + 1), (AUTO_UIDS_SLICE, AUTO_UIDS_SLICE));
        assert!(ra.1 < rb.0 || rb.1 < ra.0, "{ra:?} and {rb:?} overlap");
        assert_eq!(a.allocate_uid().unwrap(), ra.0, "handed out from the lease");
        let explicit =
            Config::parse(&format!("[sandbox]\nuids = \"{}-{}\"\n{POOL}", ra.0 + 10, ra.0 + 20), "x").unwrap();
        let mut c = Sandbox::probe(&explicit, Path::new("/run/c.sock"));
        let err = c.lease_uids(registry.path()).unwrap_err().to_string();
        assert!(err.contains("overlap") && err.contains("another streamletd"), "{err}");
        drop(a);
        c.lease_uids(registry.path()).unwrap();
        assert_eq!(c.uid_range, (ra.0 + 10, ra.0 + 20));
    }

    const POOL: &str =
        "[pools.echo]\nhandler = { kind = \"echo\" }\nworkers = { min = 1, max = 1 }\nstreams_per_worker = 1\n";
}
