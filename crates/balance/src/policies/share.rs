//! The order of the share-ordered policies (least-connections, and geo
//! within a region).

use std::cmp::Ordering;

use super::bookkeeping::Load;
use crate::WorkerKey;

/// A streamlet with room, ordered by the smallest share of its capacity in
/// use first, then the least recently chosen, then the lowest id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByShare {
    pub active: u32,
    pub capacity: u32,
    /// The placement count when it was last chosen; 0: never.
    pub last: u64,
    pub worker: WorkerKey,
}

impl ByShare {
    pub fn new(worker: WorkerKey, load: Load) -> Self {
        Self { active: load.active, capacity: load.capacity, last: load.last, worker }
    }

    pub fn share(&self) -> f64 {
        f64::from(self.active) / f64::from(self.capacity)
    }
}

impl Ord for ByShare {
    fn cmp(&self, other: &Self) -> Ordering {
        // active/capacity < other.active/other.capacity, without division.
        let lhs = u64::from(self.active) * u64::from(other.capacity);
        let rhs = u64::from(other.active) * u64::from(self.capacity);
        lhs.cmp(&rhs).then(self.last.cmp(&other.last)).then(self.worker.cmp(&other.worker))
    }
}

impl PartialOrd for ByShare {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
