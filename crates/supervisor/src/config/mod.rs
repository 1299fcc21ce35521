//! The daemon's configuration, in two stages: the raw TOML as written
//! (unknown keys refused), then validated values the daemon can trust.
//!
//! Every error names the file, the key and the reason, so an operator can fix
//! it without reading code.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use streamlet_proto::worker::HandlerSpec;

use crate::restart::RestartPolicy;
use crate::upstream::Upstream;

mod access;
mod autoscale;
mod error;
mod handler;
mod monitor;
mod quota;
mod sandbox;
mod units;

pub use access::{Access, Role};
pub use autoscale::Autoscale;
pub use error::{ConfigError, Problem};
use handler::RawHandler;
pub use monitor::{OnWorkerExit, DEFAULT_HEARTBEAT_TIMEOUT};
pub use quota::{QuotaConfig, RateRange};
pub use sandbox::{check_socket_reach, Limits, Network, RunAs, SandboxConfig, AUTO_UIDS_SLICE};
use units::duration;

/// The configuration used when no `--config` is given.
pub const DEFAULT_CONFIG: &str = include_str!("default.toml");

/// The name shown for the embedded default in errors.
pub const EMBEDDED: &str = "<embedded default>";

#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from: a path, or [`EMBEDDED`].
    pub source: String,
    pub daemon: DaemonConfig,
    pub sandbox: SandboxConfig,
    pub quota: QuotaConfig,
    /// Who may do what on the control socket.
    pub access: Access,
    /// Where `/metrics` is served, if anywhere.
    pub metrics: Option<crate::metrics::MetricsListen>,
    pub pools: BTreeMap<String, Arc<PoolConfig>>,
}

/// Descriptors a streamlet holds besides its streams' (its channel, its
/// standard streams, its runtime's: about eight), with room to spare.
pub const STREAMLET_OWN_FDS: u64 = 16;

/// How long a control connection that holds nothing may stay silent.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub socket: Option<PathBuf>,
    /// The streamlet binary; `None`: `streamlet-worker` beside `streamletd`.
    pub worker_binary: Option<PathBuf>,
    /// How long streamlets get to exit at shutdown before they are killed.
    pub shutdown_timeout: Duration,
    /// How often streamlets report the byte counts of busy streams.
    pub stats_interval: Duration,
    /// Where state that outlives the daemon (the demand history) is kept;
    /// `None`: [`default_state_dir`](crate::state::default_state_dir).
    pub state_dir: Option<PathBuf>,
    /// A control connection that sends nothing for this long, and holds
    /// nothing (no stream, no waiting open, no subscription), is closed.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PoolConfig {
    pub name: String,
    pub handler: HandlerSpec,
    pub workers_min: u32,
    pub workers_max: u32,
    /// Streamlets with no stream kept ready (`workers.min_free`).
    pub min_free: u32,
    pub streams_per_worker: u32,
    /// How the pool grows and shrinks between min and max.
    pub autoscale: Autoscale,
    pub placement: PlacementKind,
    pub limits: Limits,
    pub network: Network,
    pub run_as: RunAs,
    /// The whole tree read-only in the streamlet's mount namespace (the
    /// default; `false` needs a `user`).
    pub readonly_root: bool,
    /// The pool's share of the host's egress, bytes per second.
    pub egress: Option<u64>,
    /// Whether a higher-priority stream may push out a lower-priority one.
    pub preempt: bool,
    /// The rate of streams that ask for none.
    pub default_rate: Option<RateRange>,
    /// Labels every streamlet of the pool carries (`region`, `zone`, ...).
    pub labels: BTreeMap<String, String>,
    /// Labels of single streamlets: the one in slot `i` carries entry
    /// `i mod len` over the pool's `labels`.
    pub worker_labels: Vec<BTreeMap<String, String>>,
    /// Labels `layered` placement prefers in a tie.
    pub prefer: BTreeMap<String, String>,
    /// What becomes of a dead streamlet's streams.
    pub on_worker_exit: OnWorkerExit,
    /// Keep one streamlet spawned and ready to take a dead one's place.
    pub spare: bool,
    /// For `relay`: the upstream streams go to, unless an open's `upstream`
    /// label names another of `upstream_allow`.
    pub upstream: Option<crate::upstream::Upstream>,
    pub upstream_allow: Vec<crate::upstream::Upstream>,
    /// Streamlets read from each client at most at the stream's max rate.
    pub ingress_limit: bool,
    /// A streamlet serves streams of one tenant at a time: streams of two
    /// tenants never share a streamlet (its memory, its uid, its /tmp).
    pub tenant_isolation: bool,
    /// A streamlet silent this long is killed as `hung`.
    pub heartbeat_timeout: Duration,
    /// Backoff and crash-loop breaker.
    pub restart: RestartPolicy,
}

impl PoolConfig {
    /// The pool's scaling rules, for the daemon and the simulator alike.
    pub fn rules(&self) -> streamlet_autoscale::Rules {
        streamlet_autoscale::Rules {
            min: self.workers_min,
            max: self.workers_max,
            min_free: self.min_free,
            streams_per_worker: self.streams_per_worker,
            lookahead: true,
            idle_grace_ms: self.autoscale.idle_grace.as_millis() as u64,
            mode: self.autoscale.mode,
            headroom: self.autoscale.headroom,
        }
    }

    /// The labels of the streamlet in `slot`.
    pub fn labels_of(&self, slot: usize) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        if !self.worker_labels.is_empty() {
            let own = &self.worker_labels[slot % self.worker_labels.len()];
            labels.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        labels
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementKind {
    LeastConnections,
    Layered,
    P2c,
    Geo,
    RoundRobin,
    Pack,
}

impl PlacementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LeastConnections => "least-connections",
            Self::Layered => "layered",
            Self::P2c => "p2c",
            Self::Geo => "geo",
            Self::RoundRobin => "round-robin",
            Self::Pack => "pack",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    daemon: RawDaemon,
    #[serde(default)]
    sandbox: sandbox::RawSandbox,
    #[serde(default)]
    capacity: quota::RawCapacity,
    #[serde(default)]
    tenants: BTreeMap<String, quota::RawTenant>,
    #[serde(default)]
    regions: quota::RawRegions,
    #[serde(default)]
    access: access::RawAccess,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    pools: BTreeMap<String, RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

/// `[metrics] listen`: `"127.0.0.1:9464"` (loopback only) or
/// `"unix:/run/streamlet/metrics.sock"`.
fn metrics_listen(text: &str) -> Result<crate::metrics::MetricsListen, String> {
    use crate::metrics::MetricsListen;
    if let Some(path) = text.strip_prefix("unix:") {
        let path = PathBuf::from(path);
        if !path.is_absolute() || path.as_os_str().len() > 107 {
            return Err(format!("{text:?}: give unix: and an absolute path of at most 107 bytes"));
        }
        return Ok(MetricsListen::Unix(path));
    }
    let addr: std::net::SocketAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an address: give IP:PORT like \"127.0.0.1:9464\" or unix:/path"))?;
    if !addr.ip().is_loopback() {
        return Err(format!(
            "{addr} is not a loopback address: metrics are served on loopback or a Unix socket only (put a proxy in front to publish them)"
        ));
    }
    Ok(MetricsListen::Tcp(addr))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    socket: Option<PathBuf>,
    worker_binary: Option<PathBuf>,
    shutdown_timeout: Option<String>,
    stats_interval: Option<String>,
    state_dir: Option<PathBuf>,
    idle_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    handler: Option<RawHandler>,
    #[serde(default)]
    workers: RawWorkers,
    #[serde(default = "default_streams_per_worker")]
    streams_per_worker: u32,
    autoscale: Option<autoscale::RawAutoscale>,
    #[serde(default = "default_placement")]
    placement: PlacementKind,
    limits: Option<sandbox::RawLimits>,
    #[serde(default)]
    network: Network,
    user: Option<String>,
    group: Option<String>,
    #[serde(default = "yes")]
    readonly_root: bool,
    egress: Option<String>,
    #[serde(default)]
    preempt: bool,
    default_rate: Option<quota::RawRate>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    worker_labels: Vec<BTreeMap<String, String>>,
    #[serde(default)]
    prefer: BTreeMap<String, String>,
    #[serde(default)]
    on_worker_exit: OnWorkerExit,
    #[serde(default)]
    framing: Framing,
    #[serde(default)]
    upstream_allow: Vec<String>,
    #[serde(default)]
    ingress_limit: bool,
    #[serde(default)]
    tenant_isolation: bool,
    #[serde(default = "end")]
    on_corrupt: streamlet_proto::worker::OnCorrupt,
    #[serde(default = "yes")]
    spare: bool,
    heartbeat_timeout: Option<String>,
    restart: Option<monitor::RawRestart>,
}

/// An `exec` command: a program given by absolute path (streamlets have no
/// `PATH` to search), outside what the sandbox hides, that exists and is
/// executable.
fn check_command(command: &[String]) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let Some(program) = command.first() else {
        return Err("is empty: give the program and its arguments, like [\"/bin/cat\"]".into());
    };
    if !program.starts_with('/') {
        return Err(format!("{program:?} is not an absolute path (streamlets search no PATH)"));
    }
    // As written and as resolved: a symlink elsewhere into /tmp is hidden too.
    let path = Path::new(program);
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    for candidate in [path, resolved.as_path()] {
        if let Some((mount, why)) = streamlet_sandbox::mounts::hidden(candidate) {
            return Err(format!(
                "{program} is under {mount}, which streamlets do not see as the host's ({why}): put the command elsewhere, like /usr/local/libexec"
            ));
        }
    }
    match std::fs::metadata(program) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(()),
        Ok(_) => Err(format!("{program} is not an executable file")),
        Err(e) => Err(format!("{program}: {e}")),
    }
}

/// A pool's `framing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Framing {
    /// Bytes as they come.
    #[default]
    None,
    /// Length, payload, CRC32C frames, each checked.
    Crc32c,
}

fn end() -> streamlet_proto::worker::OnCorrupt {
    streamlet_proto::worker::OnCorrupt::End
}

fn yes() -> bool {
    true
}

fn default_placement() -> PlacementKind {
    PlacementKind::LeastConnections
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    min: Option<u32>,
    max: Option<u32>,
    #[serde(default)]
    min_free: u32,
}

impl RawWorkers {
    /// `(min, max)`: [`DEFAULT_WORKERS`] each, or, when one is given, the
    /// other as near to it as it can be.
    fn bounds(&self) -> (u32, u32) {
        match (self.min, self.max) {
            (Some(min), Some(max)) => (min, max),
            (Some(min), None) => (min, min.max(DEFAULT_WORKERS)),
            (None, Some(max)) => (max.min(DEFAULT_WORKERS), max),
            (None, None) => (DEFAULT_WORKERS, DEFAULT_WORKERS),
        }
    }
}

/// A pool's `workers.min` and `workers.max` when it gives neither: two
/// streamlets, so one death never leaves the pool without a ready one.
pub const DEFAULT_WORKERS: u32 = 2;
/// A pool's `streams_per_worker` when it gives none.
pub const DEFAULT_STREAMS_PER_WORKER: u32 = 8;

fn default_streams_per_worker() -> u32 {
    DEFAULT_STREAMS_PER_WORKER
}

/// The most streamlets one pool may have.
pub const MAX_WORKERS_PER_POOL: u32 = 10_000;
/// The most streams one streamlet may serve.
pub const MAX_STREAMS_PER_WORKER: u32 = 65_536;

impl Config {
    /// The embedded default.
    pub fn embedded() -> Self {
        Self::parse(DEFAULT_CONFIG, EMBEDDED).expect("the embedded default configuration is valid")
    }

    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(&source, "", format!("cannot read the file: {e} (give the path of a TOML file)"))
        })?;
        Self::parse(&text, &source)
    }

    /// Parses and validates TOML text; `source` names it in errors, each of
    /// which has the line of its key.
    pub fn parse(text: &str, source: &str) -> Result<Self, ConfigError> {
        Self::resolve(text, source).map_err(|e| e.located(text))
    }

    fn resolve(text: &str, source: &str) -> Result<Self, ConfigError> {
        let err = |key: &str, reason: String| ConfigError::new(source, key, reason);
        let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|e| {
            let key = e.path().to_string();
            let inner = e.into_inner();
            let mut error = err(if key == "." { "" } else { &key }, error::plain(inner.message()));
            error.line = inner.span().map(|s| error::line_at(text, s.start));
            error
        })?;
        let missing = missing_keys(&raw);
        if !missing.is_empty() {
            let document = error::Document::parse(text);
            let located = missing.into_iter().map(|p| Problem { line: document.line(&p.key), ..p }).collect();
            if let Some(e) = ConfigError::of(source, located) {
                return Err(e);
            }
        }

        let daemon = DaemonConfig {
            socket: raw.daemon.socket,
            worker_binary: raw.daemon.worker_binary,
            shutdown_timeout: duration(raw.daemon.shutdown_timeout.as_deref(), Duration::from_secs(5))
                .map_err(|r| err("daemon.shutdown_timeout", r))?,
            stats_interval: duration(raw.daemon.stats_interval.as_deref(), Duration::from_secs(1))
                .map_err(|r| err("daemon.stats_interval", r))?,
            state_dir: raw.daemon.state_dir,
            idle_timeout: duration(raw.daemon.idle_timeout.as_deref(), DEFAULT_IDLE_TIMEOUT)
                .map_err(|r| err("daemon.idle_timeout", r))?,
        };
        if daemon.idle_timeout < Duration::from_secs(1) {
            return Err(err("daemon.idle_timeout", "must be at least 1s".into()));
        }
        if let Some(bin) = &daemon.worker_binary {
            if !bin.is_absolute() {
                return Err(err("daemon.worker_binary", format!("{} must be an absolute path", bin.display())));
            }
        }
        if daemon.state_dir.as_ref().is_some_and(|d| !d.is_absolute()) {
            return Err(err("daemon.state_dir", "must be an absolute path".into()));
        }
        for (key, path) in [
            ("daemon.socket", &daemon.socket),
            ("daemon.worker_binary", &daemon.worker_binary),
            ("daemon.state_dir", &daemon.state_dir),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().as_encoded_bytes().contains(&0)) {
                return Err(err(key, "a path cannot contain a NUL character".into()));
            }
        }
        if daemon.stats_interval.is_zero() {
            return Err(err("daemon.stats_interval", "must be more than 0".into()));
        }

        let sandbox = sandbox::sandbox(raw.sandbox).map_err(|(key, reason)| err(key, reason))?;
        let quota = quota::quota(raw.capacity, raw.tenants, raw.regions).map_err(|(key, reason)| err(&key, reason))?;
        let access = access::access(raw.access).map_err(|(key, reason)| err(&key, reason))?;
        let metrics =
            raw.metrics.listen.as_deref().map(metrics_listen).transpose().map_err(|r| err("metrics.listen", r))?;

        if raw.pools.is_empty() {
            return Err(err("pools", "no pool is configured: add a [pools.NAME] table".into()));
        }
        let mut pools = BTreeMap::new();
        for (name, pool) in raw.pools {
            let key = |k: &str| format!("pools.{name}.{k}");
            if !valid_pool_name(&name) {
                return Err(err(
                    &format!("pools.{name}"),
                    "a pool name is 1 to 64 characters of a-z, 0-9, '-' and '_'".into(),
                ));
            }
            let (workers_min, workers_max) = pool.workers.bounds();
            if workers_max == 0 || workers_max > MAX_WORKERS_PER_POOL {
                return Err(err(&key("workers.max"), format!("must be 1 to {MAX_WORKERS_PER_POOL}")));
            }
            if workers_min > workers_max {
                return Err(err(
                    &key("workers.min"),
                    format!("{workers_min} is more than workers.max ({workers_max}): lower min or raise max"),
                ));
            }
            if pool.workers.min_free > workers_max {
                return Err(err(
                    &key("workers.min_free"),
                    format!(
                        "{} is more than workers.max ({workers_max}): lower it or raise max",
                        pool.workers.min_free
                    ),
                ));
            }
            let autoscale = autoscale::autoscale(pool.autoscale).map_err(|(k, r)| err(&key(k), r))?;
            if pool.streams_per_worker == 0 || pool.streams_per_worker > MAX_STREAMS_PER_WORKER {
                return Err(err(&key("streams_per_worker"), format!("must be 1 to {MAX_STREAMS_PER_WORKER}")));
            }
            let raw_handler = pool.handler.ok_or_else(|| err(&key("handler"), handler::missing_handler()))?;
            let relay_upstream = match &raw_handler {
                RawHandler::Relay { upstream } => Some(
                    upstream.clone().ok_or_else(|| err(&key("handler.upstream"), handler::MISSING_UPSTREAM.into()))?,
                ),
                _ => None,
            };
            let handler = match (raw_handler, pool.framing) {
                (RawHandler::Echo, Framing::Crc32c) => HandlerSpec::FramedEcho { on_corrupt: pool.on_corrupt },
                (RawHandler::Relay { .. }, Framing::Crc32c) => HandlerSpec::Relay { framing: Some(pool.on_corrupt) },
                (_, Framing::Crc32c) => {
                    return Err(err(
                        &key("framing"),
                        "\"crc32c\" applies to the echo and relay handlers: remove it or write \"none\"".into(),
                    ));
                }
                (RawHandler::Echo, Framing::None) => HandlerSpec::Echo,
                (RawHandler::Relay { .. }, Framing::None) => HandlerSpec::Relay { framing: None },
                (RawHandler::Exec { command, direct }, Framing::None) => {
                    let command =
                        command.ok_or_else(|| err(&key("handler.command"), handler::MISSING_COMMAND.into()))?;
                    check_command(&command).map_err(|reason| err(&key("handler.command"), reason))?;
                    HandlerSpec::Exec { command, direct }
                }
            };
            let limits = sandbox::limits(pool.limits).map_err(|(k, reason)| err(&key(k), reason))?;
            // A streamlet holds a descriptor per stream, and more for some
            // handlers (a command's pipes, a relay's upstream): a pool that
            // fills its streamlets past their own limit would lose every
            // stream of a streamlet at once when it runs out.
            let per_stream: u64 = match &handler {
                HandlerSpec::Exec { .. } => 4,
                HandlerSpec::Relay { .. } => 2,
                HandlerSpec::Echo | HandlerSpec::FramedEcho { .. } => 1,
            };
            let needed = STREAMLET_OWN_FDS + u64::from(pool.streams_per_worker) * per_stream;
            if needed > limits.nofile {
                return Err(err(
                    &key("streams_per_worker"),
                    format!(
                        "{} streams of this handler need about {needed} descriptors in a streamlet, over its limits.nofile of {}: raise limits.nofile or lower streams_per_worker",
                        pool.streams_per_worker, limits.nofile
                    ),
                ));
            }
            let run_as =
                sandbox::run_as(pool.user.as_deref(), pool.group.as_deref()).map_err(|(k, r)| err(&key(k), r))?;
            if !pool.readonly_root && run_as == RunAs::Dynamic {
                return Err(err(
                    &key("readonly_root"),
                    "false needs a `user` for the pool: a uid of [sandbox] uids goes to another streamlet later, and the files this one could write on the host (a 0600 file, a set-uid binary in /run/lock) would still be that uid's".into(),
                ));
            }
            let egress =
                pool.egress.map(|e| quota::rate("egress", &e)).transpose().map_err(|(k, r)| err(&key(k), r))?;
            let default_rate = quota::rate_range(pool.default_rate).map_err(|(k, r)| err(&key(k), r))?;
            if pool.worker_labels.len() > workers_max as usize {
                return Err(err(
                    &key("worker_labels"),
                    format!(
                        "has {} entries but workers.max is {workers_max}: the extra ones would never be used; remove them or raise workers.max",
                        pool.worker_labels.len(),
                    ),
                ));
            }
            let upstream = match &relay_upstream {
                Some(text) => Some(Upstream::parse(text).map_err(|r| err(&key("handler.upstream"), r))?),
                None => None,
            };
            let mut upstream_allow = Vec::new();
            for (i, text) in pool.upstream_allow.iter().enumerate() {
                upstream_allow.push(Upstream::parse(text).map_err(|r| err(&key(&format!("upstream_allow[{i}]")), r))?);
            }
            if !upstream_allow.is_empty() && upstream.is_none() {
                return Err(err(
                    &key("upstream_allow"),
                    "applies to a relay handler only: remove it, or make the handler a relay".into(),
                ));
            }
            let heartbeat_timeout =
                monitor::heartbeat_timeout(pool.heartbeat_timeout.as_deref()).map_err(|(k, r)| err(&key(k), r))?;
            let restart = monitor::restart(pool.restart).map_err(|(k, r)| err(&key(k), r))?;
            let config = PoolConfig {
                name: name.clone(),
                handler,
                workers_min,
                workers_max,
                min_free: pool.workers.min_free,
                streams_per_worker: pool.streams_per_worker,
                autoscale,
                placement: pool.placement,
                limits,
                network: pool.network,
                run_as,
                readonly_root: pool.readonly_root,
                egress,
                preempt: pool.preempt,
                default_rate,
                labels: pool.labels,
                worker_labels: pool.worker_labels,
                prefer: pool.prefer,
                on_worker_exit: pool.on_worker_exit,
                spare: pool.spare,
                upstream,
                upstream_allow,
                ingress_limit: pool.ingress_limit,
                tenant_isolation: pool.tenant_isolation,
                heartbeat_timeout,
                restart,
            };
            pools.insert(name, Arc::new(config));
        }
        check_pools_against_socket(&pools, &sandbox, &access).map_err(|(key, reason)| err(&key, reason))?;
        Ok(Self { source: source.to_owned(), daemon, sandbox, quota, access, metrics, pools })
    }
}

/// No streamlet may reach the control socket: a pool's user or group must
/// not be the socket's owner (the daemon's user) or its group, and no uid
/// handed out from `[sandbox] uids` (each also the streamlet's gid) may be
/// the socket's group.
fn check_pools_against_socket(
    pools: &BTreeMap<String, Arc<PoolConfig>>,
    sandbox: &SandboxConfig,
    access: &Access,
) -> Result<(), (String, String)> {
    if let Some(group) = access.socket_group {
        let (first, last) = sandbox.uids;
        if (first..=last).contains(&group) {
            return Err((
                "access.socket_group".into(),
                format!("gid {group} is in [sandbox] uids ({first}-{last}): a streamlet given that id could reach the control socket"),
            ));
        }
    }
    // SAFETY: geteuid has no preconditions.
    let owner = unsafe { libc::geteuid() };
    for (name, pool) in pools {
        sandbox::check_socket_reach(pool.run_as, owner, access.socket_group)
            .map_err(|(key, reason)| (format!("pools.{name}.{key}"), reason))?;
    }
    Ok(())
}

/// Every key the file must have and lacks, with what to write: all of
/// them, so one edit can add them all.
fn missing_keys(raw: &RawConfig) -> Vec<Problem> {
    let mut missing = Vec::new();
    let mut add = |key: String, reason: String| missing.push(Problem { line: None, key, reason });
    for (name, pool) in &raw.pools {
        let key = |k: &str| format!("pools.{}.{k}", error::part(name));
        match &pool.handler {
            None => add(key("handler"), handler::missing_handler()),
            Some(RawHandler::Exec { command: None, .. }) => {
                add(key("handler.command"), handler::MISSING_COMMAND.into())
            }
            Some(RawHandler::Relay { upstream: None }) => {
                add(key("handler.upstream"), handler::MISSING_UPSTREAM.into())
            }
            Some(_) => {}
        }
        for (k, reason) in pool.default_rate.as_ref().map(quota::missing_in_rate).unwrap_or_default() {
            add(key(k), reason.into());
        }
    }
    for (name, tenant) in &raw.tenants {
        if let Some((k, reason)) = quota::missing_in_tenant(tenant) {
            add(format!("tenants.{}.{k}", error::part(name)), reason.into());
        }
    }
    missing
}

fn valid_pool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests;
