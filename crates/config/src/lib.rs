//! The daemon's configuration, in two stages: the raw TOML as written
//! (unknown keys refused), then validated values the daemon can trust.
//!
//! Every error names the file, the key and the reason, so an operator can fix
//! it without reading code.
//!
//! `streamletd` reads it (at start, on reload and for `check-config`), and so
//! does `streamletctl simulate`, which needs none of the daemon: this crate
//! depends on the protocol, the sandbox's mount plan, placement and the
//! autoscaler, never on the daemon.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

mod access;
mod autoscale;
mod error;
mod handler;
pub mod listen;
mod monitor;
mod pool;
mod quota;
pub mod restart;
mod sandbox;
mod units;
pub mod upstream;

pub use access::{Access, Role};
pub use autoscale::Autoscale;
pub use error::{ConfigError, Problem};
pub use listen::Listen;
pub use monitor::{OnWorkerExit, DEFAULT_HEARTBEAT_TIMEOUT};
pub use pool::{
    Framing, PoolConfig, DEFAULT_STREAMS_PER_WORKER, DEFAULT_WORKERS, GEO_DISTANCE_PER_FULL_LOAD,
    MAX_STREAMS_PER_WORKER, MAX_WORKERS_PER_POOL, STREAMLET_OWN_FDS,
};
pub use quota::{QuotaConfig, RateRange};
pub use restart::RestartPolicy;
pub use sandbox::{check_socket_reach, Limits, Network, RunAs, SandboxConfig, AUTO_UIDS_SLICE};
use units::duration;
pub use upstream::Upstream;

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
    pub metrics: Option<MetricsListen>,
    pub pools: BTreeMap<String, Arc<PoolConfig>>,
}

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
    /// `None`: the daemon's default (systemd's `$STATE_DIRECTORY`, else a
    /// directory of its own under `/var/lib/streamlet` or
    /// `$XDG_STATE_HOME/streamlet`).
    pub state_dir: Option<PathBuf>,
    /// A control connection that sends nothing for this long, and holds
    /// nothing (no stream, no waiting open, no subscription), is closed.
    pub idle_timeout: Duration,
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
    pools: BTreeMap<String, pool::RawPool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: Option<String>,
}

/// Where the metrics are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsListen {
    Tcp(std::net::SocketAddr),
    Unix(std::path::PathBuf),
}

/// `[metrics] listen`: `"127.0.0.1:9464"` (loopback only) or
/// `"unix:/run/streamlet/metrics.sock"`.
fn metrics_listen(text: &str) -> Result<MetricsListen, String> {
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
            // (Some of the parser's refusals come without words: say what
            // is at the place.)
            let reason = match error::plain(inner.message()) {
                reason if reason.is_empty() => error::unreadable(text, inner.span().map_or(0, |s| s.start)),
                reason => reason,
            };
            let mut error = err(if key == "." { "" } else { &key }, reason);
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
        for (name, raw_pool) in raw.pools {
            let config = pool::pool(&name, raw_pool).map_err(|(key, reason)| err(&key, reason))?;
            pools.insert(name, Arc::new(config));
        }
        check_pools_against_socket(&pools, &sandbox, &access).map_err(|(key, reason)| err(&key, reason))?;
        check_listen_once(&pools).map_err(|(key, reason)| err(&key, reason))?;
        Ok(Self { source: source.to_owned(), daemon, sandbox, quota, access, metrics, pools })
    }
}

/// No place is listened on by two pools (nor the metrics' address, which
/// the daemon binds too).
fn check_listen_once(pools: &BTreeMap<String, Arc<PoolConfig>>) -> Result<(), (String, String)> {
    let mut seen: BTreeMap<&Listen, &str> = BTreeMap::new();
    for (name, pool) in pools {
        for place in &pool.listen {
            if let Some(other) = seen.insert(place, name) {
                return Err((
                    format!("pools.{name}.listen"),
                    format!("{place} is pool {other}'s already: each address or passed socket serves one pool"),
                ));
            }
        }
    }
    Ok(())
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
        for (key, reason) in pool::missing(name, pool) {
            add(key, reason);
        }
    }
    for (name, tenant) in &raw.tenants {
        if let Some((k, reason)) = quota::missing_in_tenant(tenant) {
            add(format!("tenants.{}.{k}", error::part(name)), reason.into());
        }
    }
    missing
}

#[cfg(test)]
mod tests;
