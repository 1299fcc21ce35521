//! How many streamlets a pool keeps warm.
//!
//! Pure code, like placement and the quota: every function takes `now` as an
//! argument and does no IO, so the daemon and `streamletctl simulate` run the
//! same decisions, the simulator over days of a trace in seconds.
//!
//! - [`policy`]: the reactive rules (min, max, min_free, lookahead, idle
//!   grace, spawn backoff) and how a forecast raises them.
//! - [`forecast`]: a seasonal model of arrivals per minute.
//! - [`history`]: what the model learns from, per pool, and its file format.
//! - [`demand`]: history and model together: predicted concurrent streams
//!   over the next `lead`.

pub mod demand;
pub mod forecast;
pub mod history;
pub mod policy;

pub use demand::Demand;
pub use policy::{Decision, Mode, Reason, Rules, Scaler, Snapshot, WorkerLoad};
