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
//!   every pool at its capacity. Work-conserving: capacity stays idle only if
//!   every holder that could use it is at its max.
//! - Rates are whole bytes per second: shares are rounded down and the bytes
//!   left over go to the largest fractional parts, ties to the oldest holder.
//! - Lowering a capacity below the running minimums preempts the
//!   lowest-priority, newest holders of that level, whatever the pool's `preempt`.
//!
//! # Cost
//!
//! Every admit, release, lease, expiry and capacity change re-shares from
//! scratch: O(n log n) in the holders (one sort by saturation level), plus
//! O(n) to find the rates that changed. Preemption adds a sort of the
//! candidates. `benches/quota.rs` measures it: about 9 µs per admission at
//! 100 streams, 1.3 ms at 10,000 and 26 ms at 100,000, the same as a full
//! re-share, so at 100,000 streams the recomputation dominates.
//!
//! # The seed's example
//!
//! Capacity 50, at most 15 per customer: one customer gets 15, two get 15
//! each, four get 12.5 each, rounded to 13, 13, 12, 12 in admission order.
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
//! assert_eq!(rates, [13, 13, 12, 12]);
//! ```

mod allocator;
mod burst;
mod fill;
mod lease;
mod reason;
mod report;
mod types;

pub use allocator::{Admission, Allocator, BatchAdmission, Changes};
pub use burst::Burst;
pub use lease::{Expiry, LeaseGrant};
pub use reason::{Reason, Refusal};
pub use report::{PoolReport, QuotaReport, TenantReport, Usage};
pub use types::{Holder, LeaseId, Level, Millis, PoolId, Priority, Rate, StreamKey, TenantId};

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
