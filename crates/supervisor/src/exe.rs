//! The streamlet binary, held open by the daemon.
//!
//! Without `daemon.worker_binary` it is the daemon's own executable:
//! `streamletd` contains the built-in worker and becomes it when started as
//! [`BUILTIN_ARG0`]. The daemon and its streamlets then always speak the
//! same version of the channel, and there is no second file to install,
//! upgrade in step or find (`cargo run --bin streamletd` builds just the one).
//! A worker built with handlers of its own (`streamlet_worker::run_main`) is
//! named by `worker_binary`.
//!
//! A streamlet execs after it has changed to its own uid, and that uid may
//! not be able to reach the binary's path (a build tree in a private
//! directory, say). So the daemon opens the binary once, as itself, and
//! streamlets exec it through `/proc/self/fd/N`, which needs only execute
//! permission on the file. It also means every streamlet runs the binary that
//! was there at start, whatever happens to the path later. Scripts (`#!`)
//! are exec'd by path: the kernel could not hand a close-on-exec descriptor
//! to their interpreter.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Descriptor numbers below this are left for the child's fixed ones (fd 3).
const MIN_FD: libc::c_int = 64;

/// The `argv[0]` a streamlet of the built-in worker is started with, and by
/// which `streamletd` knows to be one (and `ps` shows it).
pub const BUILTIN_ARG0: &str = "streamlet-worker";

#[derive(Debug)]
pub struct WorkerExe {
    path: PathBuf,
    fd: Option<OwnedFd>,
    arg0: std::ffi::OsString,
}

impl WorkerExe {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut file = std::fs::File::open(path)?;
        let mut magic = [0u8; 4];
        let elf = file.read_exact(&mut magic).is_ok() && magic == *b"\x7fELF";
        if !elf {
            // A script is exec'd by its path after the streamlet's mount
            // namespace is made, in which these directories are empty.
            if ["/tmp", "/var/tmp", "/dev/shm"].iter().any(|d| path.starts_with(d)) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a script streamlet binary cannot live in /tmp, /var/tmp or /dev/shm, which streamlets see as their own empty directories",
                ));
            }
            return Ok(Self { path: path.to_owned(), fd: None, arg0: path.as_os_str().to_owned() });
        }
        Ok(Self { path: path.to_owned(), fd: Some(high(&file)?), arg0: path.as_os_str().to_owned() })
    }

    /// The daemon's own executable, as the built-in worker: the file this
    /// process runs (`/proc/self/exe`), even if its path has since been
    /// replaced by an upgrade or removed.
    pub fn builtin() -> std::io::Result<Self> {
        let mut exe = Self::builtin_of(Path::new("/proc/self/exe"))?;
        exe.path = std::fs::read_link("/proc/self/exe")?;
        Ok(exe)
    }

    /// A `streamletd` binary at `path`, as the built-in worker.
    pub fn builtin_of(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        Ok(Self { path: path.to_owned(), fd: Some(high(&file)?), arg0: BUILTIN_ARG0.into() })
    }

    /// The path to exec in the child.
    pub fn exec_path(&self) -> PathBuf {
        match &self.fd {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => self.path.clone(),
        }
    }

    /// The binary's real path, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What a streamlet is started with as `argv[0]`: the path of a
    /// configured binary, [`BUILTIN_ARG0`] for the built-in worker.
    pub fn arg0(&self) -> &std::ffi::OsStr {
        &self.arg0
    }
}

/// A close-on-exec duplicate of `file` numbered [`MIN_FD`] or above.
fn high(file: &std::fs::File) -> std::io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one (or
    // -1), which we then own.
    let fd = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_DUPFD_CLOEXEC, MIN_FD) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fcntl just returned this descriptor to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
