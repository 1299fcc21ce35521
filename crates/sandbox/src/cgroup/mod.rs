//! cgroups: one directory per streamlet, with its limits, its accounting, and
//! a pre-opened `cgroup.procs` that the child writes itself into between fork
//! and exec (so there is no moment in which it runs unlimited).
//!
//! Two managers sit behind [`CgroupManager`]: [`v1::V1`] (one hierarchy per
//! controller, `<hierarchy>/<base>/<pool>/<id>` in each of cpu, cpuacct,
//! memory and pids) and [`v2::V2`] (the unified tree delegated to the daemon:
//! the daemon in `supervisor/`, each streamlet in `workers/<pool>/<id>`, no
//! process in an inner node). Both are thin layers of our own rather than
//! cgroups-rs, whose v2 code writes the root's `cgroup.subtree_control` and
//! ignores failed writes; here every write is checked and none leaves the
//! subtree the daemon owns. Both take root paths, so tests run them against a
//! temporary directory shaped like cgroupfs.

pub mod fs;
pub mod v1;
pub mod v2;

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

/// A CPU limit: `quota_us` of CPU time in every `period_us`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuLimit {
    pub quota_us: u64,
    pub period_us: u64,
}

impl CpuLimit {
    /// The usual period.
    pub const PERIOD_US: u64 = 100_000;

    /// `cores` of CPU ("0.5" is half a core): quota over a 100 ms period.
    pub fn from_cores(cores: f64) -> Self {
        let quota_us = (cores * Self::PERIOD_US as f64).round().max(1000.0) as u64;
        Self { quota_us, period_us: Self::PERIOD_US }
    }
}

/// What a streamlet may use. `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub cpu: Option<CpuLimit>,
    /// Bytes of memory; swap is turned off for the cgroup where the kernel allows.
    pub memory: Option<u64>,
    pub pids: Option<u64>,
}

/// What a streamlet has used, read from its cgroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Accounting {
    pub cpu_usage_us: u64,
    pub cpu_throttled_us: u64,
    pub memory_current: u64,
    pub memory_peak: u64,
    /// Processes the OOM killer killed in this cgroup.
    pub oom_kills: u64,
    pub pids_current: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
}

impl fmt::Display for CgroupVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V1 => "cgroup v1",
            Self::V2 => "cgroup v2",
        })
    }
}

/// One streamlet's cgroup: its directories (one per v1 hierarchy, one on v2)
/// and their `cgroup.procs`, opened for writing before the fork.
#[derive(Debug)]
pub struct WorkerCgroup {
    pub dirs: Vec<PathBuf>,
    procs: Vec<OwnedFd>,
}

impl WorkerCgroup {
    pub fn new(dirs: Vec<PathBuf>, procs: Vec<OwnedFd>) -> Self {
        Self { dirs, procs }
    }

    /// The pre-opened `cgroup.procs` descriptors, for the child to write
    /// `"0"` (itself) into before it execs. Valid while `self` lives.
    pub fn procs_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(AsRawFd::as_raw_fd).collect()
    }

    /// Closes the pre-opened descriptors (after the spawn they are not needed).
    pub fn close_procs(&mut self) {
        self.procs.clear();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot write {value:?} to {path}: {source}")]
    Write { path: PathBuf, value: String, source: io::Error },
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot create cgroup {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot remove cgroup {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("{path}: cannot parse {content:?}")]
    Parse { path: PathBuf, content: String },
    #[error("{0}")]
    Layout(String),
}

/// What the daemon asks of a cgroup tree.
pub trait CgroupManager: Send + Sync + fmt::Debug {
    fn version(&self) -> CgroupVersion;

    /// Where streamlets' cgroups go (one path per hierarchy), for messages.
    fn describe(&self) -> String;

    /// Makes the layout ready: kills and removes any streamlet subtree left by
    /// an earlier run, creates the tree, and on v2 moves the daemon into its
    /// `supervisor/` leaf and enables the controllers below it.
    fn prepare(&self) -> Result<(), CgroupError>;

    /// Creates streamlet `worker`'s cgroup in `pool` with `limits`.
    fn create(&self, pool: &str, worker: u64, limits: &Limits) -> Result<WorkerCgroup, CgroupError>;

    /// Applies new limits to a live cgroup.
    fn update(&self, cgroup: &WorkerCgroup, limits: &Limits) -> Result<(), CgroupError>;

    /// What the streamlet has used so far.
    fn accounting(&self, cgroup: &WorkerCgroup) -> Result<Accounting, CgroupError>;

    /// Kills whatever still runs in the cgroup and removes it (and its pool's
    /// directory when that is empty).
    fn remove(&self, cgroup: &WorkerCgroup) -> Result<(), CgroupError>;

    /// At the daemon's exit, after its streamlets are gone: removes the
    /// streamlets' part of the tree.
    fn teardown(&self) -> Result<(), CgroupError> {
        Ok(())
    }
}
