//! The uids a daemon hands out: its leased range, and which of it is free.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Mutex;

use streamlet_sandbox::uids::{Lease, Registry, UidError};

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

/// This daemon's uids: the range (configured, or until leased the default
/// one), its lease in the host's registry, and which are free.
#[derive(Debug)]
pub(super) struct Uids {
    /// `[sandbox] uids` until [`lease`](Self::lease); then the range leased.
    range: (u32, u32),
    /// Whether the config named the range (else a slice of it is leased).
    given: bool,
    lease: Option<Lease>,
    pool: Mutex<UidPool>,
}

impl Uids {
    pub(super) fn new(range: (u32, u32), given: bool) -> Self {
        Self { range, given, lease: None, pool: Mutex::new(UidPool { next_fresh: range.0, freed: VecDeque::new() }) }
    }

    /// The range handed out from, first and last.
    pub(super) fn range(&self) -> (u32, u32) {
        self.range
    }

    /// Leases this daemon's uids in the host's registry (`registry`): the
    /// configured range, refused if another live daemon holds any of it, or
    /// without one a free slice of the default range, the slice of the
    /// daemon's `socket` first (so a daemon restarted on its socket usually
    /// gets its old one).
    pub(super) fn lease(&mut self, registry: &Path, socket: &Path) -> Result<(), UidError> {
        let registry = Registry::new(registry);
        let lease = if self.given {
            registry.take(self.range)?
        } else {
            let slices = ((self.range.1 - self.range.0 + 1) / AUTO_UIDS_SLICE).max(1) as u64;
            registry.take_slice(self.range, AUTO_UIDS_SLICE, (instance::hash(socket) % slices) as usize)?
        };
        self.range = lease.range();
        *self.pool.lock().unwrap_or_else(|p| p.into_inner()) =
            UidPool { next_fresh: lease.range().0, freed: VecDeque::new() };
        self.lease = Some(lease);
        Ok(())
    }

    /// A uid no live streamlet has: one never used yet while there are
    /// any, then the one freed longest ago, so a uid's next holder comes as
    /// late as possible after its last. `None`: all are held.
    pub(super) fn allocate(&self) -> Option<u32> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).allocate(self.range.1)
    }

    pub(super) fn free(&self, uid: u32) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).freed.push_back(uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let default = crate::config::Config::embedded().sandbox.uids;
        let mut a = Uids::new(default, false);
        let mut b = Uids::new(default, false);
        a.lease(registry.path(), Path::new("/run/a.sock")).unwrap();
        b.lease(registry.path(), Path::new("/run/b.sock")).unwrap();
        let (ra, rb) = (a.range(), b.range());
        assert_eq!((ra.1 - ra.0 + 1, rb.1 - rb.0 + 1), (AUTO_UIDS_SLICE, AUTO_UIDS_SLICE));
        assert!(ra.1 < rb.0 || rb.1 < ra.0, "{ra:?} and {rb:?} overlap");
        assert_eq!(a.allocate(), Some(ra.0), "handed out from the lease");
        let mut c = Uids::new((ra.0 + 10, ra.0 + 20), true);
        let err = c.lease(registry.path(), Path::new("/run/c.sock")).unwrap_err().to_string();
        assert!(err.contains("overlap") && err.contains("another streamletd"), "{err}");
        drop(a);
        c.lease(registry.path(), Path::new("/run/c.sock")).unwrap();
        assert_eq!(c.range(), (ra.0 + 10, ra.0 + 20));
    }
}
