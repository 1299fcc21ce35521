//! cgroup v1: one hierarchy per controller (or per group of co-mounted
//! controllers). Each streamlet gets `<base>/<pool>/<id>` in the hierarchies
//! of cpu, cpuacct, memory and pids, where `<base>` sits under the daemon's
//! own cgroup in that hierarchy, so whatever limits the daemon's cgroup has
//! apply to its streamlets too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::fs;
use super::{Accounting, CgroupError, CgroupManager, CgroupVersion, Limits, WorkerCgroup};

/// The controllers a streamlet's cgroup needs.
pub const CONTROLLERS: [&str; 4] = ["cpu", "cpuacct", "memory", "pids"];

/// One mounted hierarchy and the streamlets' base directory in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// The controllers mounted together here (`["cpu", "cpuacct"]`, say).
    pub controllers: Vec<String>,
    /// `<mount>/<daemon's cgroup>/<base name>`.
    pub base: PathBuf,
}

impl Hierarchy {
    fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug)]
pub struct V1 {
    hierarchies: Vec<Hierarchy>,
}

impl V1 {
    /// Finds the hierarchies of [`CONTROLLERS`] from `/proc/self/mountinfo`
    /// and `/proc/self/cgroup`, with `base_name` under the daemon's own
    /// cgroup in each.
    pub fn discover(base_name: &str) -> Result<Self, CgroupError> {
        let mountinfo = fs::read(Path::new("/proc/self/mountinfo"))?;
        let cgroup = fs::read(Path::new("/proc/self/cgroup"))?;
        Self::from_proc(&mountinfo, &cgroup, base_name)
    }

    /// [`discover`](Self::discover) from the two files' text.
    pub fn from_proc(mountinfo: &str, proc_self_cgroup: &str, base_name: &str) -> Result<Self, CgroupError> {
        let plain = base_name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if base_name.is_empty() || !plain {
            return Err(CgroupError::Layout(format!(
                "cgroup base {base_name:?} must be a plain name of letters, digits, '-' and '_'"
            )));
        }
        let mut hierarchies: Vec<Hierarchy> = Vec::new();
        for controller in CONTROLLERS {
            if hierarchies.iter().any(|h| h.has(controller)) {
                continue;
            }
            let (mount, controllers) = mount_of(mountinfo, controller).ok_or_else(|| {
                CgroupError::Layout(format!("no cgroup v1 hierarchy with the {controller} controller is mounted"))
            })?;
            let own = own_path(proc_self_cgroup, controller).ok_or_else(|| {
                CgroupError::Layout(format!("/proc/self/cgroup names no {controller} cgroup for this process"))
            })?;
            let base = mount.join(own.trim_start_matches('/')).join(base_name);
            hierarchies.push(Hierarchy { controllers, base });
        }
        Ok(Self { hierarchies })
    }

    /// A manager over the given hierarchies (tests: directories in a temp dir).
    pub fn with_hierarchies(hierarchies: Vec<Hierarchy>) -> Self {
        Self { hierarchies }
    }

    pub fn hierarchies(&self) -> &[Hierarchy] {
        &self.hierarchies
    }

    fn dir(&self, cgroup: &WorkerCgroup, controller: &str) -> Option<PathBuf> {
        self.hierarchies.iter().zip(&cgroup.dirs).find(|(h, _)| h.has(controller)).map(|(_, d)| d.clone())
    }

    fn write_limits(&self, dirs: &[PathBuf], limits: &Limits) -> Result<(), CgroupError> {
        for (h, dir) in self.hierarchies.iter().zip(dirs) {
            if h.has("cpu") {
                let (quota, period) = match limits.cpu {
                    Some(cpu) => (cpu.quota_us.to_string(), cpu.period_us),
                    None => ("-1".to_owned(), super::CpuLimit::PERIOD_US),
                };
                fs::write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                fs::write(&dir.join("cpu.cfs_quota_us"), &quota)?;
            }
            if h.has("memory") {
                let bytes = limits.memory.map_or_else(|| "-1".to_owned(), |m| m.to_string());
                write_memory(dir, &bytes)?;
            }
            if h.has("pids") {
                let max = limits.pids.map_or_else(|| "max".to_owned(), |p| p.to_string());
                fs::write(&dir.join("pids.max"), &max)?;
            }
        }
        Ok(())
    }
}

/// Sets memory and memory+swap to the same limit (no swap), in whichever
/// order the kernel accepts (memsw may never be below the memory limit).
fn write_memory(dir: &Path, bytes: &str) -> Result<(), CgroupError> {
    let memsw = dir.join("memory.memsw.limit_in_bytes");
    let limit = dir.join("memory.limit_in_bytes");
    if !memsw.exists() {
        return fs::write(&limit, bytes);
    }
    match fs::write(&limit, bytes) {
        Ok(()) => fs::write(&memsw, bytes),
        Err(_) => {
            fs::write(&memsw, bytes)?;
            fs::write(&limit, bytes)
        }
    }
}

/// The mount point of the v1 hierarchy holding `controller`, and all the
/// controllers mounted with it.
fn mount_of(mountinfo: &str, controller: &str) -> Option<(PathBuf, Vec<String>)> {
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mut right = right.split_whitespace();
        if right.next() != Some("cgroup") {
            continue;
        }
        let _source = right.next();
        let options: Vec<String> = right.next().unwrap_or("").split(',').map(str::to_owned).collect();
        if !options.iter().any(|o| o == controller) {
            continue;
        }
        let mount = left.split_whitespace().nth(4)?;
        let controllers = options.into_iter().filter(|o| CONTROLLERS.contains(&o.as_str())).collect();
        return Some((PathBuf::from(mount), controllers));
    }
    None
}

/// The daemon's cgroup path in the hierarchy of `controller`.
fn own_path(proc_self_cgroup: &str, controller: &str) -> Option<String> {
    proc_self_cgroup.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers.split(',').any(|c| c == controller).then(|| path.to_owned())
    })
}

fn check_name(name: &str) -> Result<(), CgroupError> {
    if name.is_empty() || name.contains('/') || name.contains("..") {
        return Err(CgroupError::Layout(format!("{name:?} cannot name a cgroup")));
    }
    Ok(())
}

impl CgroupManager for V1 {
    fn version(&self) -> CgroupVersion {
        CgroupVersion::V1
    }

    fn describe(&self) -> String {
        let bases: Vec<String> = self.hierarchies.iter().map(|h| h.base.display().to_string()).collect();
        format!("cgroup v1 at {}", bases.join(", "))
    }

    fn prepare(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            // Whatever an earlier run left: its streamlets are killed with it.
            fs::remove_tree(&h.base)?;
            std::fs::create_dir_all(&h.base).map_err(|source| CgroupError::Create { path: h.base.clone(), source })?;
        }
        Ok(())
    }

    fn create(&self, pool: &str, worker: u64, limits: &Limits) -> Result<WorkerCgroup, CgroupError> {
        check_name(pool)?;
        let mut dirs = Vec::new();
        let made = (|| {
            for h in &self.hierarchies {
                let pool_dir = h.base.join(pool);
                fs::mkdir(&pool_dir)?;
                let dir = pool_dir.join(worker.to_string());
                fs::mkdir(&dir)?;
                dirs.push(dir);
            }
            self.write_limits(&dirs, limits)?;
            dirs.iter().map(|d| fs::open_procs(d)).collect::<Result<Vec<_>, _>>()
        })();
        match made {
            Ok(procs) => Ok(WorkerCgroup::new(dirs, procs)),
            Err(e) => {
                // Nothing half-made is left behind.
                for dir in &dirs {
                    let _ = fs::rmdir(dir);
                }
                Err(e)
            }
        }
    }

    fn update(&self, cgroup: &WorkerCgroup, limits: &Limits) -> Result<(), CgroupError> {
        self.write_limits(&cgroup.dirs, limits)
    }

    fn accounting(&self, cgroup: &WorkerCgroup) -> Result<Accounting, CgroupError> {
        let mut a = Accounting::default();
        if let Some(dir) = self.dir(cgroup, "cpuacct") {
            a.cpu_usage_us = fs::read_u64(&dir.join("cpuacct.usage"))? / 1000;
        }
        if let Some(dir) = self.dir(cgroup, "cpu") {
            a.cpu_throttled_us = fs::read_key(&dir.join("cpu.stat"), "throttled_time")?.unwrap_or(0) / 1000;
        }
        if let Some(dir) = self.dir(cgroup, "memory") {
            a.memory_current = fs::read_u64(&dir.join("memory.usage_in_bytes"))?;
            a.memory_peak = fs::read_u64(&dir.join("memory.max_usage_in_bytes"))?;
            a.oom_kills = fs::read_key(&dir.join("memory.oom_control"), "oom_kill")?.unwrap_or(0);
        }
        if let Some(dir) = self.dir(cgroup, "pids") {
            a.pids_current = fs::read_u64(&dir.join("pids.current"))?;
        }
        Ok(a)
    }

    fn remove(&self, cgroup: &WorkerCgroup) -> Result<(), CgroupError> {
        let mut first_error = None;
        for dir in &cgroup.dirs {
            let removed = fs::kill_all(dir, Duration::from_secs(2)).and_then(|()| fs::rmdir(dir));
            if let Err(e) = removed {
                first_error.get_or_insert(e);
                continue;
            }
            // The pool's directory goes when its last streamlet does.
            if let Some(pool_dir) = dir.parent() {
                let _ = std::fs::remove_dir(pool_dir);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn teardown(&self) -> Result<(), CgroupError> {
        for h in &self.hierarchies {
            fs::remove_tree(&h.base)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/cpu rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpu
27 25 0:24 / /sys/fs/cgroup/cpuacct rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,cpuacct
28 25 0:25 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,memory
29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime - cgroup cgroup rw,pids
30 25 0:27 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw
";

    const CGROUP: &str = "8:pids:/\n4:memory:/jobs/a1\n2:cpuacct:/\n1:cpu:/\n0::/\n";

    #[test]
    fn discovers_each_hierarchy_under_the_daemons_own_cgroup() {
        let v1 = V1::from_proc(MOUNTINFO, CGROUP, "streamlet").unwrap();
        let bases: Vec<_> = v1.hierarchies().iter().map(|h| h.base.display().to_string()).collect();
        assert_eq!(
            bases,
            [
                "/sys/fs/cgroup/cpu/streamlet",
                "/sys/fs/cgroup/cpuacct/streamlet",
                "/sys/fs/cgroup/memory/jobs/a1/streamlet",
                "/sys/fs/cgroup/pids/streamlet"
            ]
        );
    }

    #[test]
    fn co_mounted_controllers_share_one_hierarchy() {
        let mountinfo = "26 25 0:23 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                         28 25 0:25 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
                         29 25 0:26 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n";
        let cgroup = "3:cpu,cpuacct:/x\n4:memory:/x\n8:pids:/x\n";
        let v1 = V1::from_proc(mountinfo, cgroup, "s").unwrap();
        assert_eq!(v1.hierarchies().len(), 3);
        assert_eq!(v1.hierarchies()[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(v1.hierarchies()[0].base, Path::new("/sys/fs/cgroup/cpu,cpuacct/x/s"));
    }

    #[test]
    fn a_missing_controller_is_named() {
        let mountinfo: String = MOUNTINFO.lines().filter(|l| !l.contains("pids")).map(|l| format!("{l}\n")).collect();
        let err = V1::from_proc(&mountinfo, CGROUP, "streamlet").unwrap_err();
        assert!(err.to_string().contains("pids"), "{err}");
        assert!(V1::from_proc(MOUNTINFO, CGROUP, "../escape").is_err());
    }

    /// A fake hierarchy: regular files where cgroupfs has control files.
    fn fake(root: &Path) -> V1 {
        let hierarchies = CONTROLLERS
            .iter()
            .map(|c| Hierarchy { controllers: vec![(*c).to_owned()], base: root.join(c).join("streamlet") })
            .collect();
        V1::with_hierarchies(hierarchies)
    }

    fn touch_controls(dir: &Path, controller: &str) {
        let files: &[&str] = match controller {
            "cpu" => &["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.stat"],
            "cpuacct" => &["cpuacct.usage"],
            "memory" => &[
                "memory.limit_in_bytes",
                "memory.memsw.limit_in_bytes",
                "memory.usage_in_bytes",
                "memory.max_usage_in_bytes",
                "memory.oom_control",
            ],
            _ => &["pids.max", "pids.current"],
        };
        for f in files.iter().chain(&["cgroup.procs"]) {
            std::fs::write(dir.join(f), "").unwrap();
        }
    }

    #[test]
    fn writes_limits_and_reads_accounting_in_a_fake_tree() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = fake(tmp.path());
        for c in CONTROLLERS {
            let dir = tmp.path().join(c).join("streamlet/echo/7");
            std::fs::create_dir_all(&dir).unwrap();
            touch_controls(&dir, c);
        }
        let limits =
            Limits { cpu: Some(super::super::CpuLimit::from_cores(0.5)), memory: Some(64 << 20), pids: Some(64) };
        let cg = v1.create("echo", 7, &limits).unwrap();
        assert_eq!(cg.procs_fds().len(), 4);
        let read =
            |c: &str, f: &str| std::fs::read_to_string(tmp.path().join(c).join("streamlet/echo/7").join(f)).unwrap();
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
        assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000");
        assert_eq!(read("memory", "memory.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(read("memory", "memory.memsw.limit_in_bytes"), (64u64 << 20).to_string());
        assert_eq!(read("pids", "pids.max"), "64");

        let dir = |c: &str| tmp.path().join(c).join("streamlet/echo/7");
        std::fs::write(dir("cpuacct").join("cpuacct.usage"), "2500000000\n").unwrap();
        std::fs::write(dir("cpu").join("cpu.stat"), "nr_periods 10\nnr_throttled 4\nthrottled_time 700000000\n")
            .unwrap();
        std::fs::write(dir("memory").join("memory.usage_in_bytes"), "1048576\n").unwrap();
        std::fs::write(dir("memory").join("memory.max_usage_in_bytes"), "2097152\n").unwrap();
        std::fs::write(dir("memory").join("memory.oom_control"), "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n")
            .unwrap();
        std::fs::write(dir("pids").join("pids.current"), "3\n").unwrap();
        let a = v1.accounting(&cg).unwrap();
        assert_eq!(
            a,
            Accounting {
                cpu_usage_us: 2_500_000,
                cpu_throttled_us: 700_000,
                memory_current: 1 << 20,
                memory_peak: 2 << 20,
                oom_kills: 1,
                pids_current: 3
            }
        );
        let unlimited = Limits::default();
        v1.update(&cg, &unlimited).unwrap();
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "-1");
        assert_eq!(read("pids", "pids.max"), "max");
    }

    #[test]
    fn a_missing_control_file_is_an_error_not_a_new_file() {
        let tmp = tempfile::tempdir().unwrap();
        let v1 = fake(tmp.path());
        for c in CONTROLLERS {
            std::fs::create_dir_all(tmp.path().join(c).join("streamlet")).unwrap();
        }
        let limits = Limits { pids: Some(8), ..Limits::default() };
        let err = v1.create("echo", 1, &limits).unwrap_err();
        assert!(matches!(err, CgroupError::Write { .. }), "{err}");
        assert!(!tmp.path().join("cpu/streamlet/echo/1/cpu.cfs_period_us").exists());
    }
}
