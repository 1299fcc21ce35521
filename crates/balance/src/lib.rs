//! Placement policies: which streamlet of a pool serves a new stream.
//!
//! Pure code: no IO and no clock, so the daemon, the tests and (later) the
//! simulator drive the same logic. Choosing and claiming a slot are one call
//! ([`Placement::place`]), so no two streams can take the same last slot.
//!
//! ```
//! use streamlet_balance::{Labels, LeastConnections, Placement, Request};
//!
//! let mut p = LeastConnections::default();
//! let labels = Labels::new();
//! p.add(1, 1, &labels);
//! p.add(2, 1, &labels);
//! let any = Request::default();
//! let a = p.place(&any).unwrap();
//! let b = p.place(&any).unwrap();
//! assert_ne!(a, b, "the second stream goes to the emptier streamlet");
//! assert_eq!(p.place(&any), None, "all full");
//! p.release(a);
//! assert_eq!(p.place(&any), Some(a));
//! ```

pub mod policies;
pub mod quota;

pub use policies::LeastConnections;

/// A streamlet as the placement code knows it: the daemon's worker id.
pub type WorkerKey = u64;

/// A streamlet's labels (`region`, `zone`, `forwarded`, ...).
pub type Labels = std::collections::BTreeMap<String, String>;

/// What a stream asks of placement.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The region the stream is nearest to (`geo`).
    pub region: Option<String>,
}

/// A placement policy over the ready streamlets of one pool.
pub trait Placement: Send + std::fmt::Debug {
    /// A streamlet became ready with room for `capacity` streams.
    fn add(&mut self, worker: WorkerKey, capacity: u32, labels: &Labels);
    /// A streamlet stops taking streams (stopping, dead). Its counts are forgotten.
    fn remove(&mut self, worker: WorkerKey);
    /// Chooses a streamlet with room and claims one slot on it, in one step.
    fn place(&mut self, request: &Request) -> Option<WorkerKey>;
    /// A stream on `worker` ended: its slot is free again.
    fn release(&mut self, worker: WorkerKey);
    /// A stream already on `worker` (placed by another policy before a
    /// switch) takes one of its slots, as if placed there.
    fn occupy(&mut self, worker: WorkerKey);
    /// `(active, capacity)` of a streamlet, if it is placeable.
    fn load(&self, worker: WorkerKey) -> Option<(u32, u32)>;
}
