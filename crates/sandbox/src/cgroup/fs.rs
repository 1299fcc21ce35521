//! File operations on a cgroup tree, each failure naming its path.
//!
//! Writes never create files: on cgroupfs a missing control file means the
//! controller is not enabled there, and that must be an error, not a new
//! regular file.

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::CgroupError;

/// Writes `value` to the existing file `path` in one `write(2)`.
pub fn write(path: &Path, value: &str) -> Result<(), CgroupError> {
    let err = |source| CgroupError::Write { path: path.to_owned(), value: value.to_owned(), source };
    let mut file = OpenOptions::new().write(true).truncate(true).open(path).map_err(err)?;
    file.write_all(value.as_bytes()).map_err(err)
}

pub fn read(path: &Path) -> Result<String, CgroupError> {
    std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path: path.to_owned(), source })
}

/// Reads a file holding one number (`max` reads as `u64::MAX`).
pub fn read_u64(path: &Path) -> Result<u64, CgroupError> {
    let text = read(path)?;
    let t = text.trim();
    if t == "max" {
        return Ok(u64::MAX);
    }
    t.parse().map_err(|_| CgroupError::Parse { path: path.to_owned(), content: text.clone() })
}

/// The value of `key` in a flat keyed file (`cpu.stat`, `memory.events`).
pub fn read_key(path: &Path, key: &str) -> Result<Option<u64>, CgroupError> {
    let text = read(path)?;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some(key) {
            let value = words.next().unwrap_or("");
            return value
                .parse()
                .map(Some)
                .map_err(|_| CgroupError::Parse { path: path.to_owned(), content: line.to_owned() });
        }
    }
    Ok(None)
}

pub fn mkdir(path: &Path) -> Result<(), CgroupError> {
    match std::fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(CgroupError::Create { path: path.to_owned(), source }),
    }
}

/// `cgroup.procs` of `dir`, opened write-only and close-on-exec for a child to
/// write itself into.
pub fn open_procs(dir: &Path) -> Result<OwnedFd, CgroupError> {
    let path = dir.join("cgroup.procs");
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(&path)
        .map(OwnedFd::from)
        .map_err(|source| CgroupError::Write { path, value: "(open for the child)".into(), source })
}

/// The pids in `dir/cgroup.procs`; none if the cgroup is already gone.
pub fn procs(dir: &Path) -> Result<Vec<i32>, CgroupError> {
    let path = dir.join("cgroup.procs");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        // ENODEV: the cgroup is being removed under us.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV) => {
            return Ok(Vec::new())
        }
        Err(source) => return Err(CgroupError::Read { path, source }),
    };
    text.lines()
        .map(|l| l.trim().parse().map_err(|_| CgroupError::Parse { path: path.clone(), content: l.into() }))
        .collect()
}

/// SIGKILLs every process in `dir` (not below it) until none is left, for at
/// most `wait`. Refuses a cgroup that holds the daemon itself.
pub fn kill_all(dir: &Path, wait: Duration) -> Result<(), CgroupError> {
    let deadline = Instant::now() + wait;
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    loop {
        let pids = procs(dir)?;
        if pids.contains(&me) {
            return Err(CgroupError::Layout(format!("{} holds the daemon itself: not killing it", dir.display())));
        }
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            // SAFETY: kill(2) on pids the kernel lists in our own cgroup;
            // a pid that already exited gives ESRCH, which is fine.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if Instant::now() > deadline {
            return Err(CgroupError::Layout(format!("{}: processes still alive after SIGKILL", dir.display())));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Removes `dir` and every cgroup below it, deepest first, killing what runs
/// in each before its removal.
pub fn remove_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(CgroupError::Read { path: dir.to_owned(), source }),
    };
    let children: Vec<PathBuf> =
        entries.filter_map(Result::ok).filter(|e| e.file_type().is_ok_and(|t| t.is_dir())).map(|e| e.path()).collect();
    for child in children {
        remove_tree(&child)?;
    }
    if dir.join("cgroup.procs").exists() {
        kill_all(dir, Duration::from_secs(2))?;
    }
    rmdir(dir)
}

/// `rmdir` of a cgroup, retried briefly: the kernel refuses (EBUSY) until
/// the last process in it is fully gone.
pub fn rmdir(dir: &Path) -> Result<(), CgroupError> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(source) => return Err(CgroupError::Remove { path: dir.to_owned(), source }),
        }
    }
}
