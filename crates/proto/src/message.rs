//! The messages of the control socket.
//!
//! Every enum is externally tagged: in JSON a variant is `{"name": {...}}`, a
//! unit variant is the string `"name"`. Every request variant carries a struct,
//! even an empty one, so that fields can be added to it later.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::ErrorBody;

/// A stream's id, unique for the life of a daemon.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(transparent)]
pub struct StreamId(pub u64);

/// A streamlet's id, unique for the life of a daemon (a replacement gets a new one).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(transparent)]
pub struct WorkerId(pub u64);

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for WorkerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A request from a client. `id` is chosen by the client and echoed in the
/// reply, so a client may pipeline requests.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Request {
    pub id: u64,
    pub body: RequestBody,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum RequestBody {
    /// Hand a client connection (attached as `SCM_RIGHTS`) to a streamlet.
    Open(OpenRequest),
    /// End a stream: the daemon shuts its connection down.
    Close(CloseRequest),
    /// The daemon and its pools.
    Status(StatusRequest),
    /// The streamlets.
    Workers(WorkersRequest),
    /// The open streams.
    Streams(StreamsRequest),
    /// Hold bandwidth and a tenant slot without a stream, for a gateway that
    /// streams the data itself; refresh it before its TTL or it expires.
    Lease(LeaseRequest),
    /// Extend a lease by its TTL; answers its current rate.
    Refresh(LeaseRef),
    /// Give a lease back.
    Release(LeaseRef),
    /// Capacity, allocated and free bandwidth, per host, pool and tenant.
    Quota(QuotaRequest),
    /// One streamlet, with its slot's deaths.
    Worker(WorkerRef),
    /// Stop giving a streamlet new streams; it exits when empty or at a timeout.
    Drain(DrainRequest),
    /// Kill a streamlet now (`killed_by_operator`); its slot is filled again.
    Kill(WorkerRef),
    /// Replace a pool's streamlets one at a time.
    Restart(RestartRequest),
    /// Receive the daemon's lifecycle events on this connection.
    Subscribe(SubscribeRequest),
    /// The latest lifecycle events from the daemon's log, and (with
    /// `follow`) every one after them on this connection.
    Events(EventsRequest),
    /// Read the configuration file again and apply it without dropping a
    /// stream; an invalid one changes nothing.
    Reload(ReloadRequest),
    /// Set a pool's `workers.min` and/or `workers.max` until the next reload.
    Scale(ScaleRequest),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ScaleRequest {
    pub pool: String,
    #[serde(default)]
    pub min: Option<u32>,
    #[serde(default)]
    pub max: Option<u32>,
}

/// A pool's bounds after a `scale`, and what the autoscaler wants now.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ScaleAccepted {
    pub pool: String,
    pub min: u32,
    pub max: u32,
    pub desired: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ReloadRequest {}

/// What a reload changed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Reloaded {
    /// The file read.
    pub source: String,
    /// Pools new in the file: their streamlets start now.
    pub added: Vec<String>,
    /// Pools gone from the file: they take no new streams, and their
    /// streamlets leave as their streams end.
    pub removed: Vec<String>,
    /// Pools whose settings changed, applied to the live pool.
    pub changed: Vec<String>,
    /// What applies only to streamlets started from now on, or only after a
    /// restart of the daemon, one sentence each.
    pub notes: Vec<String>,
}

impl RequestBody {
    /// The request's name as in the JSON encoding, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Open(_) => "open",
            Self::Close(_) => "close",
            Self::Status(_) => "status",
            Self::Workers(_) => "workers",
            Self::Streams(_) => "streams",
            Self::Lease(_) => "lease",
            Self::Refresh(_) => "refresh",
            Self::Release(_) => "release",
            Self::Quota(_) => "quota",
            Self::Worker(_) => "worker",
            Self::Drain(_) => "drain",
            Self::Kill(_) => "kill",
            Self::Restart(_) => "restart",
            Self::Subscribe(_) => "subscribe",
            Self::Events(_) => "events",
            Self::Reload(_) => "reload",
            Self::Scale(_) => "scale",
        }
    }
}

/// `events`: how many of the latest logged events to return, and whether to
/// subscribe to what follows in the same step (no event lost or repeated
/// between the two).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct EventsRequest {
    /// At most this many (the log keeps the last [`EVENT_LOG_LEN`]); `None`:
    /// all it has.
    #[serde(default)]
    pub recent: Option<u32>,
    #[serde(default)]
    pub follow: bool,
}

/// How many lifecycle events the daemon's log keeps.
pub const EVENT_LOG_LEN: usize = 1024;

/// A lifecycle event as the daemon's log keeps it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LoggedEvent {
    /// Its place in the log: 1, 2, 3... since the daemon started.
    pub seq: u64,
    /// When, milliseconds since the Unix epoch.
    pub at_ms: u64,
    pub event: Event,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct EventLog {
    /// Oldest first.
    pub events: Vec<LoggedEvent>,
    /// Whether this connection now receives what follows.
    pub following: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerRef {
    pub worker: WorkerId,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DrainRequest {
    pub worker: WorkerId,
    /// Kill it after this many milliseconds if streams remain; `None`: the
    /// daemon's `shutdown_timeout`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RestartRequest {
    pub pool: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SubscribeRequest {}

/// A rolling restart accepted: these streamlets will be replaced, in order.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RestartAccepted {
    pub pool: String,
    pub workers: Vec<WorkerId>,
}

/// One streamlet in detail.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerDetail {
    pub info: WorkerInfo,
    /// Its streams.
    pub streams: Vec<StreamId>,
    /// The last deaths in its slot of the pool, newest first.
    pub deaths: Vec<Death>,
}

/// A streamlet's death, as its slot remembers it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Death {
    pub worker: WorkerId,
    pub cause: ExitCause,
    /// How long it had run.
    pub uptime_ms: u64,
    /// How long ago it died.
    pub ago_ms: u64,
    /// How many streams it served when it died.
    pub streams: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LeaseRequest {
    pub pool: String,
    /// `None` is the tenant `default`.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub priority: Option<u8>,
    pub rate: RateRequest,
    /// How long the lease lives without a refresh, in milliseconds.
    pub ttl_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LeaseRef {
    pub lease: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct QuotaRequest {
    /// Only tenants named after this one: the `next` of the page before.
    #[serde(default)]
    pub after: Option<String>,
    /// At most this many tenants (and never more than
    /// [`MAX_QUOTA_TENANTS_PAGE`]).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The most tenant lines one `quota` reply has (the host and every pool are
/// in every page).
pub const MAX_QUOTA_TENANTS_PAGE: u32 = 1_000;

/// A lease granted or refreshed.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LeaseGranted {
    pub lease: u64,
    /// Its allocation now, bytes per second.
    pub rate: u64,
    /// Milliseconds until it expires unless refreshed.
    pub expires_in_ms: u64,
}

/// Bandwidth at one level, bytes per second.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct QuotaLine {
    /// `host`, a pool's name, or a tenant's.
    pub name: String,
    /// `host`, `pool` or `tenant`.
    pub level: String,
    /// `None`: not limited at this level.
    pub capacity: Option<u64>,
    /// Minimums held.
    pub reserved: u64,
    pub allocated: u64,
    pub free: Option<u64>,
    /// The first count, kept for clients of before `open_streams`: the host
    /// and pools count `rated_streams` here, tenants `open_streams`.
    pub streams: u32,
    pub leases: u32,
    /// Tenants: their `max_streams`, if any.
    pub max_streams: Option<u32>,
    /// Every open stream at this level, with a rate or not.
    #[serde(default)]
    pub open_streams: u32,
    /// Those of `open_streams` under the quota, with an allocated rate.
    #[serde(default)]
    pub rated_streams: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct QuotaReport {
    /// The host, each pool, then tenants by name.
    pub lines: Vec<QuotaLine>,
    /// More tenants follow: ask again with `after` set to this.
    #[serde(default)]
    pub next: Option<String>,
}

/// The tenant of an open or a lease that names none.
pub const DEFAULT_TENANT: &str = "default";

/// Bytes in a tenant name, at most.
pub const MAX_TENANT_LEN: usize = 128;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OpenRequest {
    /// The pool to place the stream in.
    pub pool: String,
    /// The tenant the stream is accounted to; `None` is the tenant `default`.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Free-form labels, handed to the streamlet with the stream.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The region the client is nearest to, for pools placed by `geo`.
    #[serde(default)]
    pub region: Option<String>,
    /// Higher wins when bandwidth is short (0 to 255); `None` is 0.
    #[serde(default)]
    pub priority: Option<u8>,
    /// The bandwidth the stream needs and can use; `None`: the pool's
    /// `default_rate`, else no bandwidth quota for it.
    #[serde(default)]
    pub rate: Option<RateRequest>,
    /// When no streamlet has room or the minimum rate does not fit now, wait
    /// up to this many milliseconds for it instead of being refused at once.
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

impl OpenRequest {
    /// An open of `pool` with everything else left to the daemon's defaults.
    pub fn new(pool: impl Into<String>) -> Self {
        Self {
            pool: pool.into(),
            tenant: None,
            labels: BTreeMap::new(),
            region: None,
            priority: None,
            rate: None,
            wait_ms: None,
        }
    }
}

/// Bytes per second: at least `min` (else the stream is refused), at most `max`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RateRequest {
    pub min: u64,
    pub max: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct CloseRequest {
    pub stream: StreamId,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StatusRequest {}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkersRequest {
    /// Only this pool's streamlets; all when `None`.
    #[serde(default)]
    pub pool: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamsRequest {
    /// Only this pool's streams; all when `None`.
    #[serde(default)]
    pub pool: Option<String>,
    /// Only streams with a greater id: the `next` of the page before.
    #[serde(default)]
    pub after: Option<StreamId>,
    /// At most this many (and never more than [`MAX_STREAMS_PAGE`]).
    #[serde(default)]
    pub limit: Option<u32>,
}

/// The most streams one `streams` reply lists: a reply stays far below the
/// frame limit, and the daemon's thread lists a page at a time.
pub const MAX_STREAMS_PAGE: u32 = 2_000;

/// Everything the daemon sends after the handshake.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ServerMessage {
    /// The answer to the request with the same id.
    Reply(Reply),
    /// Something happened to a stream this connection opened.
    Event(Event),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Reply {
    /// The id of the request answered; 0 for an error about a frame that could
    /// not be decoded.
    pub id: u64,
    pub body: ReplyBody,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ReplyBody {
    Opened(Opened),
    Closed(Closed),
    Status(StatusReport),
    Workers(WorkerList),
    Streams(StreamList),
    Leased(LeaseGranted),
    Refreshed(LeaseGranted),
    Released(LeaseRef),
    Quota(QuotaReport),
    Error(ErrorBody),
    Worker(Box<WorkerDetail>),
    Draining(WorkerRef),
    Killed(WorkerRef),
    Restarting(RestartAccepted),
    Subscribed(SubscribeRequest),
    Events(EventLog),
    Reloaded(Reloaded),
    Scaled(ScaleAccepted),
}

impl ReplyBody {
    /// The reply's name as in the JSON encoding, for error messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Opened(_) => "opened",
            Self::Closed(_) => "closed",
            Self::Status(_) => "status",
            Self::Workers(_) => "workers",
            Self::Streams(_) => "streams",
            Self::Leased(_) => "leased",
            Self::Refreshed(_) => "refreshed",
            Self::Released(_) => "released",
            Self::Quota(_) => "quota",
            Self::Error(_) => "error",
            Self::Worker(_) => "worker",
            Self::Draining(_) => "draining",
            Self::Killed(_) => "killed",
            Self::Restarting(_) => "restarting",
            Self::Subscribed(_) => "subscribed",
            Self::Events(_) => "events",
            Self::Reloaded(_) => "reloaded",
            Self::Scaled(_) => "scaled",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Opened {
    pub stream: StreamId,
    pub pool: String,
    pub worker: WorkerId,
    /// The bandwidth allocated, bytes per second; `None` when the stream has
    /// no rate (no quota applies to it).
    #[serde(default)]
    pub rate: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Closed {
    pub stream: StreamId,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StatusReport {
    /// The daemon's version (`CARGO_PKG_VERSION`).
    pub version: String,
    pub pid: u32,
    pub uptime_ms: u64,
    /// The control socket's path.
    pub socket: String,
    pub pools: Vec<PoolStatus>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PoolStatus {
    pub name: String,
    pub handler: String,
    pub placement: String,
    /// Streamlets in any state.
    pub workers: u32,
    /// Streamlets that take new streams.
    pub ready: u32,
    pub streams: u32,
    /// Streams the ready streamlets can hold in all.
    pub capacity: u32,
    /// Its crash-loop breaker is open: no streamlet of it restarts for this
    /// many more milliseconds.
    #[serde(default)]
    pub degraded_for_ms: Option<u64>,
    /// Spare streamlets, ready to replace one that dies (not in `workers`).
    #[serde(default)]
    pub spares: u32,
    /// How many streamlets the pool keeps (its slots): `ready` is below it
    /// while some start, restart or back off.
    #[serde(default)]
    pub slots: u32,
    /// Errors since the daemon started, by kind: streams ended by
    /// `io_error`, `handler_error`, `command_exited`, `corrupt_frame` or
    /// `worker_died`, and `corrupt_frames_dropped`. Kinds never seen are absent.
    #[serde(default)]
    pub errors: BTreeMap<String, u64>,
    /// `workers.min` and `workers.max`.
    #[serde(default)]
    pub min: u32,
    #[serde(default)]
    pub max: u32,
    /// How many streamlets the autoscaler wants now.
    #[serde(default)]
    pub desired: u32,
    /// How many the forecast asks for (in `predictive` and `forecast-only`
    /// pools, once the forecast has something to go on).
    #[serde(default)]
    pub forecast: Option<u32>,
    /// Concurrent streams the forecast expects over the lead window.
    #[serde(default)]
    pub predicted_streams: Option<u32>,
    /// `reactive`, `predictive` or `forecast-only`.
    #[serde(default)]
    pub autoscale: String,
    /// Where the daemon accepts the pool's clients itself (`listen`), as
    /// bound: `"127.0.0.1:7000"`.
    #[serde(default)]
    pub listening: Vec<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerList {
    pub workers: Vec<WorkerInfo>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerInfo {
    pub id: WorkerId,
    pub pool: String,
    pub pid: u32,
    pub state: WorkerState,
    pub streams: u32,
    pub capacity: u32,
    pub uptime_ms: u64,
    /// How many streamlets in this slot of the pool died before this one.
    pub restarts: u32,
    /// How the previous streamlet in this slot ended, if one did.
    pub last_exit: Option<ExitCause>,
    /// What it has used, from its cgroup; `None` without cgroups.
    pub usage: Option<ResourceUsage>,
    /// Its labels: the pool's `labels` with its slot's `worker_labels` over them.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A streamlet's use of its cgroup's resources so far.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ResourceUsage {
    /// CPU time, in microseconds.
    pub cpu_usage_us: u64,
    /// Time held back by its CPU quota, in microseconds.
    pub cpu_throttled_us: u64,
    pub memory_current: u64,
    pub memory_peak: u64,
    /// Processes the OOM killer killed in it.
    pub oom_kills: u64,
    pub pids: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Spawned, not yet ready.
    Starting,
    /// Takes new streams.
    Ready,
    /// Being stopped; takes no new streams.
    Stopping,
    /// Takes no new streams; exits when its last stream ends, or at a timeout.
    Draining,
    /// Ready, and held back: it takes the place of the pool's next streamlet
    /// to die, so the slot is filled without a spawn.
    Spare,
}

impl WorkerState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Stopping => "stopping",
            Self::Draining => "draining",
            Self::Spare => "spare",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamList {
    /// By id.
    pub streams: Vec<StreamInfo>,
    /// More streams follow: ask again with `after` set to this.
    #[serde(default)]
    pub next: Option<StreamId>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamInfo {
    pub id: StreamId,
    pub pool: String,
    pub tenant: String,
    pub worker: WorkerId,
    pub age_ms: u64,
    /// Bytes read from the client, as last reported by the streamlet.
    pub bytes_in: u64,
    /// Bytes written to the client, as last reported by the streamlet.
    pub bytes_out: u64,
    /// The bandwidth allocated now, bytes per second; `None`: no quota.
    #[serde(default)]
    pub rate: Option<u64>,
    #[serde(default)]
    pub priority: u8,
    /// How fast it sent lately, bytes per second, from the streamlet's
    /// reports; `None` before the first measure.
    #[serde(default)]
    pub sending: Option<u64>,
    /// How long its writes have waited for its rate, in milliseconds.
    #[serde(default)]
    pub stalled_ms: u64,
}

/// An unsolicited message about a stream, sent to the connection that opened it
/// while that connection is open.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum Event {
    StreamEnded(StreamEnded),
    /// To subscribers: a streamlet died.
    WorkerExited(WorkerExited),
    /// To subscribers: a streamlet is ready.
    WorkerReady(WorkerReady),
    /// To subscribers: a pool's crash-loop breaker opened.
    PoolDegraded(PoolDegraded),
    /// To subscribers: a degraded pool's cool-down ended.
    PoolRecovered(PoolRecovered),
    /// To subscribers: a dead streamlet's stream was placed on another.
    StreamMigrated(StreamMigrated),
    /// To subscribers: the autoscaler spawned or retired streamlets.
    PoolScaled(PoolScaled),
    /// To subscribers: a streamlet process was started (it is `ready` later).
    WorkerSpawned(WorkerSpawned),
    /// To subscribers: a stream was placed on a streamlet.
    StreamOpened(StreamOpened),
    /// To a subscriber, last: it was dropped for not reading its events; its
    /// connection closes after this.
    SubscriberDropped(SubscriberDropped),
    /// To subscribers: the configuration was reloaded.
    Reloaded(Reloaded),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerSpawned {
    pub worker: WorkerId,
    pub pool: String,
    pub pid: u32,
    /// It replaces a streamlet that died (the slot's restarts so far), or
    /// 0 for a new place.
    pub restarts: u32,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamOpened {
    pub stream: StreamId,
    pub pool: String,
    pub worker: WorkerId,
    pub tenant: String,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct SubscriberDropped {
    /// Bytes of replies and events it had left unread.
    pub unread: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerExited {
    pub worker: WorkerId,
    pub pool: String,
    pub cause: ExitCause,
    pub uptime_ms: u64,
    /// Streams it served: ended or migrated.
    pub streams: u32,
    /// When its replacement starts; `None`: none will (shutdown, drain, scale-in).
    pub respawn_in_ms: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct WorkerReady {
    pub worker: WorkerId,
    pub pool: String,
    /// From spawn to ready.
    pub startup_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PoolDegraded {
    pub pool: String,
    /// Deaths within its `restart.period`.
    pub deaths: u32,
    pub period_ms: u64,
    /// No streamlet of it restarts before this many milliseconds pass.
    pub cooldown_ms: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PoolRecovered {
    pub pool: String,
}

/// One step of the autoscaler: `count` streamlets spawned (`up`) or retired
/// (`down`) for one `reason`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PoolScaled {
    pub pool: String,
    pub direction: ScaleDirection,
    pub reason: ScaleReason,
    pub count: u32,
    /// The streamlets the pool is to have once this is done.
    pub workers: u32,
    /// What the forecast asks for, in a pool that forecasts.
    pub forecast: Option<u32>,
    /// The streamlets retired (`down` only).
    pub retired: Vec<WorkerId>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ScaleDirection {
    Up,
    Down,
}

/// The rule behind a scaling step.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ScaleReason {
    /// Below `workers.min`.
    Min,
    /// Fewer empty streamlets than `workers.min_free`.
    MinFree,
    /// No streamlet had two free slots left.
    Lookahead,
    /// The forecast of demand over the lead window asks for more.
    Forecast,
    /// Empty for longer than `autoscale.idle_grace`.
    IdleGrace,
}

impl ScaleReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::MinFree => "min_free",
            Self::Lookahead => "lookahead",
            Self::Forecast => "forecast",
            Self::IdleGrace => "idle_grace",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamMigrated {
    pub stream: StreamId,
    pub pool: String,
    pub from: WorkerId,
    pub to: WorkerId,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamEnded {
    pub stream: StreamId,
    pub pool: String,
    pub worker: WorkerId,
    pub reason: EndReason,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Whether the counts are the stream's exact totals, reported by its
    /// streamlet at the end. When the stream ended without that report (its
    /// streamlet died, the daemon shut down) they are those of the last
    /// report before: at least that much went through. Absent (from an older
    /// daemon) reads as not exact.
    #[serde(default)]
    pub bytes_exact: bool,
}

/// Why a stream ended.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The handler finished: for echo, the client closed its side.
    Completed,
    /// A `Close` request ended it.
    Closed,
    /// Reading from or writing to the client failed (a reset, say).
    IoError { message: String },
    /// The handler failed.
    HandlerError { message: String },
    /// The streamlet serving it died.
    WorkerDied { cause: ExitCause },
    /// The daemon is shutting down.
    Shutdown,
    /// A stream of higher priority needed its bandwidth (the pool allows
    /// preemption).
    Preempted,
    /// The stream's command (`exec` handler) exited with a status other than
    /// 0, or was killed by a signal.
    CommandExited { cause: ExitCause },
    /// A frame failed its CRC32C check (`framing = "crc32c"`, `on_corrupt = "end"`).
    CorruptFrame { message: String },
}

/// The longest message an end reason or exit cause keeps, in bytes: what a
/// streamlet says is cut here before the daemon stores, logs or forwards it.
pub const MAX_REASON_LEN: usize = 256;

/// `text` cut at [`MAX_REASON_LEN`] bytes (on a character boundary), with
/// `…` where it was cut.
fn bounded_text(text: &mut String) {
    if text.len() <= MAX_REASON_LEN {
        return;
    }
    let mut end = MAX_REASON_LEN - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

impl EndReason {
    /// The reason with every message in it at most [`MAX_REASON_LEN`]
    /// bytes: for reasons that come from a streamlet.
    pub fn bounded(mut self) -> Self {
        match &mut self {
            Self::IoError { message } | Self::HandlerError { message } | Self::CorruptFrame { message } => {
                bounded_text(message)
            }
            Self::WorkerDied { cause } | Self::CommandExited { cause } => *cause = cause.clone().bounded(),
            Self::Completed | Self::Closed | Self::Shutdown | Self::Preempted => {}
        }
        self
    }
}

impl ExitCause {
    /// The cause with its message at most [`MAX_REASON_LEN`] bytes.
    pub fn bounded(mut self) -> Self {
        if let Self::ProtocolError { message } = &mut self {
            bounded_text(message);
        }
        self
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Completed => f.write_str("completed"),
            Self::Closed => f.write_str("closed"),
            Self::IoError { message } => write!(f, "io_error ({message})"),
            Self::HandlerError { message } => write!(f, "handler_error ({message})"),
            Self::WorkerDied { cause } => write!(f, "worker_died ({cause})"),
            Self::Shutdown => f.write_str("shutdown"),
            Self::Preempted => f.write_str("preempted"),
            Self::CommandExited { cause } => write!(f, "command_exited ({cause})"),
            Self::CorruptFrame { message } => write!(f, "corrupt_frame ({message})"),
        }
    }
}

/// How a streamlet process ended.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ExitCause {
    /// It exited with this code.
    Exited { code: i32 },
    /// A signal killed it.
    Signaled { signal: i32, core_dumped: bool },
    /// It broke the streamlet protocol, and the daemon killed it.
    ProtocolError { message: String },
    /// The kernel's OOM killer killed it: it reached its memory limit.
    Oom,
    /// It sent nothing for its pool's `heartbeat_timeout`; the daemon killed it.
    Hung { silent_ms: u64 },
    /// An operator killed it (`streamletctl kill`, or a drain that timed out).
    KilledByOperator,
}

impl ExitCause {
    /// The cause's kind, as in the JSON encoding: `exited`, `signaled`,
    /// `protocol_error`, `oom`, `hung` or `killed_by_operator`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Exited { .. } => "exited",
            Self::Signaled { .. } => "signaled",
            Self::ProtocolError { .. } => "protocol_error",
            Self::Oom => "oom",
            Self::Hung { .. } => "hung",
            Self::KilledByOperator => "killed_by_operator",
        }
    }
}

impl fmt::Display for ExitCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited { code } => write!(f, "exit code {code}"),
            Self::Signaled { signal, core_dumped } => {
                write!(f, "signal {}", signal_name(*signal))?;
                if *core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            Self::ProtocolError { message } => write!(f, "protocol error: {message}"),
            Self::Oom => f.write_str("oom (killed at its memory limit)"),
            Self::Hung { silent_ms } => write!(f, "hung (silent for {silent_ms} ms)"),
            Self::KilledByOperator => f.write_str("killed by operator"),
        }
    }
}

/// `SIGKILL` for 9, and so on; the number for signals without a common name.
pub fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSYS => "SIGSYS",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        _ => return signal.to_string(),
    };
    name.to_owned()
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn reasons_from_streamlets_are_cut_on_a_character_boundary() {
        let long = "é".repeat(40_000);
        let reason = EndReason::HandlerError { message: long.clone() }.bounded();
        let EndReason::HandlerError { message } = &reason else { panic!() };
        assert!(message.len() <= MAX_REASON_LEN, "{}", message.len());
        assert!(message.ends_with('…'));
        let nested = EndReason::CommandExited { cause: ExitCause::ProtocolError { message: long } }.bounded();
        let EndReason::CommandExited { cause: ExitCause::ProtocolError { message } } = nested else { panic!() };
        assert!(message.len() <= MAX_REASON_LEN);
        let short = EndReason::IoError { message: "reset".into() };
        assert_eq!(short.clone().bounded(), short);
    }

    /// The largest `events` reply the log can make, every stream event with
    /// the longest reason a streamlet can give, fits in one reply frame.
    #[test]
    fn the_fullest_event_log_fits_in_a_reply() {
        let reason = EndReason::CommandExited {
            cause: ExitCause::ProtocolError { message: "\u{1b}".repeat(10 * MAX_REASON_LEN) },
        }
        .bounded();
        let pool = "p".repeat(64);
        let ended = |seq| LoggedEvent {
            seq,
            at_ms: u64::MAX,
            event: Event::StreamEnded(StreamEnded {
                stream: StreamId(u64::MAX),
                pool: pool.clone(),
                worker: WorkerId(u64::MAX),
                reason: reason.clone(),
                bytes_in: u64::MAX,
                bytes_out: u64::MAX,
                bytes_exact: true,
            }),
        };
        let events = (0..2 * EVENT_LOG_LEN as u64).map(ended).collect();
        let reply =
            ServerMessage::Reply(Reply { id: 1, body: ReplyBody::Events(EventLog { events, following: false }) });
        for encoding in [crate::Encoding::Json, crate::Encoding::Postcard] {
            let frame = encoding.encode_frame(&reply).unwrap();
            assert!(frame.len() < crate::frame::MAX_REPLY_LEN as usize / 4, "{}", frame.len());
        }
    }
}
