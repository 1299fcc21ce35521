//! A streamlet's load as the share-ordered policies keep it.

use std::cmp::Ordering;

use crate::WorkerKey;

/// A streamlet in a share-ordered set: the smallest share of its capacity in
/// use first, then the least recently chosen, then the lowest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Load {
    pub active: u32,
    pub capacity: u32,
    /// The placement counter when this streamlet was last chosen; 0 = never.
    pub last: u64,
    pub worker: WorkerKey,
}

impl Load {
    pub fn share(&self) -> f64 {
        f64::from(self.active) / f64::from(self.capacity)
    }

    pub fn has_room(&self) -> bool {
        self.active < self.capacity
    }
}

impl Ord for Load {
    fn cmp(&self, other: &Self) -> Ordering {
        // active/capacity < other.active/other.capacity, without division.
        let lhs = u64::from(self.active) * u64::from(other.capacity);
        let rhs = u64::from(other.active) * u64::from(self.capacity);
        lhs.cmp(&rhs).then(self.last.cmp(&other.last)).then(self.worker.cmp(&other.worker))
    }
}

impl PartialOrd for Load {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
