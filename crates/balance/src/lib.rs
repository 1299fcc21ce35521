//! Placement policies: which streamlet of a pool serves a new stream.
//!
//! Pure code: no IO and no clock, so the daemon, the tests and (later) the
//! simulator drive the same logic. Choosing and claiming a slot are one call
//! ([`Placement::place`]), so no two streams can take the same last slot.
//!
//! ```
//! use streamlet_balance::{LeastConnections, Placement};
//!
//! let mut p = LeastConnections::default();
//! p.add(1, 1);
//! p.add(2, 1);
//! let a = p.place().unwrap();
//! let b = p.place().unwrap();
//! assert_ne!(a, b, "the second stream goes to the emptier streamlet");
//! assert_eq!(p.place(), None, "all full");
//! p.release(a);
//! assert_eq!(p.place(), Some(a));
//! ```

mod least_connections;

pub use least_connections::LeastConnections;

/// A streamlet as the placement code knows it: the daemon's worker id.
pub type WorkerKey = u64;

/// A placement policy over the ready streamlets of one pool.
pub trait Placement: Send + std::fmt::Debug {
    /// A streamlet became ready with room for `capacity` streams.
    fn add(&mut self, worker: WorkerKey, capacity: u32);
    /// A streamlet stops taking streams (stopping, dead). Its counts are forgotten.
    fn remove(&mut self, worker: WorkerKey);
    /// Chooses a streamlet with room and claims one slot on it.
    fn place(&mut self) -> Option<WorkerKey>;
    /// A stream on `worker` ended: its slot is free again.
    fn release(&mut self, worker: WorkerKey);
    /// `(active, capacity)` of a streamlet, if it is placeable.
    fn load(&self, worker: WorkerKey) -> Option<(u32, u32)>;
}
