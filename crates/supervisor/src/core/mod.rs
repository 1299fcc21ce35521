//! The daemon's state: pools, streamlets, streams, bandwidth, events.
//!
//! One [`Core`] behind one mutex, owned by [`Daemon`](crate::Daemon). Each
//! piece of state has one owner with its own methods and tests:
//!
//! - [`fleet`]: the pools' streamlets, slots, spares and placement;
//! - [`streams`]: the stream table and each stream's connection;
//! - [`bandwidth`]: the quota (rates, leases, bursts) and the tenants' counts
//!   ([`tenants`]);
//! - [`log`]: the event log, its sequence and its subscribers;
//! - [`waiting`]: opens waiting for room.
//!
//! `Core` ([`coordinator`]) holds them side by side and keeps them in step,
//! one concern a file: streams begin ([`open`], through the one
//! [`handover`]) and end ([`end`]), rates move ([`rates`]), streamlets die
//! ([`monitor`]), pools scale ([`autoscale`]) and are reloaded ([`reload`]),
//! and read-only listings ([`views`]).
//!
//! The locking rule: the lock is taken for a state change and released
//! before any `.await`; nothing under it blocks (sends to streamlets never
//! wait, events to gateways go into the connection's bounded, ordered
//! queue). Methods return what the caller must do next (respawn a slot, ...)
//! instead of doing IO themselves. No file here imports this one: each
//! imports the owners and `coordinator` it uses.

mod autoscale;
mod bandwidth;
mod coordinator;
mod end;
mod fleet;
mod handover;
mod idmap;
mod log;
mod monitor;
mod open;
mod pool;
mod rates;
mod reload;
mod streams;
mod tenants;
#[cfg(test)]
mod testkit;
#[cfg(test)]
mod tests;
mod views;
mod waiting;
mod worker;

pub(crate) use bandwidth::refusal_error;
pub use bandwidth::{LeaseError, LEASES_EXPIRED_PER_TICK};
pub use coordinator::{wall_ms, Core};
pub use fleet::{unknown_worker, DrainOutcome, NewWorker, Respawn, SpawnOrder, WorkerRow, SPARE_SLOT};
pub use open::{OpenOutcome, UPSTREAM_WAIT};
pub use pool::DEATHS_KEPT;
pub use reload::Reconfigured;
pub use tenants::{TenantFull, MAX_LEASES};
pub use views::TenantLines;
pub use worker::KillRequest;
