//! Which daemon hands out which uids: a lease per daemon on its range, so
//! that two daemons on one host never give the same uid to streamlets that
//! could then signal or trace each other.
//!
//! A lease is a file named `FIRST-LAST` in a registry directory, held with
//! an exclusive `flock` for the daemon's life: the kernel drops the lock when
//! the daemon dies, however it dies, so a file whose lock can be taken is
//! stale and is removed. The directory's own `.lock` makes each look-and-take
//! atomic among daemons starting together.
//!
//! ```
//! use streamlet_sandbox::uids::Registry;
//!
//! let dir = tempfile::tempdir()?;
//! let registry = Registry::new(dir.path());
//! let a = registry.take((70000, 70099))?;
//! assert!(registry.take((70050, 70149)).is_err(), "overlaps a live lease");
//! let b = registry.take_slice((61184, 65519), 512, 0)?;
//! assert_eq!(b.range(), (61184, 61695));
//! drop(a);
//! registry.take((70050, 70149))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where the daemons of a host keep their leases.
pub const REGISTRY: &str = "/run/streamlet-uids";

#[derive(Debug, thiserror::Error)]
pub enum UidError {
    #[error("uids {first}-{last} overlap {other_first}-{other_last}, which another streamletd on this host holds ({path}): give each daemon its own [sandbox] uids")]
    Overlap { first: u32, last: u32, other_first: u32, other_last: u32, path: PathBuf },
    #[error("every slice of {size} uids in {first}-{last} is held by another streamletd on this host: give this one its own [sandbox] uids")]
    Exhausted { first: u32, last: u32, size: u32 },
    #[error("uid registry {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The registry directory of a host (or of a test).
#[derive(Debug, Clone)]
pub struct Registry {
    dir: PathBuf,
}

/// A range held for this daemon's life; dropping it gives the range back.
#[derive(Debug)]
pub struct Lease {
    range: (u32, u32),
    path: PathBuf,
    _file: File,
}

impl Lease {
    pub fn range(&self) -> (u32, u32) {
        self.range
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Whether two inclusive ranges share a uid.
pub fn overlap(a: (u32, u32), b: (u32, u32)) -> bool {
    a.0 <= b.1 && b.0 <= a.1
}

/// The first slice of `size` uids in `within` (slices counted from its
/// start, the last partial one left out) that overlaps none of `held`,
/// trying slice `preferred` first and going round.
pub fn free_slice(within: (u32, u32), size: u32, preferred: usize, held: &[(u32, u32)]) -> Option<(u32, u32)> {
    let count = ((u64::from(within.1) - u64::from(within.0) + 1) / u64::from(size.max(1))) as usize;
    (0..count)
        .map(|i| (preferred + i) % count)
        .map(|i| within.0 + i as u32 * size)
        .map(|first| (first, first + size - 1))
        .find(|slice| !held.iter().any(|h| overlap(*h, *slice)))
}

fn flock(file: &File, how: libc::c_int) -> io::Result<bool> {
    // SAFETY: flock(2) on a descriptor the File owns.
    if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(false);
    }
    Err(e)
}

impl Registry {
    pub fn new(dir: &Path) -> Registry {
        Registry { dir: dir.to_owned() }
    }

    /// Takes exactly `range`, or says which live lease it overlaps.
    pub fn take(&self, range: (u32, u32)) -> Result<Lease, UidError> {
        self.locked(|held| match held.iter().find(|(h, _)| overlap(*h, range)) {
            Some(((other_first, other_last), path)) => Err(UidError::Overlap {
                first: range.0,
                last: range.1,
                other_first: *other_first,
                other_last: *other_last,
                path: path.clone(),
            }),
            None => Ok(range),
        })
    }

    /// Takes the first free slice of `size` uids in `within`, trying slice
    /// `preferred` first.
    pub fn take_slice(&self, within: (u32, u32), size: u32, preferred: usize) -> Result<Lease, UidError> {
        self.locked(|held| {
            let held: Vec<(u32, u32)> = held.iter().map(|(h, _)| *h).collect();
            free_slice(within, size, preferred, &held).ok_or(UidError::Exhausted {
                first: within.0,
                last: within.1,
                size,
            })
        })
    }

    /// Under the directory's lock: the live leases (stale ones removed), a
    /// choice among them, and the new lease for the chosen range.
    fn locked(
        &self,
        choose: impl FnOnce(&[((u32, u32), PathBuf)]) -> Result<(u32, u32), UidError>,
    ) -> Result<Lease, UidError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| UidError::Io { path, source }
        };
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir).map_err(io(&self.dir))?;
        let lock_path = self.dir.join(".lock");
        let lock = OpenOptions::new().create(true).append(true).mode(0o600).open(&lock_path).map_err(io(&lock_path))?;
        flock(&lock, libc::LOCK_EX).map_err(io(&lock_path))?;
        let mut held = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
            let Some(range) = entry.file_name().to_str().and_then(parse) else { continue };
            let path = entry.path();
            let Ok(file) = OpenOptions::new().read(true).open(&path) else { continue };
            if flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(io(&path))? {
                // Its daemon is gone.
                let _ = std::fs::remove_file(&path);
            } else {
                held.push((range, path));
            }
        }
        let range = choose(&held)?;
        let path = self.dir.join(format!("{}-{}", range.0, range.1));
        let mut file =
            OpenOptions::new().create(true).truncate(true).write(true).mode(0o600).open(&path).map_err(io(&path))?;
        if !flock(&file, libc::LOCK_EX | libc::LOCK_NB).map_err(io(&path))? {
            return Err(io(&path)(io::Error::from_raw_os_error(libc::EWOULDBLOCK)));
        }
        let _ = writeln!(file, "{}", std::process::id());
        Ok(Lease { range, path, _file: file })
    }
}

fn parse(name: &str) -> Option<(u32, u32)> {
    let (a, b) = name.split_once('-')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_when_they_share_a_uid() {
        assert!(overlap((10, 20), (20, 30)));
        assert!(overlap((10, 20), (12, 13)));
        assert!(!overlap((10, 20), (21, 30)));
        assert!(!overlap((21, 30), (10, 20)));
    }

    #[test]
    fn a_free_slice_is_the_preferred_one_else_the_next_round() {
        let within = (1000, 1999);
        assert_eq!(free_slice(within, 250, 0, &[]), Some((1000, 1249)));
        assert_eq!(free_slice(within, 250, 2, &[]), Some((1500, 1749)));
        assert_eq!(free_slice(within, 250, 3, &[(1750, 1999)]), Some((1000, 1249)), "round to the start");
        assert_eq!(free_slice(within, 250, 1, &[(1100, 1300)]), Some((1500, 1749)), "an explicit range blocks two");
        let all = [(1000, 1999)];
        assert_eq!(free_slice(within, 250, 0, &all), None);
        assert_eq!(free_slice((1000, 1300), 250, 5, &[]), Some((1000, 1249)), "one whole slice; the rest is left out");
    }

    #[test]
    fn leases_exclude_each_other_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::new(&dir.path().join("uids"));
        let a = registry.take_slice((61184, 65519), 512, 3).unwrap();
        assert_eq!(a.range(), (62720, 63231));
        let b = registry.take_slice((61184, 65519), 512, 3).unwrap();
        assert_eq!(b.range(), (63232, 63743), "the next slice");
        let err = registry.take((63000, 63100)).unwrap_err().to_string();
        assert!(err.contains("63000-63100 overlap 62720-63231") && err.contains("[sandbox] uids"), "{err}");
        drop(a);
        assert!(!dir.path().join("uids/62720-63231").exists(), "given back");
        registry.take((63000, 63100)).unwrap();
    }

    #[test]
    fn a_lease_file_nobody_holds_is_stale_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("70000-70099"), "4242\n").unwrap();
        std::fs::write(dir.path().join("not-a-range"), "").unwrap();
        let registry = Registry::new(dir.path());
        let lease = registry.take((70000, 70099)).unwrap();
        assert_eq!(lease.range(), (70000, 70099));
        let pid = std::fs::read_to_string(dir.path().join("70000-70099")).unwrap();
        assert_eq!(pid.trim(), std::process::id().to_string());
    }
}
