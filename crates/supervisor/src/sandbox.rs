//! The daemon's side of the sandbox: what this host lets it do, the cgroup
//! tree, and a [`ChildPlan`] per streamlet.
//!
//! At start the daemon probes what it can have (root for namespaces and a
//! run-as user, a writable cgroup tree for limits) and says exactly what is
//! missing: with `[sandbox] required = true` it then refuses to start, with
//! `false` it runs with what it has and warns, on every start.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use streamlet_proto::{ResourceUsage, WorkerId};
use streamlet_sandbox::cgroup::v1::V1;
use streamlet_sandbox::cgroup::v2::V2;
use streamlet_sandbox::cgroup::{CgroupError, CgroupManager, CpuLimit, Limits, WorkerCgroup};
use streamlet_sandbox::mounts::{MountPlan, View};
use streamlet_sandbox::plan::{empty_network_namespace, last_capability, ChildPlan};
use streamlet_sandbox::seccomp::{self, BpfProgram};

use crate::config::{Config, Network, PoolConfig, RunAs};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{}", missing::refusal(.0))]
    Incomplete(Vec<Missing>),
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    #[error("no free uid in the range {0}-{1}: raise [sandbox] uids or lower the number of streamlets")]
    NoUid(u32, u32),
    #[error("cannot make an empty network namespace: {0}")]
    Network(std::io::Error),
    #[error(transparent)]
    Uids(#[from] streamlet_sandbox::uids::UidError),
    #[error("pool {pool:?} could reach the control socket {socket}: {why}")]
    ReachesSocket { pool: String, socket: PathBuf, why: String },
}

/// The two seccomp programs a pool may get.
#[derive(Debug)]
struct Programs {
    no_network: Arc<BpfProgram>,
    host_network: Arc<BpfProgram>,
}

impl Programs {
    fn build() -> Result<Self, seccomp::SeccompError> {
        Ok(Self {
            no_network: Arc::new(seccomp::build(seccomp::Network::None)?),
            host_network: Arc::new(seccomp::build(seccomp::Network::Host)?),
        })
    }

    fn for_network(&self, network: Network) -> Arc<BpfProgram> {
        match network {
            Network::None => self.no_network.clone(),
            Network::Host => self.host_network.clone(),
        }
    }
}

mod missing;
mod uids;
pub use missing::Missing;
use uids::Uids;

/// What a streamlet was confined with, to undo when it ends.
#[derive(Debug, Default)]
pub struct Confinement {
    pub cgroup: Option<Arc<WorkerCgroup>>,
    pub uid: Option<u32>,
}

#[derive(Debug)]
pub struct Sandbox {
    cgroups: Option<Box<dyn CgroupManager>>,
    /// Root: namespaces, mounts, a run-as user, the bounding set.
    privileged: bool,
    last_cap: u32,
    missing: Vec<Missing>,
    /// The uids this daemon hands out (leased in [`prepare`](Self::prepare)).
    uids: Uids,
    /// The seccomp programs, built once: for `network = "none"` and for
    /// `"host"` (which may make sockets of any family).
    seccomp: Option<Programs>,
    /// The configured control socket (its hash picks the uid slice tried
    /// first), and the pools that name a user: checked against the socket's
    /// owner and group once it exists (a socket systemd made has the group
    /// its unit names, which the config cannot know).
    socket: PathBuf,
    fixed_users: Vec<(String, RunAs)>,
    /// Each pool's empty network namespace, made on first use.
    networks: Mutex<HashMap<String, Arc<OwnedFd>>>,
}

impl Sandbox {
    /// Finds out what this host allows; nothing is changed yet.
    pub fn probe(config: &Config, socket: &Path) -> Self {
        let mut missing = Vec::new();
        // SAFETY: geteuid has no preconditions.
        let privileged = unsafe { libc::geteuid() } == 0;
        if !privileged {
            missing.push(Missing::Root);
        }
        let seccomp = match Programs::build() {
            Ok(programs) => Some(programs),
            Err(e) => {
                missing.push(Missing::Seccomp(e.to_string()));
                None
            }
        };
        let cgroups = match cgroup_manager(config, socket) {
            Ok(manager) => Some(manager),
            Err(reason) => {
                missing.push(Missing::Cgroups(reason));
                None
            }
        };
        Self {
            cgroups,
            privileged,
            last_cap: last_capability(),
            missing,
            uids: Uids::new(config.sandbox.uids, config.sandbox.uids_given),
            seccomp,
            socket: socket.to_owned(),
            fixed_users: config
                .pools
                .values()
                .filter(|pool| pool.run_as != RunAs::Dynamic)
                .map(|pool| (pool.name.clone(), pool.run_as))
                .collect(),
            networks: Mutex::new(HashMap::new()),
        }
    }

    /// What is missing, with how to get each; empty when the sandbox is whole.
    pub fn missing(&self) -> &[Missing] {
        &self.missing
    }

    /// One line for the start-up log.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        parts.push(self.cgroups.as_ref().map_or("no cgroups".to_owned(), |c| c.describe()));
        if self.privileged {
            parts.push(format!(
                "namespaces (pid included), private /tmp and /dev, a uid each from {}-{} (unless a pool names a user)",
                self.uids.range().0,
                self.uids.range().1
            ));
        }
        parts.push("no capabilities, no_new_privs".to_owned());
        if self.seccomp.is_some() {
            parts.push(format!("seccomp ({} rules)", seccomp::POLICY.len()));
        }
        parts.join("; ")
    }

    /// Makes the cgroup tree ready (after the socket is bound: only then is
    /// this the only daemon of its name, free to kill what an earlier run
    /// left). Without `required`, a tree that cannot be prepared is dropped
    /// with a warning.
    pub fn prepare(&mut self, socket: &Path, required: bool) -> Result<(), SandboxError> {
        self.check_socket_reach(socket)?;
        if self.privileged {
            self.uids.lease(Path::new(streamlet_sandbox::uids::REGISTRY), &self.socket)?;
        }
        let Some(manager) = &self.cgroups else { return Ok(()) };
        if let Err(e) = manager.prepare() {
            let part = Missing::Cgroups(e.to_string());
            if required {
                return Err(SandboxError::Incomplete(vec![part]));
            }
            tracing::warn!("sandbox incomplete: {part}");
            self.missing.push(part);
            self.cgroups = None;
        }
        Ok(())
    }

    /// Refuses a pool whose user or group could connect to the control
    /// socket as it is on disk (its owner, or its group with mode 0660):
    /// `socket` is the one the daemon listens on, bound or passed by systemd.
    fn check_socket_reach(&self, socket: &Path) -> Result<(), SandboxError> {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let Ok(meta) = std::fs::metadata(socket) else { return Ok(()) };
        if !meta.file_type().is_socket() {
            return Ok(());
        }
        for (pool, run_as) in &self.fixed_users {
            crate::config::check_socket_reach(*run_as, meta.uid(), Some(meta.gid())).map_err(|(_, why)| {
                SandboxError::ReachesSocket { pool: pool.clone(), socket: socket.to_owned(), why }
            })?;
        }
        Ok(())
    }

    /// The cgroup and plan for a new streamlet. The plan refers to the
    /// cgroup's pre-opened descriptors: keep the cgroup until the spawn is done.
    pub fn plan(
        &self,
        pool: &PoolConfig,
        worker: WorkerId,
    ) -> Result<(ChildPlan, Option<WorkerCgroup>, Option<u32>), SandboxError> {
        // Network and uid first: if the cgroup cannot be made, only the uid
        // needs giving back.
        let mut namespaces = 0;
        let mut network = None;
        if self.privileged {
            // Always a mount namespace: private temporary directories.
            namespaces |= libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNS;
            if pool.network == Network::None {
                network = Some(self.pool_network(&pool.name)?);
            }
        }
        let (run_as, uid) = match (self.privileged, pool.run_as) {
            (false, _) => (None, None),
            (true, RunAs::User { uid, gid }) => (Some((uid, gid)), None),
            (true, RunAs::Dynamic) => {
                let (first, last) = self.uids.range();
                let uid = self.uids.allocate().ok_or(SandboxError::NoUid(first, last))?;
                (Some((uid, uid)), Some(uid))
            }
        };
        let cgroup = match &self.cgroups {
            Some(manager) => match manager.create(&pool.name, worker.0, &limits(pool)) {
                Ok(cgroup) => Some(cgroup),
                Err(e) => {
                    if let Some(uid) = uid {
                        self.uids.free(uid);
                    }
                    return Err(e.into());
                }
            },
            None => None,
        };
        let hard = |resource| {
            let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            // SAFETY: getrlimit writes one rlimit.
            unsafe { libc::getrlimit(resource, &mut limit) };
            limit.rlim_max
        };
        // Never above the daemon's own hard limits (raising needs a capability).
        let clamp = |resource, value: u64| (resource, value.min(hard(resource)));
        let limits = &pool.limits;
        let plan = ChildPlan {
            cgroup_procs: cgroup.as_ref().map(WorkerCgroup::procs_fds).unwrap_or_default(),
            namespaces,
            join_network: network.as_ref().map(|fd| fd.as_raw_fd()),
            // The streamlet as the init of a pid namespace of its own: what it
            // starts dies with it, and nothing it starts can stop or kill it.
            pid_namespace: self.privileged,
            mounts: if self.privileged {
                MountPlan::new(View { readonly_root: pool.readonly_root, own_proc: true })
            } else {
                MountPlan::none()
            },
            rlimits: vec![
                clamp(libc::RLIMIT_NOFILE, limits.nofile),
                clamp(libc::RLIMIT_CORE, limits.core),
                clamp(libc::RLIMIT_FSIZE, limits.fsize.unwrap_or(libc::RLIM_INFINITY)),
            ],
            drop_bounding_up_to: self.privileged.then_some(self.last_cap),
            run_as,
            seccomp: self.seccomp.as_ref().map(|programs| programs.for_network(pool.network)),
        };
        Ok((plan, cgroup, uid))
    }

    /// The pool's empty network namespace. Its streamlets share it: its only
    /// interface, loopback, is down and they have no capability to raise it,
    /// so they reach nothing over IP, one another included. Making one per
    /// streamlet would cost about 0.35 ms of every spawn.
    fn pool_network(&self, pool: &str) -> Result<Arc<OwnedFd>, SandboxError> {
        let mut networks = self.networks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fd) = networks.get(pool) {
            return Ok(fd.clone());
        }
        let fd = Arc::new(empty_network_namespace().map_err(SandboxError::Network)?);
        networks.insert(pool.to_owned(), fd.clone());
        Ok(fd)
    }

    /// At exit, after every streamlet is reaped: removes the streamlets' part
    /// of the cgroup tree.
    pub fn teardown(&self) {
        if let Some(manager) = &self.cgroups {
            if let Err(e) = manager.teardown() {
                tracing::warn!(error = %e, "cannot remove the streamlets' cgroups");
            }
        }
    }

    /// What a streamlet has used; `None` without cgroups or on a read error.
    pub fn usage(&self, cgroup: &WorkerCgroup) -> Option<ResourceUsage> {
        let manager = self.cgroups.as_ref()?;
        match manager.accounting(cgroup) {
            Ok(a) => Some(ResourceUsage {
                cpu_usage_us: a.cpu_usage_us,
                cpu_throttled_us: a.cpu_throttled_us,
                memory_current: a.memory_current,
                memory_peak: a.memory_peak,
                oom_kills: a.oom_kills,
                pids: a.pids_current,
            }),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read a streamlet's accounting");
                None
            }
        }
    }

    /// Writes `pool`'s limits to a live streamlet's cgroup (a reload).
    pub fn update_limits(&self, cgroup: &WorkerCgroup, pool: &PoolConfig) -> Result<(), String> {
        match &self.cgroups {
            Some(manager) => manager.update(cgroup, &limits(pool)).map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Undoes a confinement: kills what is left in the cgroup and removes it,
    /// and frees the uid. Blocking file IO: run it off the daemon's thread.
    pub fn release(&self, confinement: Confinement) {
        let mut clean = true;
        if let (Some(manager), Some(cgroup)) = (&self.cgroups, confinement.cgroup) {
            if let Err(e) = manager.remove(&cgroup) {
                tracing::warn!(error = %e, "cannot remove a streamlet's cgroup");
                clean = false;
            }
        }
        match confinement.uid {
            Some(uid) if clean => self.uids.free(uid),
            // Something of the streamlet's may still run under it: never hand
            // that uid out again.
            Some(uid) => tracing::warn!(uid, "quarantining a uid whose streamlet's cgroup could not be removed"),
            None => {}
        }
    }
}

fn limits(pool: &PoolConfig) -> Limits {
    Limits { cpu: pool.limits.cpu_cores.map(CpuLimit::from_cores), memory: pool.limits.memory, pids: pool.limits.pids }
}

/// The v1 or v2 manager for this host, or why there is none.
fn cgroup_manager(config: &Config, socket: &Path) -> Result<Box<dyn CgroupManager>, String> {
    let own = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let v1 = own.lines().any(|l| l.split(':').nth(1).is_some_and(|c| c.split(',').any(|c| c == "memory")));
    let manager: Box<dyn CgroupManager> = if v1 {
        let base = config.sandbox.cgroup_root.clone().unwrap_or_else(|| default_v1_base(socket));
        let v1 = V1::discover(&base).map_err(|e| e.to_string())?;
        for h in v1.hierarchies() {
            let parent = h.base.parent().unwrap_or(&h.base);
            writable(parent)?;
        }
        Box::new(v1)
    } else {
        let root = match &config.sandbox.cgroup_root {
            Some(root) => PathBuf::from(root),
            None => V2::find_root(&own, Path::new("/sys/fs/cgroup")).map_err(|e| e.to_string())?,
        };
        writable(&root)?;
        Box::new(V2::new(root))
    };
    Ok(manager)
}

fn writable(dir: &Path) -> Result<(), String> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(|_| format!("{dir:?}: bad path"))?;
    // SAFETY: access(2) on a NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
        return Err(format!(
            "cgroup directory {} is not writable ({})",
            dir.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn default_v1_base(socket: &Path) -> String {
    crate::instance::name(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_base_names_are_stable_and_distinct_per_socket() {
        assert_eq!(default_v1_base(Path::new(crate::instance::SYSTEM_SOCKET)), "streamlet");
        let a = default_v1_base(Path::new("/tmp/a.sock"));
        assert_eq!(a, default_v1_base(Path::new("/tmp/a.sock")));
        assert_ne!(a, default_v1_base(Path::new("/tmp/b.sock")));
        assert!(a.starts_with("streamlet-") && a.len() == "streamlet-".len() + 8, "{a}");
    }
}
