//! A pool's table, `[pools.NAME]`: its keys as written, then checked and
//! resolved into a [`PoolConfig`]; a key's error names it under the pool.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use streamlet_balance::policies::{PolicyKind, PolicyOptions};
use streamlet_balance::Placement;
use streamlet_proto::worker::{HandlerSpec, OnCorrupt};

use super::autoscale::Autoscale;
use super::handler::{self, RawHandler};
use super::listen::{self, Listen};
use super::monitor::OnWorkerExit;
use super::quota::RateRange;
use super::sandbox::{Limits, Network, RunAs};
use super::{autoscale, error, monitor, quota, sandbox};
use crate::restart::RestartPolicy;
use crate::upstream::Upstream;

/// A distance of this many units weighs, in `geo`'s score, as much as a
/// streamlet's whole capacity in use.
pub const GEO_DISTANCE_PER_FULL_LOAD: f64 = 100.0;

/// Descriptors a streamlet holds besides its streams' (its channel, its
/// standard streams, its runtime's: about eight), with room to spare.
pub const STREAMLET_OWN_FDS: u64 = 16;

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
    pub placement: PolicyKind,
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
    /// Where the daemon accepts the pool's clients itself (TCP), with no
    /// gateway: each connection is opened as a stream of `listen_tenant`.
    pub listen: Vec<Listen>,
    pub listen_tenant: String,
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

    /// The pool's placement policy, with what it needs from the
    /// configuration (the regions' distances, for `geo`).
    pub fn placement(&self, config: &super::Config) -> Box<dyn Placement> {
        let options = PolicyOptions {
            prefer: self.prefer.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            distances: config.quota.distances.iter().map(|(pair, d)| (pair.clone(), *d)).collect(),
            penalty_per_unit: 1.0 / GEO_DISTANCE_PER_FULL_LOAD,
            // A seed of the pool's name: the same choices on every run.
            seed: self.name.bytes().fold(0x9E37_79B9_7F4A_7C15u64, |h, b| h.rotate_left(5) ^ u64::from(b)),
        };
        self.placement.build(&options)
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    handler: Option<RawHandler>,
    #[serde(default)]
    workers: RawWorkers,
    #[serde(default = "default_streams_per_worker")]
    streams_per_worker: u32,
    autoscale: Option<autoscale::RawAutoscale>,
    #[serde(default)]
    placement: PolicyKind,
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
    on_corrupt: OnCorrupt,
    #[serde(default = "yes")]
    spare: bool,
    heartbeat_timeout: Option<String>,
    restart: Option<monitor::RawRestart>,
    #[serde(default)]
    listen: Vec<String>,
    listen_tenant: Option<String>,
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

fn end() -> OnCorrupt {
    OnCorrupt::End
}

fn yes() -> bool {
    true
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

/// `pools.NAME`, checked: every key of it valid, or the first that is not,
/// as `(its full key, why and what to write)`.
pub(super) fn pool(name: &str, raw: RawPool) -> Result<PoolConfig, (String, String)> {
    let key = |k: &str| format!("pools.{name}.{k}");
    let at = |(k, reason): (&str, String)| (key(k), reason);
    if !valid_pool_name(name) {
        return Err((format!("pools.{name}"), "a pool name is 1 to 64 characters of a-z, 0-9, '-' and '_'".into()));
    }
    let (workers_min, workers_max) = workers(&raw.workers).map_err(at)?;
    let autoscale = autoscale::autoscale(raw.autoscale).map_err(at)?;
    if raw.streams_per_worker == 0 || raw.streams_per_worker > MAX_STREAMS_PER_WORKER {
        return Err((key("streams_per_worker"), format!("must be 1 to {MAX_STREAMS_PER_WORKER}")));
    }
    let (handler, relay_upstream) = handler_spec(raw.handler, raw.framing, raw.on_corrupt).map_err(at)?;
    let limits = sandbox::limits(raw.limits).map_err(at)?;
    descriptors_fit(&handler, raw.streams_per_worker, limits.nofile).map_err(at)?;
    let run_as = sandbox::run_as(raw.user.as_deref(), raw.group.as_deref()).map_err(at)?;
    if !raw.readonly_root && run_as == RunAs::Dynamic {
        return Err((
            key("readonly_root"),
            "false needs a `user` for the pool: a uid of [sandbox] uids goes to another streamlet later, and the files this one could write on the host (a 0600 file, a set-uid binary in /run/lock) would still be that uid's".into(),
        ));
    }
    let egress = raw.egress.map(|e| quota::rate("egress", &e)).transpose().map_err(at)?;
    let default_rate = quota::rate_range(raw.default_rate).map_err(at)?;
    if raw.worker_labels.len() > workers_max as usize {
        return Err((
            key("worker_labels"),
            format!(
                "has {} entries but workers.max is {workers_max}: the extra ones would never be used; remove them or raise workers.max",
                raw.worker_labels.len(),
            ),
        ));
    }
    let (upstream, upstream_allow) =
        upstreams(relay_upstream.as_deref(), &raw.upstream_allow).map_err(|(k, r)| (key(&k), r))?;
    let heartbeat_timeout = monitor::heartbeat_timeout(raw.heartbeat_timeout.as_deref()).map_err(at)?;
    let restart = monitor::restart(raw.restart).map_err(at)?;
    let listen = listen::listen(&raw.listen).map_err(at)?;
    let listen_tenant = raw.listen_tenant.unwrap_or_else(|| streamlet_proto::DEFAULT_TENANT.to_owned());
    if listen_tenant.is_empty() || listen_tenant.len() > streamlet_proto::MAX_TENANT_LEN {
        return Err((key("listen_tenant"), format!("must be 1 to {} bytes", streamlet_proto::MAX_TENANT_LEN)));
    }
    Ok(PoolConfig {
        name: name.to_owned(),
        handler,
        workers_min,
        workers_max,
        min_free: raw.workers.min_free,
        streams_per_worker: raw.streams_per_worker,
        autoscale,
        placement: raw.placement,
        limits,
        network: raw.network,
        run_as,
        readonly_root: raw.readonly_root,
        egress,
        preempt: raw.preempt,
        default_rate,
        labels: raw.labels,
        worker_labels: raw.worker_labels,
        prefer: raw.prefer,
        on_worker_exit: raw.on_worker_exit,
        spare: raw.spare,
        upstream,
        upstream_allow,
        ingress_limit: raw.ingress_limit,
        tenant_isolation: raw.tenant_isolation,
        heartbeat_timeout,
        restart,
        listen,
        listen_tenant,
    })
}

/// The keys `pools.NAME` must have and lacks, each with what to write.
pub(super) fn missing(name: &str, raw: &RawPool) -> Vec<(String, String)> {
    let key = |k: &str| format!("pools.{}.{k}", error::part(name));
    let mut missing = Vec::new();
    match &raw.handler {
        None => missing.push((key("handler"), handler::missing_handler())),
        Some(RawHandler::Exec { command: None, .. }) => {
            missing.push((key("handler.command"), handler::MISSING_COMMAND.into()));
        }
        Some(RawHandler::Relay { upstream: None }) => {
            missing.push((key("handler.upstream"), handler::MISSING_UPSTREAM.into()));
        }
        Some(_) => {}
    }
    for (k, reason) in raw.default_rate.as_ref().map(quota::missing_in_rate).unwrap_or_default() {
        missing.push((key(k), reason.into()));
    }
    missing
}

/// `workers`: `(min, max)`, within bounds, with `min_free` no more than max.
fn workers(raw: &RawWorkers) -> Result<(u32, u32), (&'static str, String)> {
    let (min, max) = raw.bounds();
    if max == 0 || max > MAX_WORKERS_PER_POOL {
        return Err(("workers.max", format!("must be 1 to {MAX_WORKERS_PER_POOL}")));
    }
    if min > max {
        return Err(("workers.min", format!("{min} is more than workers.max ({max}): lower min or raise max")));
    }
    if raw.min_free > max {
        return Err((
            "workers.min_free",
            format!("{} is more than workers.max ({max}): lower it or raise max", raw.min_free),
        ));
    }
    Ok((min, max))
}

/// The handler with its framing, and a relay's upstream as written.
fn handler_spec(
    raw: Option<RawHandler>,
    framing: Framing,
    on_corrupt: OnCorrupt,
) -> Result<(HandlerSpec, Option<String>), (&'static str, String)> {
    let raw = raw.ok_or_else(|| ("handler", handler::missing_handler()))?;
    let relay_upstream = match &raw {
        RawHandler::Relay { upstream } => {
            Some(upstream.clone().ok_or_else(|| ("handler.upstream", handler::MISSING_UPSTREAM.to_owned()))?)
        }
        _ => None,
    };
    let framing = match framing {
        Framing::None => None,
        Framing::Crc32c => Some(on_corrupt),
    };
    let spec = match (raw, framing) {
        (RawHandler::Echo, framing) => HandlerSpec::Echo { framing },
        (RawHandler::Relay { .. }, framing) => HandlerSpec::Relay { framing },
        (RawHandler::Exec { .. }, Some(_)) => {
            return Err((
                "framing",
                "\"crc32c\" applies to the echo and relay handlers: remove it or write \"none\"".into(),
            ));
        }
        (RawHandler::Exec { command, direct }, None) => {
            let command = command.ok_or_else(|| ("handler.command", handler::MISSING_COMMAND.to_owned()))?;
            check_command(&command).map_err(|reason| ("handler.command", reason))?;
            HandlerSpec::Exec { command, direct }
        }
    };
    Ok((spec, relay_upstream))
}

/// A streamlet holds a descriptor per stream, and more for some handlers
/// (a command's pipes, a relay's upstream): a pool that fills its
/// streamlets past their own limit would lose every stream of a streamlet
/// at once when it runs out.
fn descriptors_fit(handler: &HandlerSpec, streams: u32, nofile: u64) -> Result<(), (&'static str, String)> {
    let per_stream: u64 = match handler {
        HandlerSpec::Exec { .. } => 4,
        HandlerSpec::Relay { .. } => 2,
        HandlerSpec::Echo { .. } => 1,
    };
    let needed = STREAMLET_OWN_FDS + u64::from(streams) * per_stream;
    if needed > nofile {
        return Err((
            "streams_per_worker",
            format!(
                "{streams} streams of this handler need about {needed} descriptors in a streamlet, over its limits.nofile of {nofile}: raise limits.nofile or lower streams_per_worker"
            ),
        ));
    }
    Ok(())
}

/// A relay's upstream and `upstream_allow`, parsed; the allow-list is for
/// relays only. Keys are under the pool.
fn upstreams(relay: Option<&str>, allow: &[String]) -> Result<(Option<Upstream>, Vec<Upstream>), (String, String)> {
    let upstream = relay.map(Upstream::parse).transpose().map_err(|r| ("handler.upstream".to_owned(), r))?;
    let mut upstream_allow = Vec::new();
    for (i, text) in allow.iter().enumerate() {
        upstream_allow.push(Upstream::parse(text).map_err(|r| (format!("upstream_allow[{i}]"), r))?);
    }
    if !upstream_allow.is_empty() && upstream.is_none() {
        return Err((
            "upstream_allow".to_owned(),
            "applies to a relay handler only: remove it, or make the handler a relay".into(),
        ));
    }
    Ok((upstream, upstream_allow))
}

fn valid_pool_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}
