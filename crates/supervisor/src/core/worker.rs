//! A streamlet as the core knows it: its pool and slot, its state, its
//! link and its monitor's kill switch, the streams it serves.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use streamlet_proto::{ExitCause, StreamId, WorkerState};
use tokio::sync::mpsc;

use super::idmap::IdSet;
use crate::link::WorkerLink;
use crate::sandbox::Confinement;

/// A request to the monitor of a streamlet to kill it, with the cause to
/// record (`None`: record what the kernel reports).
pub type KillRequest = Option<ExitCause>;

#[derive(Debug)]
pub(super) struct WorkerEntry {
    pub(super) pool: String,
    pub(super) slot: usize,
    pub(super) pid: u32,
    pub(super) state: WorkerState,
    pub(super) link: Arc<WorkerLink>,
    pub(super) kill: mpsc::UnboundedSender<KillRequest>,
    /// When its process was spawned: its uptime in listings and events.
    pub(super) spawned: Instant,
    /// When it began to serve its slot: at its spawn, or when it took the
    /// slot as the spare. `healthy_after` counts from here.
    pub(super) started: Instant,
    pub(super) streams: IdSet<StreamId>,
    pub(super) confinement: Confinement,
    /// Its labels, for placement and listings.
    pub(super) labels: BTreeMap<String, String>,
    /// Draining: killed at this instant if streams remain.
    pub(super) drain_deadline: Option<Instant>,
    /// Since when it has had no stream (ready streamlets only).
    pub(super) idle_since: Option<Instant>,
    /// The autoscaler retired it: its exit is planned and nothing replaces it.
    pub(super) retiring: bool,
    /// In a pool with `tenant_isolation`: whom its streams are of, while it
    /// has any.
    pub(super) tenant: Option<Serving>,
}

impl WorkerEntry {
    /// Told to exit now, out of service (placement is the caller's).
    pub(super) fn stop(&mut self) {
        self.state = WorkerState::Stopping;
        self.link.hang_up();
    }
}

/// Whom a streamlet of a pool with `tenant_isolation` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Serving {
    One(String),
    /// Several tenants (streams it had when a reload turned isolation on):
    /// it takes no new stream until it is empty.
    Several,
}
