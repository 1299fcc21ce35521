//! cgroup v2: the unified tree, in the subtree delegated to the daemon.
//!
//! ```text
//! <root>/                      the daemon's cgroup (systemd: Delegate=yes)
//! ├── cgroup.subtree_control   +cpu +memory +pids
//! ├── supervisor/              the daemon itself, a leaf
//! └── workers/                 +cpu +memory +pids
//!     └── <pool>/              +cpu +memory +pids
//!         └── <id>/            one streamlet: cpu.max, memory.max, memory.swap.max, pids.max
//! ```
//!
//! The kernel's no-internal-process rule: a cgroup that holds processes cannot
//! enable controllers for its children, and a cgroup with controllers enabled
//! for its children cannot take processes. So [`CgroupManager::prepare`] first
//! moves every process out of `<root>` into `supervisor/`, then enables the
//! controllers; processes only ever live in `supervisor/` and in the `<id>/`
//! leaves. Nothing above `<root>` is ever written, and every failed write is
//! returned.
//!
//! Creating and removing directories, writing control files and killing
//! processes go through [`Tree`]; reads go straight to the files. Tests use a
//! fake [`Tree`] over a temporary directory that behaves like cgroupfs.

use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::{fs, Accounting, CgroupError, CgroupManager, CgroupVersion, CpuLimit, Limits, WorkerCgroup};

/// The controllers every streamlet's cgroup gets.
const CONTROLLERS: [&str; 3] = ["cpu", "memory", "pids"];
/// What enables [`CONTROLLERS`] in a `cgroup.subtree_control`.
const ENABLE: &str = "+cpu +memory +pids";
const SUPERVISOR: &str = "supervisor";
const WORKERS: &str = "workers";
/// How long the processes of a cgroup may take to die after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(2);
/// How many times `prepare` moves the processes it finds in the root before
/// it gives up on processes that keep appearing there.
const MOVE_ROUNDS: usize = 10;

/// The operations that change a cgroup tree.
pub trait Tree: Send + Sync + fmt::Debug {
    /// Creates the cgroup `path`; one that exists already is fine.
    fn mkdir(&self, path: &Path) -> Result<(), CgroupError>;
    /// Removes the cgroup `path`, which has no children; one that is gone
    /// already is fine. Waits briefly while the kernel still counts processes
    /// that are dying.
    fn rmdir(&self, path: &Path) -> Result<(), CgroupError>;
    /// Writes `value` to the existing control file `path`.
    fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError>;
    /// Sends SIGKILL to `pid`; one that has exited already is fine.
    fn kill(&self, pid: i32) -> Result<(), CgroupError>;
}

/// The kernel's cgroup file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealTree;

impl Tree for RealTree {
    fn mkdir(&self, path: &Path) -> Result<(), CgroupError> {
        fs::mkdir(path)
    }

    fn rmdir(&self, path: &Path) -> Result<(), CgroupError> {
        fs::rmdir(path)
    }

    fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError> {
        fs::write(path, value)
    }

    fn kill(&self, pid: i32) -> Result<(), CgroupError> {
        // kill(2) with 0 or a negative pid signals whole process groups.
        if pid <= 0 {
            return Err(CgroupError::Layout(format!("refusing to kill pid {pid}")));
        }
        // SAFETY: kill(2) takes no pointers; `pid` is a single positive pid.
        if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
            return Ok(());
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            e => Err(CgroupError::Layout(format!("cannot kill pid {pid}: {e}"))),
        }
    }
}

/// The cgroup v2 manager. See the module docs for the layout.
#[derive(Debug)]
pub struct V2 {
    root: PathBuf,
    tree: Box<dyn Tree>,
    /// Held while a pool's directory is created or removed, so that no
    /// streamlet's cgroup is made in a pool directory that is being removed.
    pools: Mutex<()>,
}

impl V2 {
    /// A manager for the delegated cgroup `root` on the real cgroup file system.
    pub fn new(root: PathBuf) -> Self {
        Self::with_tree(root, Box::new(RealTree))
    }

    /// A manager for `root` that changes the tree through `tree`.
    pub fn with_tree(root: PathBuf, tree: Box<dyn Tree>) -> Self {
        Self { root, tree, pools: Mutex::new(()) }
    }

    /// The daemon's delegated cgroup.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The daemon's delegated cgroup, from the text of `/proc/self/cgroup`
    /// (its `0::/path` line) and the mount point of the cgroup2 file system.
    /// A daemon already in a leaf named `supervisor` (started again after an
    /// earlier run) owns that leaf's parent.
    pub fn find_root(proc_self_cgroup: &str, mount: &Path) -> Result<PathBuf, CgroupError> {
        let layout = |why: String| CgroupError::Layout(why);
        let path = proc_self_cgroup.lines().find_map(|line| line.strip_prefix("0::")).ok_or_else(|| {
            layout("/proc/self/cgroup has no cgroup v2 entry (a `0::` line): is the unified hierarchy mounted?".into())
        })?;
        if path.ends_with(" (deleted)") || !path.starts_with('/') {
            return Err(layout(format!("/proc/self/cgroup: unusable cgroup v2 path {path:?}")));
        }
        let mut parts = Vec::new();
        for component in Path::new(path).components() {
            match component {
                Component::RootDir => {}
                Component::Normal(part) => parts.push(part),
                _ => return Err(layout(format!("/proc/self/cgroup: unusable cgroup v2 path {path:?}"))),
            }
        }
        if parts.last().is_some_and(|last| *last == SUPERVISOR) {
            parts.pop();
        }
        if parts.is_empty() {
            return Err(layout(format!(
                "the daemon runs in the root cgroup of {}: run it as a systemd service with Delegate=yes \
                 or set sandbox.cgroup_root to a cgroup delegated to it",
                mount.display()
            )));
        }
        Ok(parts.into_iter().fold(mount.to_owned(), |dir, part| dir.join(part)))
    }

    fn workers(&self) -> PathBuf {
        self.root.join(WORKERS)
    }

    fn pool_dir(&self, pool: &str) -> Result<PathBuf, CgroupError> {
        if !valid_pool(pool) {
            return Err(CgroupError::Layout(format!("pool name {pool:?} cannot name a cgroup directory")));
        }
        Ok(self.workers().join(pool))
    }

    /// The directory of a streamlet's cgroup made by [`CgroupManager::create`];
    /// anything else (the supervisor's leaf, a path elsewhere) is refused.
    fn worker_dir<'a>(&self, cgroup: &'a WorkerCgroup) -> Result<&'a Path, CgroupError> {
        let workers = self.workers();
        if let [dir] = cgroup.dirs.as_slice() {
            fn name(path: Option<&Path>) -> Option<&str> {
                path.and_then(Path::file_name).and_then(|name| name.to_str())
            }
            let pool = dir.parent();
            let is_worker = name(Some(dir)).is_some_and(|id| id.parse::<u64>().is_ok())
                && name(pool).is_some_and(valid_pool)
                && pool.and_then(Path::parent) == Some(workers.as_path());
            if is_worker {
                return Ok(dir);
            }
        }
        Err(CgroupError::Layout(format!("{:?} is not a streamlet cgroup under {}", cgroup.dirs, workers.display())))
    }

    /// Refuses a root that is not a cgroup v2 directory, or that is the root
    /// of the whole hierarchy (which has no `cgroup.type`): the daemon owns a
    /// delegated cgroup, never the host's.
    fn check_root(&self) -> Result<(), CgroupError> {
        let root = self.root.display();
        if !self.root.join("cgroup.procs").is_file() {
            return Err(CgroupError::Layout(format!("{root} is not a cgroup v2 directory (it has no cgroup.procs)")));
        }
        if !self.root.join("cgroup.type").is_file() {
            return Err(CgroupError::Layout(format!(
                "{root} is the root of the cgroup hierarchy: the daemon needs a cgroup of its own \
                 (a systemd service with Delegate=yes, or sandbox.cgroup_root)"
            )));
        }
        Ok(())
    }

    fn check_controllers(&self) -> Result<(), CgroupError> {
        let path = self.root.join("cgroup.controllers");
        let text = fs::read(&path)?;
        let available: Vec<&str> = text.split_whitespace().collect();
        let missing: Vec<&str> = CONTROLLERS.into_iter().filter(|c| !available.contains(c)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(CgroupError::Layout(format!(
            "cgroup controller{} {} not available in {} (cgroup.controllers: {:?}): \
             the streamletd service needs Delegate=yes",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            self.root.display(),
            text.trim(),
        )))
    }

    /// Moves every process in the root (the daemon among them) into
    /// `supervisor/`, until the root is empty.
    fn move_into_supervisor(&self) -> Result<(), CgroupError> {
        let supervisor = self.root.join(SUPERVISOR);
        self.tree.mkdir(&supervisor)?;
        let target = supervisor.join("cgroup.procs");
        for _ in 0..MOVE_ROUNDS {
            let pids = fs::procs(&self.root)?;
            if pids.is_empty() {
                return Ok(());
            }
            for pid in pids {
                match self.tree.write(&target, &pid.to_string()) {
                    Ok(()) => {}
                    // It exited between the read and the write: nothing is left to move.
                    Err(CgroupError::Write { source, .. }) if source.raw_os_error() == Some(libc::ESRCH) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let left = fs::procs(&self.root)?;
        if left.is_empty() {
            return Ok(());
        }
        Err(CgroupError::Layout(format!(
            "{}: processes {left:?} keep appearing in the daemon's cgroup after moving them into {SUPERVISOR}/",
            self.root.display()
        )))
    }

    fn enable_controllers(&self, dir: &Path) -> Result<(), CgroupError> {
        self.tree.write(&dir.join("cgroup.subtree_control"), ENABLE)
    }

    fn write_limits(&self, dir: &Path, limits: &Limits) -> Result<(), CgroupError> {
        let cpu = match limits.cpu {
            Some(CpuLimit { quota_us, period_us }) => format!("{quota_us} {period_us}"),
            None => format!("max {}", CpuLimit::PERIOD_US),
        };
        self.tree.write(&dir.join("cpu.max"), &cpu)?;
        self.tree.write(&dir.join("memory.max"), &max_or(limits.memory))?;
        // Without swap accounting (swapaccount=0, no swap controller) the file
        // does not exist, and there is no swap limit to set.
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            self.tree.write(&swap, if limits.memory.is_some() { "0" } else { "max" })?;
        }
        self.tree.write(&dir.join("pids.max"), &max_or(limits.pids))
    }

    /// Kills every process in `dir` and below it.
    fn kill(&self, dir: &Path) -> Result<(), CgroupError> {
        let kill = dir.join("cgroup.kill");
        if kill.exists() {
            return self.tree.write(&kill, "1");
        }
        // Before Linux 5.14: one SIGKILL per process, deepest first.
        for child in subdirs(dir)? {
            self.kill(&child)?;
        }
        self.kill_procs(dir)
    }

    /// SIGKILLs every process in `dir` (not below it) until none is left.
    fn kill_procs(&self, dir: &Path) -> Result<(), CgroupError> {
        let deadline = Instant::now() + KILL_WAIT;
        loop {
            let pids = fs::procs(dir)?;
            if pids.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CgroupError::Layout(format!(
                    "{}: processes {pids:?} still alive after SIGKILL",
                    dir.display()
                )));
            }
            for pid in pids {
                if pid <= 0 || pid.unsigned_abs() == std::process::id() {
                    return Err(CgroupError::Layout(format!("{}: refusing to kill pid {pid}", dir.display())));
                }
                self.tree.kill(pid)?;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Kills everything in `dir` and below, then removes the cgroups deepest
    /// first.
    fn remove_tree(&self, dir: &Path) -> Result<(), CgroupError> {
        if !dir.exists() {
            return Ok(());
        }
        self.kill(dir)?;
        self.rmdir_tree(dir)
    }

    fn rmdir_tree(&self, dir: &Path) -> Result<(), CgroupError> {
        for child in subdirs(dir)? {
            self.rmdir_tree(&child)?;
        }
        self.tree.rmdir(dir)
    }
}

impl CgroupManager for V2 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V2
    }

    fn describe(&self) -> String {
        format!("cgroup v2 at {}", self.workers().display())
    }

    /// The streamlets' subtree goes; `supervisor/`, with the daemon in it,
    /// stays (systemd removes the unit's cgroup when the daemon is gone).
    fn teardown(&self) -> Result<(), CgroupError> {
        self.remove_tree(&self.workers())
    }

    fn prepare(&self) -> Result<(), CgroupError> {
        // Everything that can be checked is checked before the first write.
        self.check_root()?;
        self.check_controllers()?;
        self.move_into_supervisor()?;
        self.remove_tree(&self.workers())?;
        self.enable_controllers(&self.root)?;
        let workers = self.workers();
        self.tree.mkdir(&workers)?;
        self.enable_controllers(&workers)
    }

    fn create(&self, pool: &str, worker: u64, limits: &Limits) -> Result<WorkerCgroup, CgroupError> {
        let pool_dir = self.pool_dir(pool)?;
        let dir = pool_dir.join(worker.to_string());
        {
            let _pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            self.tree.mkdir(&pool_dir)?;
            // Enabling what is enabled already changes nothing, and a pool
            // directory left half made by a failed create gets its controllers.
            self.enable_controllers(&pool_dir)?;
            if dir.exists() {
                return Err(CgroupError::Layout(format!("cgroup {} exists already", dir.display())));
            }
            self.tree.mkdir(&dir)?;
        }
        match self.write_limits(&dir, limits).and_then(|()| fs::open_procs(&dir)) {
            Ok(procs) => Ok(WorkerCgroup::new(vec![dir], vec![procs])),
            // The new cgroup holds no process yet: remove it, so that nothing
            // is left without its limits.
            Err(e) => match self.tree.rmdir(&dir) {
                Ok(()) => Err(e),
                Err(cleanup) => Err(CgroupError::Layout(format!("{e}; then {cleanup}"))),
            },
        }
    }

    fn update(&self, cgroup: &WorkerCgroup, limits: &Limits) -> Result<(), CgroupError> {
        let dir = self.worker_dir(cgroup)?;
        self.write_limits(dir, limits)
    }

    fn accounting(&self, cgroup: &WorkerCgroup) -> Result<Accounting, CgroupError> {
        let dir = self.worker_dir(cgroup)?;
        let cpu_stat = dir.join("cpu.stat");
        let cpu_usage_us = fs::read_key(&cpu_stat, "usage_usec")?
            .ok_or_else(|| CgroupError::Parse { path: cpu_stat.clone(), content: "(no usage_usec)".into() })?;
        Ok(Accounting {
            cpu_usage_us,
            // Present only where the cpu controller is enabled.
            cpu_throttled_us: fs::read_key(&cpu_stat, "throttled_usec")?.unwrap_or(0),
            memory_current: fs::read_u64(&dir.join("memory.current"))?,
            // memory.peak exists since Linux 5.19.
            memory_peak: unless_missing(fs::read_u64(&dir.join("memory.peak")))?.unwrap_or(0),
            oom_kills: fs::read_key(&dir.join("memory.events"), "oom_kill")?.unwrap_or(0),
            pids_current: fs::read_u64(&dir.join("pids.current"))?,
        })
    }

    fn remove(&self, cgroup: &WorkerCgroup) -> Result<(), CgroupError> {
        // An open cgroup.procs does not keep the kernel from removing the cgroup.
        let dir = self.worker_dir(cgroup)?;
        self.remove_tree(dir)?;
        let Some(pool_dir) = dir.parent() else { return Ok(()) };
        let _pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        if pool_dir.exists() && subdirs(pool_dir)?.is_empty() {
            self.tree.rmdir(pool_dir)?;
        }
        Ok(())
    }
}

/// A pool name that is one plain directory name. Config validation allows
/// only `[a-z0-9_-]`; this is the last line, not the first.
fn valid_pool(pool: &str) -> bool {
    !pool.is_empty() && pool != "." && !pool.contains("..") && !pool.contains(['/', '\0'])
}

fn max_or(value: Option<u64>) -> String {
    value.map_or_else(|| "max".to_owned(), |v| v.to_string())
}

/// `Ok(None)` for a file that does not exist.
fn unless_missing(read: Result<u64, CgroupError>) -> Result<Option<u64>, CgroupError> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(CgroupError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The child cgroups of `dir`.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let err = |source| CgroupError::Read { path: dir.to_owned(), source };
    let mut dirs = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        if entry.file_type().map_err(err)?.is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// One change the manager asked of the tree, in order.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Op {
        Mkdir(PathBuf),
        Rmdir(PathBuf),
        Write(PathBuf, String),
        Kill(i32),
    }

    /// A temporary directory that behaves like cgroupfs where it matters:
    /// control files appear on mkdir (a controller's files only where the
    /// parent enabled it), rmdir takes them along and refuses a cgroup with
    /// processes or children, a pid written to `cgroup.procs` moves there from
    /// wherever it was, `cgroup.kill` empties a subtree, and the
    /// no-internal-process rule holds both ways (EBUSY). Everything outside
    /// `owned` is read-only (EACCES), and every change is logged.
    #[derive(Debug, Clone)]
    struct FakeTree {
        mount: PathBuf,
        owned: PathBuf,
        /// New cgroups get `cgroup.kill` (Linux 5.14 and later).
        kill_file: bool,
        /// New cgroups get `memory.swap.max` (swap accounting on).
        swap: bool,
        /// New cgroups get `memory.peak` (Linux 5.19 and later).
        peak: bool,
        /// Writes to control files of this name fail with this errno.
        fail: Option<(&'static str, i32)>,
        /// A process that exits as it is moved (the write finds no such process).
        exiting: Option<i32>,
        log: Arc<Mutex<Vec<Op>>>,
    }

    fn errno(code: i32) -> io::Error {
        io::Error::from_raw_os_error(code)
    }

    fn pids(dir: &Path) -> Vec<i32> {
        fs::procs(dir).unwrap()
    }

    fn set_pids(dir: &Path, pids: &[i32]) {
        let text: String = pids.iter().map(|pid| format!("{pid}\n")).collect();
        std::fs::write(dir.join("cgroup.procs"), text).unwrap();
    }

    /// A process starts in `dir` (as a streamlet does through its pre-opened fd).
    fn start(dir: &Path, pid: i32) {
        let mut all = pids(dir);
        all.push(pid);
        set_pids(dir, &all);
    }

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    /// `dir` and every cgroup below it.
    fn cgroups(dir: &Path) -> Vec<PathBuf> {
        let mut all = vec![dir.to_owned()];
        for child in subdirs(dir).unwrap() {
            all.extend(cgroups(&child));
        }
        all
    }

    impl FakeTree {
        fn ops(&self) -> Vec<Op> {
            self.log.lock().unwrap().clone()
        }

        fn record(&self, op: Op) {
            self.log.lock().unwrap().push(op);
        }

        /// Creates the control files of a new cgroup whose parent enabled
        /// `controllers` for it.
        fn populate(&self, dir: &Path, controllers: &str, hierarchy_root: bool) {
            let put = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
            put("cgroup.procs", "");
            put("cgroup.controllers", &format!("{}\n", controllers.trim()));
            put("cgroup.subtree_control", "\n");
            put("cpu.stat", "usage_usec 0\nuser_usec 0\nsystem_usec 0\n");
            if hierarchy_root {
                return;
            }
            put("cgroup.type", "domain\n");
            put("cgroup.events", "populated 0\nfrozen 0\n");
            if self.kill_file {
                put("cgroup.kill", "");
            }
            for controller in controllers.split_whitespace() {
                self.controller_files(dir, controller);
            }
        }

        fn controller_files(&self, dir: &Path, controller: &str) {
            let put = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
            match controller {
                "cpu" => {
                    put("cpu.max", "max 100000\n");
                    put("cpu.weight", "100\n");
                    let stat = read(&dir.join("cpu.stat"));
                    put("cpu.stat", &format!("{stat}nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n"));
                }
                "memory" => {
                    put("memory.max", "max\n");
                    put("memory.current", "0\n");
                    put("memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n");
                    if self.peak {
                        put("memory.peak", "0\n");
                    }
                    if self.swap {
                        put("memory.swap.max", "max\n");
                        put("memory.swap.current", "0\n");
                    }
                }
                "pids" => {
                    put("pids.max", "max\n");
                    put("pids.current", "0\n");
                }
                _ => {}
            }
        }

        /// Makes the cgroup `dir` directly, as systemd would, without a log entry.
        fn make(&self, dir: &Path) {
            std::fs::create_dir(dir).unwrap();
            let controllers = read(&dir.parent().unwrap().join("cgroup.subtree_control"));
            self.populate(dir, &controllers, false);
        }

        /// Takes `pid` out of whichever cgroup holds it; false if none does.
        fn take_pid(&self, pid: i32) -> bool {
            let mut found = false;
            for dir in cgroups(&self.mount) {
                let before = pids(&dir);
                if before.contains(&pid) {
                    found = true;
                    set_pids(&dir, &before.into_iter().filter(|p| *p != pid).collect::<Vec<_>>());
                }
            }
            found
        }

        fn apply_write(&self, path: &Path, value: &str) -> io::Result<()> {
            if !path.starts_with(&self.owned) {
                return Err(errno(libc::EACCES));
            }
            if !path.is_file() {
                return Err(errno(libc::ENOENT));
            }
            let dir = path.parent().unwrap();
            let name = path.file_name().unwrap().to_str().unwrap();
            if let Some((_, code)) = self.fail.filter(|(file, _)| *file == name) {
                return Err(errno(code));
            }
            let value = value.trim();
            let number_or_max = |v: &str| v == "max" || v.parse::<u64>().is_ok();
            match name {
                "cgroup.procs" => {
                    let pid: i32 = value.parse().map_err(|_| errno(libc::EINVAL))?;
                    if !read(&dir.join("cgroup.subtree_control")).trim().is_empty() {
                        return Err(errno(libc::EBUSY));
                    }
                    if self.exiting == Some(pid) {
                        self.take_pid(pid);
                        return Err(errno(libc::ESRCH));
                    }
                    if !self.take_pid(pid) {
                        return Err(errno(libc::ESRCH));
                    }
                    start(dir, pid);
                    Ok(())
                }
                "cgroup.subtree_control" => self.subtree_control(dir, value),
                "cgroup.kill" => {
                    if value != "1" {
                        return Err(errno(libc::EINVAL));
                    }
                    for cgroup in cgroups(dir) {
                        set_pids(&cgroup, &[]);
                    }
                    Ok(())
                }
                "cpu.max" => {
                    let mut words = value.split_whitespace();
                    let quota = words.next().unwrap_or("");
                    let quota_ok = quota == "max" || quota.parse::<u64>().is_ok_and(|q| q >= 1000);
                    let period_ok = words.next().is_none_or(|p| p.parse::<u64>().is_ok_and(|p| p >= 1000));
                    if !quota_ok || !period_ok || words.next().is_some() {
                        return Err(errno(libc::EINVAL));
                    }
                    std::fs::write(path, format!("{value}\n"))
                }
                "memory.max" | "memory.swap.max" | "pids.max" => {
                    if !number_or_max(value) {
                        return Err(errno(libc::EINVAL));
                    }
                    std::fs::write(path, format!("{value}\n"))
                }
                // Read-only files.
                _ => Err(errno(libc::EACCES)),
            }
        }

        fn subtree_control(&self, dir: &Path, value: &str) -> io::Result<()> {
            let available = read(&dir.join("cgroup.controllers"));
            let available: Vec<&str> = available.split_whitespace().collect();
            let enabled = read(&dir.join("cgroup.subtree_control"));
            let mut enabled: Vec<&str> = enabled.split_whitespace().collect();
            let mut added = Vec::new();
            for word in value.split_whitespace() {
                let (sign, controller) = word.split_at(1);
                if !available.contains(&controller) {
                    return Err(errno(libc::ENOENT));
                }
                match sign {
                    "+" if !enabled.contains(&controller) => {
                        enabled.push(controller);
                        added.push(controller);
                    }
                    "+" => {}
                    "-" => enabled.retain(|c| *c != controller),
                    _ => return Err(errno(libc::EINVAL)),
                }
            }
            if !added.is_empty() && !pids(dir).is_empty() {
                return Err(errno(libc::EBUSY));
            }
            let list: Vec<&str> = available.iter().copied().filter(|c| enabled.contains(c)).collect();
            let list = list.join(" ");
            std::fs::write(dir.join("cgroup.subtree_control"), format!("{list}\n"))?;
            for child in subdirs(dir).unwrap() {
                std::fs::write(child.join("cgroup.controllers"), format!("{list}\n"))?;
                for controller in &added {
                    self.controller_files(&child, controller);
                }
            }
            Ok(())
        }

        fn apply_rmdir(&self, path: &Path) -> io::Result<()> {
            if !path.starts_with(&self.owned) || path == self.owned {
                return Err(errno(libc::EACCES));
            }
            if !path.exists() {
                return Ok(());
            }
            if !subdirs(path).unwrap().is_empty() || !pids(path).is_empty() {
                return Err(errno(libc::EBUSY));
            }
            for entry in std::fs::read_dir(path)? {
                std::fs::remove_file(entry?.path())?;
            }
            std::fs::remove_dir(path)
        }

        fn apply_mkdir(&self, path: &Path) -> io::Result<()> {
            if !path.starts_with(&self.owned) {
                return Err(errno(libc::EACCES));
            }
            let parent = path.parent().unwrap();
            if !parent.join("cgroup.procs").is_file() {
                return Err(errno(libc::ENOENT));
            }
            match std::fs::create_dir(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e),
            }
            self.populate(path, &read(&parent.join("cgroup.subtree_control")), false);
            Ok(())
        }
    }

    impl Tree for FakeTree {
        fn mkdir(&self, path: &Path) -> Result<(), CgroupError> {
            self.record(Op::Mkdir(path.to_owned()));
            self.apply_mkdir(path).map_err(|source| CgroupError::Create { path: path.to_owned(), source })
        }

        fn rmdir(&self, path: &Path) -> Result<(), CgroupError> {
            self.record(Op::Rmdir(path.to_owned()));
            self.apply_rmdir(path).map_err(|source| CgroupError::Remove { path: path.to_owned(), source })
        }

        fn write(&self, path: &Path, value: &str) -> Result<(), CgroupError> {
            self.record(Op::Write(path.to_owned(), value.to_owned()));
            self.apply_write(path, value).map_err(|source| CgroupError::Write {
                path: path.to_owned(),
                value: value.to_owned(),
                source,
            })
        }

        fn kill(&self, pid: i32) -> Result<(), CgroupError> {
            self.record(Op::Kill(pid));
            self.take_pid(pid);
            Ok(())
        }
    }

    /// How the fake host is set up.
    struct Setup {
        /// What systemd enabled for the daemon's cgroup.
        delegated: &'static str,
        kill_file: bool,
        swap: bool,
        peak: bool,
        fail: Option<(&'static str, i32)>,
        exiting: Option<i32>,
    }

    impl Default for Setup {
        fn default() -> Self {
            Self { delegated: "cpu memory pids", kill_file: true, swap: true, peak: true, fail: None, exiting: None }
        }
    }

    /// A host with the daemon (pid 100) and a helper it started (pid 101) in
    /// `system.slice/streamletd.service`, and init (pid 1) at the top.
    struct Fixture {
        _tmp: tempfile::TempDir,
        mount: PathBuf,
        root: PathBuf,
        fake: FakeTree,
    }

    const DAEMON: i32 = 100;
    const HELPER: i32 = 101;
    const HOST_SUBTREE: &str = "cpu io memory pids\n";

    impl Fixture {
        fn new() -> Self {
            Self::with(Setup::default())
        }

        fn with(setup: Setup) -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let mount = tmp.path().join("cgroup");
            let root = mount.join("system.slice").join("streamletd.service");
            let fake = FakeTree {
                mount: mount.clone(),
                owned: root.clone(),
                kill_file: setup.kill_file,
                swap: setup.swap,
                peak: setup.peak,
                fail: setup.fail,
                exiting: setup.exiting,
                log: Arc::default(),
            };
            std::fs::create_dir(&mount).unwrap();
            fake.populate(&mount, "cpu io memory pids", true);
            std::fs::write(mount.join("cgroup.subtree_control"), HOST_SUBTREE).unwrap();
            set_pids(&mount, &[1]);
            let slice = mount.join("system.slice");
            fake.make(&slice);
            std::fs::write(slice.join("cgroup.subtree_control"), format!("{}\n", setup.delegated)).unwrap();
            fake.make(&root);
            set_pids(&root, &[DAEMON, HELPER]);
            Self { _tmp: tmp, mount, root, fake }
        }

        fn manager(&self) -> V2 {
            V2::with_tree(self.root.clone(), Box::new(self.fake.clone()))
        }

        fn prepared(&self) -> V2 {
            let v2 = self.manager();
            v2.prepare().unwrap();
            v2
        }

        /// Every change logged so far was inside the daemon's root, and the
        /// host's own files are as systemd left them.
        fn assert_nothing_outside_root(&self) {
            for op in self.fake.ops() {
                if let Op::Mkdir(path) | Op::Rmdir(path) | Op::Write(path, _) = &op {
                    assert!(path.starts_with(&self.root), "{op:?} is outside {}", self.root.display());
                }
            }
            assert_eq!(read(&self.mount.join("cgroup.subtree_control")), HOST_SUBTREE);
            assert_eq!(pids(&self.mount), [1]);
        }

        /// No cgroup under the root both holds processes and has children or
        /// controllers enabled for children.
        fn assert_no_internal_process(&self) {
            for dir in cgroups(&self.root) {
                let inner =
                    !subdirs(&dir).unwrap().is_empty() || !read(&dir.join("cgroup.subtree_control")).trim().is_empty();
                assert!(!inner || pids(&dir).is_empty(), "{} is an inner node with processes", dir.display());
            }
        }
    }

    fn limits() -> Limits {
        Limits { cpu: Some(CpuLimit::from_cores(0.5)), memory: Some(64 << 20), pids: Some(64) }
    }

    fn written(fake: &FakeTree, path: &Path) -> Vec<String> {
        fake.ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::Write(p, value) if p == path => Some(value),
                _ => None,
            })
            .collect()
    }

    fn layout_message(result: Result<impl fmt::Debug, CgroupError>) -> String {
        match result {
            Err(CgroupError::Layout(message)) => message,
            other => panic!("expected a layout error, got {other:?}"),
        }
    }

    #[test]
    fn prepare_moves_the_daemon_into_supervisor_and_enables_controllers_below_root() {
        let fx = Fixture::new();
        fx.prepared();

        let supervisor = fx.root.join("supervisor");
        assert_eq!(pids(&supervisor), [DAEMON, HELPER]);
        assert!(pids(&fx.root).is_empty());
        assert_eq!(read(&fx.root.join("cgroup.subtree_control")).trim(), "cpu memory pids");
        let workers = fx.root.join("workers");
        assert_eq!(read(&workers.join("cgroup.controllers")).trim(), "cpu memory pids");
        assert_eq!(read(&workers.join("cgroup.subtree_control")).trim(), "cpu memory pids");
        assert!(subdirs(&workers).unwrap().is_empty());

        let procs = supervisor.join("cgroup.procs");
        let root_control = fx.root.join("cgroup.subtree_control");
        assert_eq!(
            fx.fake.ops(),
            [
                Op::Mkdir(supervisor.clone()),
                Op::Write(procs.clone(), DAEMON.to_string()),
                Op::Write(procs, HELPER.to_string()),
                Op::Write(root_control, ENABLE.into()),
                Op::Mkdir(workers.clone()),
                Op::Write(workers.join("cgroup.subtree_control"), ENABLE.into()),
            ]
        );
        fx.assert_nothing_outside_root();
        fx.assert_no_internal_process();
    }

    #[test]
    fn prepare_twice_is_harmless() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        v2.prepare().unwrap();
        assert_eq!(pids(&fx.root.join("supervisor")), [DAEMON, HELPER]);
        assert_eq!(read(&fx.root.join("cgroup.subtree_control")).trim(), "cpu memory pids");
        fx.assert_nothing_outside_root();
    }

    #[test]
    fn create_writes_the_limits_into_a_new_leaf() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 7, &limits()).unwrap();

        let pool = fx.root.join("workers").join("echo");
        let dir = pool.join("7");
        assert_eq!(cgroup.dirs, [dir.as_path()]);
        assert_eq!(read(&pool.join("cgroup.subtree_control")).trim(), "cpu memory pids");
        assert_eq!(read(&dir.join("cpu.max")), "50000 100000\n");
        assert_eq!(read(&dir.join("memory.max")), "67108864\n");
        assert_eq!(read(&dir.join("memory.swap.max")), "0\n");
        assert_eq!(read(&dir.join("pids.max")), "64\n");
        assert_eq!(written(&fx.fake, &dir.join("cpu.max")), ["50000 100000"]);
        fx.assert_nothing_outside_root();
    }

    #[test]
    fn create_opens_the_leaf_procs_write_only_and_close_on_exec() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 7, &limits()).unwrap();
        let dir = &cgroup.dirs[0];

        let fds = cgroup.procs_fds();
        assert_eq!(fds.len(), 1);
        let fd = fds[0];
        let target = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
        assert_eq!(target, dir.join("cgroup.procs").canonicalize().unwrap());
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let flags = info.lines().find_map(|line| line.strip_prefix("flags:")).unwrap();
        let flags = i32::from_str_radix(flags.trim(), 8).unwrap();
        assert_eq!(flags & libc::O_ACCMODE, libc::O_WRONLY);
        assert_ne!(flags & libc::O_CLOEXEC, 0);

        // What the child does between fork and exec.
        let pid = b"4242\n";
        // SAFETY: `fd` is open while `cgroup` lives, and `pid` is valid for its length.
        let n = unsafe { libc::write(fd, pid.as_ptr().cast(), pid.len()) };
        assert_eq!(n, pid.len() as isize);
        assert_eq!(pids(dir), [4242]);
    }

    #[test]
    fn create_without_limits_writes_max() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 1, &Limits::default()).unwrap();
        let dir = &cgroup.dirs[0];
        assert_eq!(written(&fx.fake, &dir.join("cpu.max")), ["max 100000"]);
        assert_eq!(written(&fx.fake, &dir.join("memory.max")), ["max"]);
        assert_eq!(written(&fx.fake, &dir.join("memory.swap.max")), ["max"]);
        assert_eq!(written(&fx.fake, &dir.join("pids.max")), ["max"]);
    }

    #[test]
    fn create_leaves_swap_alone_without_swap_accounting() {
        let fx = Fixture::with(Setup { swap: false, ..Setup::default() });
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 1, &limits()).unwrap();
        let dir = &cgroup.dirs[0];
        assert_eq!(read(&dir.join("memory.max")), "67108864\n");
        assert!(!dir.join("memory.swap.max").exists());
        assert!(written(&fx.fake, &dir.join("memory.swap.max")).is_empty());
    }

    #[test]
    fn create_refuses_a_worker_that_exists_already() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let _first = v2.create("echo", 3, &limits()).unwrap();
        let message = layout_message(v2.create("echo", 3, &limits()));
        assert!(message.contains("exists already"), "{message}");
    }

    #[test]
    fn create_returns_a_failed_write_and_removes_the_half_made_leaf() {
        let fx = Fixture::with(Setup { fail: Some(("pids.max", libc::EIO)), ..Setup::default() });
        let v2 = fx.prepared();
        let dir = fx.root.join("workers").join("echo").join("5");
        match v2.create("echo", 5, &limits()) {
            Err(CgroupError::Write { path, value, source }) => {
                assert_eq!(path, dir.join("pids.max"));
                assert_eq!(value, "64");
                assert_eq!(source.raw_os_error(), Some(libc::EIO));
            }
            other => panic!("expected the failed write, got {other:?}"),
        }
        assert!(!dir.exists());
        assert_eq!(fx.fake.ops().last(), Some(&Op::Rmdir(dir)));
    }

    #[test]
    fn prepare_returns_a_failed_write() {
        let fx = Fixture::with(Setup { fail: Some(("cgroup.subtree_control", libc::EIO)), ..Setup::default() });
        match fx.manager().prepare() {
            Err(CgroupError::Write { path, .. }) => assert_eq!(path, fx.root.join("cgroup.subtree_control")),
            other => panic!("expected the failed write, got {other:?}"),
        }
    }

    #[test]
    fn prepare_returns_a_failed_move_into_supervisor() {
        let fx = Fixture::with(Setup { fail: Some(("cgroup.procs", libc::EACCES)), ..Setup::default() });
        match fx.manager().prepare() {
            Err(CgroupError::Write { path, value, source }) => {
                assert_eq!(path, fx.root.join("supervisor").join("cgroup.procs"));
                assert_eq!(value, DAEMON.to_string());
                assert_eq!(source.raw_os_error(), Some(libc::EACCES));
            }
            other => panic!("expected the failed move, got {other:?}"),
        }
        assert_eq!(pids(&fx.root), [DAEMON, HELPER]);
        assert!(read(&fx.root.join("cgroup.subtree_control")).trim().is_empty());
    }

    #[test]
    fn prepare_skips_a_process_that_exits_while_it_is_moved() {
        let fx = Fixture::with(Setup { exiting: Some(HELPER), ..Setup::default() });
        fx.prepared();
        assert_eq!(pids(&fx.root.join("supervisor")), [DAEMON]);
        assert!(pids(&fx.root).is_empty());
        assert_eq!(read(&fx.root.join("cgroup.subtree_control")).trim(), "cpu memory pids");
    }

    #[test]
    fn create_refuses_pool_names_that_leave_the_pool_directory() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let before = fx.fake.ops().len();
        for pool in ["", ".", "..", "../supervisor", "a/b", "/etc", "a..b", "nul\0"] {
            let message = layout_message(v2.create(pool, 1, &limits()));
            assert!(message.contains("pool name"), "{pool:?}: {message}");
        }
        assert_eq!(fx.fake.ops().len(), before, "nothing may be touched for a bad pool name");
        assert!(subdirs(&fx.root.join("workers")).unwrap().is_empty());
    }

    #[test]
    fn no_process_is_ever_written_into_an_inner_node() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let mut pid = 1000;
        let mut cgroups = Vec::new();
        for (pool, worker) in [("echo", 1), ("echo", 2), ("relay", 3)] {
            let cgroup = v2.create(pool, worker, &limits()).unwrap();
            pid += 1;
            start(&cgroup.dirs[0], pid);
            cgroups.push(cgroup);
        }
        v2.remove(&cgroups.remove(0)).unwrap();
        let _more = v2.create("relay", 4, &limits()).unwrap();

        fx.assert_no_internal_process();
        let supervisor_procs = fx.root.join("supervisor").join("cgroup.procs");
        for op in fx.fake.ops() {
            if let Op::Write(path, _) = &op {
                if path.ends_with("cgroup.procs") {
                    assert_eq!(path, &supervisor_procs, "{op:?}");
                }
            }
        }
        fx.assert_nothing_outside_root();
    }

    #[test]
    fn the_fake_enforces_the_no_internal_process_rule() {
        let fx = Fixture::new();
        let control = fx.root.join("cgroup.subtree_control");
        match fx.fake.write(&control, ENABLE) {
            Err(CgroupError::Write { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::EBUSY)),
            other => panic!("controllers enabled in a cgroup with processes: {other:?}"),
        }
        fx.prepared();
        let workers = fx.root.join("workers");
        match fx.fake.write(&workers.join("cgroup.procs"), &DAEMON.to_string()) {
            Err(CgroupError::Write { source, .. }) => assert_eq!(source.raw_os_error(), Some(libc::EBUSY)),
            other => panic!("a process moved into a cgroup with controllers: {other:?}"),
        }
        assert_eq!(pids(&fx.root.join("supervisor")), [DAEMON, HELPER]);
    }

    #[test]
    fn the_fake_gives_controller_files_only_where_the_parent_enabled_them() {
        let fx = Fixture::new();
        let v2 = fx.manager();
        v2.check_root().unwrap();
        v2.move_into_supervisor().unwrap();
        // Without the root's subtree_control a child has no cpu.max to write.
        let bare = fx.root.join("bare");
        fx.fake.mkdir(&bare).unwrap();
        assert!(!bare.join("cpu.max").exists());
        assert!(fx.fake.write(&bare.join("cpu.max"), "50000 100000").is_err());
        // Enabling them later gives the existing child its files.
        fx.fake.write(&fx.root.join("cgroup.subtree_control"), ENABLE).unwrap();
        assert_eq!(read(&bare.join("cpu.max")), "max 100000\n");
        assert_eq!(read(&bare.join("cgroup.controllers")).trim(), "cpu memory pids");
    }

    #[test]
    fn update_rewrites_the_limits() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 9, &limits()).unwrap();
        let dir = &cgroup.dirs[0];
        let wider = Limits { cpu: Some(CpuLimit::from_cores(2.0)), memory: None, pids: Some(128) };
        v2.update(&cgroup, &wider).unwrap();
        assert_eq!(read(&dir.join("cpu.max")), "200000 100000\n");
        assert_eq!(read(&dir.join("memory.max")), "max\n");
        assert_eq!(read(&dir.join("memory.swap.max")), "max\n");
        assert_eq!(read(&dir.join("pids.max")), "128\n");
    }

    #[test]
    fn accounting_reads_a_busy_streamlet() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 2, &limits()).unwrap();
        let dir = &cgroup.dirs[0];
        let put = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
        put(
            "cpu.stat",
            "usage_usec 1843522\nuser_usec 1200311\nsystem_usec 643211\ncore_sched.force_idle_usec 0\n\
             nr_periods 412\nnr_throttled 37\nthrottled_usec 912345\nnr_bursts 0\nburst_usec 0\n",
        );
        put("memory.current", "5242880\n");
        put("memory.peak", "67100672\n");
        put("memory.events", "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n");
        put("pids.current", "3\n");

        let used = v2.accounting(&cgroup).unwrap();
        assert_eq!(
            used,
            Accounting {
                cpu_usage_us: 1_843_522,
                cpu_throttled_us: 912_345,
                memory_current: 5_242_880,
                memory_peak: 67_100_672,
                oom_kills: 1,
                pids_current: 3,
            }
        );
    }

    #[test]
    fn accounting_reads_zero_peak_before_linux_5_19() {
        let fx = Fixture::with(Setup { peak: false, ..Setup::default() });
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 2, &limits()).unwrap();
        std::fs::write(cgroup.dirs[0].join("memory.current"), "4096\n").unwrap();
        let used = v2.accounting(&cgroup).unwrap();
        assert_eq!(used.memory_peak, 0);
        assert_eq!(used.memory_current, 4096);
    }

    #[test]
    fn accounting_names_a_file_it_cannot_parse() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 2, &limits()).unwrap();
        let path = cgroup.dirs[0].join("pids.current");
        std::fs::write(&path, "three\n").unwrap();
        match v2.accounting(&cgroup) {
            Err(CgroupError::Parse { path: p, content }) => {
                assert_eq!(p, path);
                assert_eq!(content, "three\n");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn prepare_kills_and_removes_the_streamlets_of_an_earlier_run() {
        let fx = Fixture::new();
        let earlier = fx.prepared();
        let a = earlier.create("echo", 1, &limits()).unwrap();
        let b = earlier.create("relay", 2, &limits()).unwrap();
        start(&a.dirs[0], 501);
        start(&b.dirs[0], 502);
        start(&b.dirs[0], 503);

        // Started again: the daemon is in supervisor/ and finds its root from there.
        let proc_self_cgroup = "0::/system.slice/streamletd.service/supervisor\n";
        let root = V2::find_root(proc_self_cgroup, &fx.mount).unwrap();
        assert_eq!(root, fx.root);
        let log_start = fx.fake.ops().len();
        V2::with_tree(root, Box::new(fx.fake.clone())).prepare().unwrap();

        let workers = fx.root.join("workers");
        let ops = fx.fake.ops().split_off(log_start);
        let kill = Op::Write(workers.join("cgroup.kill"), "1".into());
        let kill_at = ops.iter().position(|op| *op == kill).expect("cgroup.kill written");
        let rmdir_at = ops.iter().position(|op| *op == Op::Rmdir(a.dirs[0].clone())).expect("stale leaf removed");
        assert!(kill_at < rmdir_at, "{ops:?}");
        assert!(ops.contains(&Op::Rmdir(workers.clone())));
        for pid in [501, 502, 503] {
            assert!(cgroups(&fx.mount).iter().all(|dir| !pids(dir).contains(&pid)), "pid {pid} survived");
        }
        assert!(subdirs(&workers).unwrap().is_empty());
        assert_eq!(read(&workers.join("cgroup.subtree_control")).trim(), "cpu memory pids");
        assert_eq!(pids(&fx.root.join("supervisor")), [DAEMON, HELPER]);
        fx.assert_nothing_outside_root();
    }

    #[test]
    fn without_cgroup_kill_every_stale_process_gets_sigkill() {
        let fx = Fixture::with(Setup { kill_file: false, ..Setup::default() });
        let earlier = fx.prepared();
        let a = earlier.create("echo", 1, &limits()).unwrap();
        start(&a.dirs[0], 601);
        start(&a.dirs[0], 602);

        fx.manager().prepare().unwrap();
        let ops = fx.fake.ops();
        assert!(ops.contains(&Op::Kill(601)) && ops.contains(&Op::Kill(602)), "{ops:?}");
        assert!(!ops.iter().any(|op| matches!(op, Op::Kill(pid) if *pid == DAEMON || *pid == HELPER)));
        assert!(!a.dirs[0].exists());
        assert_eq!(pids(&fx.root.join("supervisor")), [DAEMON, HELPER]);
    }

    #[test]
    fn teardown_removes_the_workers_tree_and_keeps_the_supervisor() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let cg = v2.create("echo", 1, &limits()).unwrap();
        start(&cg.dirs[0], 700);
        v2.teardown().unwrap();
        assert!(cgroups(&fx.mount).iter().all(|dir| !pids(dir).contains(&700)), "its processes are killed");
        assert!(!fx.root.join("workers").exists(), "workers/ is removed");
        assert!(fx.root.join("supervisor").exists(), "the daemon's leaf stays");
    }

    #[test]
    fn remove_kills_the_streamlet_and_removes_the_empty_pool() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let first = v2.create("echo", 1, &limits()).unwrap();
        let second = v2.create("echo", 2, &limits()).unwrap();
        let (first_dir, second_dir) = (first.dirs[0].clone(), second.dirs[0].clone());
        let pool = fx.root.join("workers").join("echo");
        start(&first_dir, 700);

        v2.remove(&first).unwrap();
        assert!(fx.fake.ops().contains(&Op::Write(first_dir.join("cgroup.kill"), "1".into())));
        assert!(!first_dir.exists());
        assert!(pool.exists(), "the pool still has a streamlet");
        assert!(cgroups(&fx.mount).iter().all(|dir| !pids(dir).contains(&700)));

        v2.remove(&second).unwrap();
        assert!(!second_dir.exists());
        assert!(!pool.exists(), "an empty pool directory is removed");
        assert!(fx.root.join("workers").exists());
        fx.assert_nothing_outside_root();
    }

    #[test]
    fn remove_without_cgroup_kill_sends_sigkill() {
        let fx = Fixture::with(Setup { kill_file: false, ..Setup::default() });
        let v2 = fx.prepared();
        let cgroup = v2.create("echo", 1, &limits()).unwrap();
        let dir = cgroup.dirs[0].clone();
        start(&dir, 800);
        v2.remove(&cgroup).unwrap();
        assert!(fx.fake.ops().contains(&Op::Kill(800)));
        assert!(!dir.exists());
    }

    #[test]
    fn a_cgroup_outside_the_workers_tree_is_refused() {
        let fx = Fixture::new();
        let v2 = fx.prepared();
        let supervisor = fx.root.join("supervisor");
        for dirs in [vec![supervisor.clone()], vec![fx.root.join("workers")], vec![], vec![fx.mount.join("x/y/1")]] {
            let message = layout_message(v2.accounting(&WorkerCgroup::new(dirs.clone(), vec![])));
            assert!(message.contains("not a streamlet cgroup"), "{message}");
            layout_message(v2.update(&WorkerCgroup::new(dirs.clone(), vec![]), &limits()));
            layout_message(v2.remove(&WorkerCgroup::new(dirs, vec![])));
        }
        assert_eq!(pids(&supervisor), [DAEMON, HELPER]);
        assert!(!fx.fake.ops().iter().any(|op| matches!(op, Op::Kill(_) | Op::Rmdir(_))));
    }

    #[test]
    fn a_missing_controller_is_named_and_nothing_is_written() {
        let fx = Fixture::with(Setup { delegated: "cpu pids", ..Setup::default() });
        let message = layout_message(fx.manager().prepare());
        assert!(message.contains("memory"), "{message}");
        assert!(!message.contains("cpu,"), "{message}");
        assert!(message.contains("Delegate=yes"), "{message}");
        assert!(fx.fake.ops().is_empty(), "{:?}", fx.fake.ops());
        assert_eq!(pids(&fx.root), [DAEMON, HELPER]);
    }

    #[test]
    fn the_root_of_the_hierarchy_is_refused() {
        let fx = Fixture::new();
        let v2 = V2::with_tree(fx.mount.clone(), Box::new(fx.fake.clone()));
        let message = layout_message(v2.prepare());
        assert!(message.contains("root of the cgroup hierarchy"), "{message}");
        assert!(fx.fake.ops().is_empty());
        fx.assert_nothing_outside_root();
    }

    #[test]
    fn find_root_takes_the_daemon_cgroup() {
        let mount = Path::new("/sys/fs/cgroup");
        let text = "0::/system.slice/streamletd.service\n";
        assert_eq!(V2::find_root(text, mount).unwrap(), mount.join("system.slice/streamletd.service"));
        // A hybrid host lists the v1 hierarchies too.
        let hybrid = "12:pids:/system.slice/streamletd.service\n1:name=systemd:/system.slice/streamletd.service\n\
                      0::/system.slice/streamletd.service\n";
        assert_eq!(V2::find_root(hybrid, mount).unwrap(), mount.join("system.slice/streamletd.service"));
    }

    #[test]
    fn find_root_takes_the_parent_of_a_supervisor_leaf() {
        let mount = Path::new("/sys/fs/cgroup");
        let text = "0::/system.slice/streamletd.service/supervisor\n";
        assert_eq!(V2::find_root(text, mount).unwrap(), mount.join("system.slice/streamletd.service"));
    }

    #[test]
    fn find_root_refuses_what_the_daemon_cannot_own() {
        let mount = Path::new("/sys/fs/cgroup");
        for text in ["", "4:memory:/x\n", "0::/\n", "0::/supervisor\n", "0::/a/../b\n", "0::/gone (deleted)\n"] {
            layout_message(V2::find_root(text, mount));
        }
    }

    #[test]
    fn version_and_description() {
        let v2 = V2::new(PathBuf::from("/sys/fs/cgroup/system.slice/streamletd.service"));
        assert_eq!(v2.version(), CgroupVersion::V2);
        assert_eq!(v2.describe(), "cgroup v2 at /sys/fs/cgroup/system.slice/streamletd.service/workers");
        assert_eq!(v2.root(), Path::new("/sys/fs/cgroup/system.slice/streamletd.service"));
    }
}
