//! fork + exec of a streamlet.
//!
//! Between fork and exec only async-signal-safe calls run (`dup2`, `fcntl`,
//! `close_range`, `prctl`, `getppid`): the child of a multi-threaded parent may
//! not allocate or take locks.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::process::Stdio;

use tokio::process::{Child, Command};

/// The descriptor number of the control channel in the streamlet.
pub const CONTROL_FD: i32 = 3;

/// What to start.
#[derive(Debug)]
pub struct SpawnSpec {
    /// The streamlet binary.
    pub program: PathBuf,
    /// `argv[0]`, when it should differ from `program`.
    pub arg0: Option<OsString>,
    pub args: Vec<OsString>,
    /// The streamlet's end of the control channel; becomes [`CONTROL_FD`].
    pub control: OwnedFd,
    /// The streamlet's stderr (a pipe the daemon reads); `None`: `/dev/null`.
    /// Never the daemon's own stderr, which may be a terminal or a log file.
    pub stderr: Option<OwnedFd>,
    /// The sandbox to apply between fork and exec; `None` runs the streamlet
    /// unconfined (only where the daemon cannot sandbox and is told it may
    /// run without).
    pub plan: Option<std::sync::Arc<crate::plan::ChildPlan>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start streamlet binary {program}: {source}")]
    Exec { program: PathBuf, source: io::Error },
}

/// Starts the streamlet. The returned child is reaped by tokio (pidfd), never
/// by `waitpid(-1)`. Call from the thread that lives as long as the daemon:
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked exits.
pub fn spawn(spec: SpawnSpec) -> Result<Child, SpawnError> {
    let control = spec.control.as_raw_fd();
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    let plan = spec.plan.clone();
    let mut cmd = Command::new(&spec.program);
    if let Some(arg0) = &spec.arg0 {
        std::os::unix::process::CommandExt::arg0(cmd.as_std_mut(), arg0);
    }
    cmd.args(&spec.args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(spec.stderr.map_or_else(Stdio::null, Stdio::from))
        .kill_on_drop(false);
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (dup2, fcntl, syscall(close_range), prctl,
    // getppid, and the raw system calls of ChildPlan); it allocates nothing
    // and takes no lock (the Arc is only dereferenced, never dropped there).
    unsafe {
        cmd.pre_exec(move || {
            // Into the cgroups first: limited from here on, and before any
            // descriptor is renumbered.
            if let Some(plan) = &plan {
                plan.join_cgroups()?;
            }
            // A session of its own: no controlling terminal to read or push
            // input into, and a terminal's Ctrl-C reaches only the daemon.
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            // The control channel at a fixed number, without CLOEXEC.
            if control == CONTROL_FD {
                if libc::fcntl(CONTROL_FD, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(control, CONTROL_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            // Everything above it closes at exec (marking instead of closing
            // keeps std's exec-error pipe working until the exec itself).
            let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_uint;
            if libc::syscall(libc::SYS_close_range, CONTROL_FD as libc::c_uint + 1, libc::c_uint::MAX, flags) < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(plan) = &plan {
                plan.apply_after_cgroups()?;
            }
            // After the change of user, which clears it.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            // The daemon may have died before prctl took effect.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            if let Some(plan) = &plan {
                plan.lock()?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| SpawnError::Exec { program: spec.program.clone(), source })?;
    drop(spec.control);
    Ok(child)
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixStream;

    use super::*;

    /// The child sees the control channel on fd 3, no other descriptor of
    /// ours, and an empty environment.
    #[tokio::test]
    async fn child_gets_fd_3_only_and_no_environment() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let _unrelated = std::fs::File::open("/dev/null").unwrap();
        let script = "ls /proc/self/fd >&3; echo env=$(env | grep -v '^PWD=\\|^SHLVL=\\|^_=' | wc -l) >&3";
        let child = spawn(SpawnSpec {
            program: "/bin/sh".into(),
            arg0: None,
            args: vec!["-c".into(), script.into()],
            control: theirs.into(),
            stderr: None,
            plan: None,
        })
        .unwrap();
        let out = child.wait_with_output().await.unwrap();
        assert!(out.status.success());
        let mut text = String::new();
        use std::io::Read;
        ours.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        (&ours).read_to_string(&mut text).unwrap();
        let fds: Vec<&str> = text.lines().take_while(|l| !l.starts_with("env=")).collect();
        // 0, 1, 2, 3 and the one ls opens to list the directory.
        assert!(fds.len() <= 5, "inherited descriptors: {fds:?}");
        assert!(fds.contains(&"3"));
        assert!(text.contains("env=0"), "{text}");
    }

    #[tokio::test]
    async fn a_missing_binary_is_a_named_error() {
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let err = spawn(SpawnSpec {
            program: "/nonexistent/streamlet-worker".into(),
            arg0: None,
            args: vec![],
            control: theirs.into(),
            stderr: None,
            plan: None,
        })
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/streamlet-worker"), "{err}");
    }
}
