//! The bandwidth allocator: who gets how many bytes per second.
//!
//! Pure code: no IO and no clock. Time is [`Millis`], milliseconds since an
//! epoch the caller chooses, passed as `now` to every call that needs it.
//!
//! # Rules
//!
//! - Limits nest: host, then pool (optional `egress`), then tenant
//!   (`max_streams` only, streams and leases together), then stream
//!   ([`Rate`] `{min, max}`).
//! - Admission reserves the minimum. Running holders keep theirs: a new one
//!   whose minimum does not fit is refused `insufficient`, unless its pool has
//!   `preempt = true`, in which case strictly lower-priority holders in
//!   preemptible pools are closed with `preempted` (lowest priority first,
//!   then the newest) if that makes room. Nothing is preempted for a refusal.
//! - The residual above the minimums is shared by weighted max-min fairness
//!   (water-filling), weight `priority + 1`, each holder capped at its max and
//!   every pool at its capacity. Each share is rounded down to whole bytes per
//!   second; otherwise it is work-conserving: a level leaves idle less than
//!   one byte per second per holder below its max.
//! - Lowering a capacity below the running minimums preempts the
//!   lowest-priority, newest holders of that level, whatever the pool's `preempt`.
//! - A holder is *paced* near its allocation, never above a capacity in sum
//!   ([`Allocator::sweep`]), and may *burst* above it, up to its max, from
//!   what others leave unused, for a bounded window ([`Allocator::grant_bursts`]).
//!
//! # Cost
//!
//! Nothing recomputes from scratch. The demands stay sorted by the level at
//! which each reaches its max, in blocks with running sums (`levels.rs`), so
//! an admit, release or expiry is one insertion or removal plus a walk over
//! the block sums to find the new water levels: O(n / 512 + 512). Every
//! holder's allocation follows from its pool's level in O(1). The new rates of
//! the others are not pushed one by one: paced rates keep a margin, an
//! admission that fits in it touches no one, and a periodic sweep (O(n), no
//! sort) catches up. Preemption adds a sort of the candidates. `benches/quota.rs`
//! measures it; BENCHMARKS.md has the figures.
//!
//! # The seed's example
//!
//! Capacity 50, at most 15 per customer: one customer gets 15, two get 15
//! each, four get 12.5 each, rounded down to 12.
//!
//! ```
//! use streamlet_balance::quota::{Allocator, Priority, Rate, StreamKey};
//!
//! let mut quota = Allocator::new(50);
//! quota.set_pool("video", None, false);
//! let rate = Rate { min: 1, max: 15 };
//! for k in 0..4 {
//!     quota.admit(StreamKey(k), "video", "acme", Priority(0), rate, 0).unwrap();
//! }
//! let rates: Vec<u64> = (0..4).map(|k| quota.allocation(StreamKey(k)).unwrap()).collect();
//! assert_eq!(rates, [12, 12, 12, 12]);
//! ```

mod allocator;
mod burst;
mod lease;
mod levels;
mod reason;
mod report;
mod types;

pub use allocator::{Admission, Allocator, BatchAdmission, Changes};
pub use burst::Burst;
pub use lease::LeaseGrant;
pub use reason::Refusal;
pub use report::{PoolReport, QuotaReport, TenantReport, Usage};
pub use types::{Holder, LeaseId, Level, Millis, PoolId, Priority, Rate, StreamKey, TenantId, UNLIMITED};

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
