//! fork + exec of a streamlet, by a raw `clone3`.
//!
//! Not `std`'s or tokio's `Command`: neither can make the child the first
//! process of a pid namespace of its own (`CLONE_NEWPID`; an `unshare` in
//! the child would only move its children). With a pid namespace the
//! streamlet is its namespace's init: when it dies, the kernel kills
//! everything it started, and nothing inside can stop or kill it.
//!
//! Where `clone3` is refused with `ENOSYS` (Linux before 5.3, container
//! runtimes whose seccomp profile refuses it so that their filters can read
//! the flags, tools such as valgrind), the same child is made by the older
//! `clone`, which takes the same flags here and returns the pidfd through
//! its `parent_tid` argument (Linux 5.2).
//!
//! The child is held by the pidfd `CLONE_PIDFD` returns ([`Child`]). Whether
//! the exec worked comes back over a close-on-exec pipe: end of file means
//! it did, four bytes are the errno of the step that failed.
//!
//! Between clone and exec only async-signal-safe calls run (`dup2`,
//! `close_range`, `prctl`, `poll`, `write`, the raw calls of the plan): the
//! child of a multi-threaded parent may not allocate or take locks. Every
//! path, argument and descriptor is made ready before the clone.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::child::Child;

/// The descriptor number of the control channel in the streamlet.
pub const CONTROL_FD: i32 = 3;

/// Descriptors the child reads from before it renumbers them sit at or
/// above this, clear of 0 to 3.
const HIGH_FD: libc::c_int = 10;

const CLONE_PIDFD: u64 = 0x1000;

/// `struct clone_args`, the first version (64 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
}

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
    /// The sandbox to apply between clone and exec; `None` runs the streamlet
    /// unconfined (only where the daemon cannot sandbox and is told it may
    /// run without). Its `pid_namespace` makes the child the init of a pid
    /// namespace of its own.
    pub plan: Option<std::sync::Arc<crate::plan::ChildPlan>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("cannot start streamlet binary {program}: {source}")]
    Exec { program: PathBuf, source: io::Error },
    #[error("cannot prepare the start of {program}: {source}")]
    Prepare { program: PathBuf, source: io::Error },
}

/// Everything the child needs, made before the clone.
struct Prepared {
    path: CString,
    /// The strings `argv` points into.
    _args: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: [*const libc::c_char; 1],
    /// Numbered [`HIGH_FD`] or above, close-on-exec.
    control: OwnedFd,
    null: OwnedFd,
    stderr: OwnedFd,
    report: OwnedFd,
}

fn high(fd: libc::c_int) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC of a descriptor the caller owns returns a new
    // one (or -1), which we then own.
    let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, HIGH_FD) };
    if high < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just returned to us alone.
    Ok(unsafe { OwnedFd::from_raw_fd(high) })
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in an argument"))
}

impl Prepared {
    fn new(spec: &SpawnSpec, report: OwnedFd) -> io::Result<Prepared> {
        let path = cstring(spec.program.as_os_str().as_bytes())?;
        let arg0 = spec.arg0.as_deref().unwrap_or(spec.program.as_os_str());
        let args: Vec<CString> = std::iter::once(arg0)
            .chain(spec.args.iter().map(OsString::as_os_str))
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
        argv.push(std::ptr::null());
        let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
        let stderr = match &spec.stderr {
            Some(fd) => high(fd.as_raw_fd())?,
            None => high(null.as_raw_fd())?,
        };
        Ok(Prepared {
            path,
            _args: args,
            argv,
            envp: [std::ptr::null()],
            control: high(spec.control.as_raw_fd())?,
            null: high(null.as_raw_fd())?,
            stderr,
            report: high(report.as_raw_fd())?,
        })
    }
}

/// Starts the streamlet. The returned child is reaped through its pidfd,
/// never by `waitpid(-1)`. Call from the thread that lives as long as the
/// daemon (`PR_SET_PDEATHSIG` fires when the *thread* that forked exits),
/// inside a tokio runtime.
pub fn spawn(spec: SpawnSpec) -> Result<Child, SpawnError> {
    let prepare = |source| SpawnError::Prepare { program: spec.program.clone(), source };
    let (report_read, report_write) = pipe().map_err(prepare)?;
    let prepared = Prepared::new(&spec, report_write).map_err(prepare)?;
    let pid_namespace = spec.plan.as_ref().is_some_and(|plan| plan.pid_namespace);
    let mut pidfd: libc::c_int = -1;
    let args = CloneArgs {
        flags: CLONE_PIDFD | if pid_namespace { libc::CLONE_NEWPID as u64 } else { 0 },
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        exit_signal: libc::SIGCHLD as u64,
        ..CloneArgs::default()
    };
    let plan = spec.plan.as_deref();
    let legacy = CLONE3_REFUSED.load(Ordering::Relaxed);
    let mut pid = if legacy {
        -1
    } else {
        // SAFETY: clone3 without CLONE_VM is a fork: the child gets a copy of
        // this thread alone, on a copy of its stack, and runs `child` only,
        // which makes async-signal-safe calls and never returns.
        unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) }
    };
    if legacy || (pid < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS)) {
        if !legacy {
            CLONE3_REFUSED.store(true, Ordering::Relaxed);
            tracing_note_clone3_refused();
        }
        // SAFETY: as above: clone without CLONE_VM and with no new stack is
        // a fork (x86_64 and aarch64 order: flags, stack, parent_tid,
        // child_tid, tls); CLONE_PIDFD stores the pidfd at `parent_tid`.
        pid = unsafe { legacy_clone(args.flags | args.exit_signal, &mut pidfd) };
    }
    if pid == 0 {
        // SAFETY: in the child, as above.
        unsafe { child(&prepared, plan) }
    }
    if pid < 0 {
        return Err(prepare(io::Error::last_os_error()));
    }
    // SAFETY: CLONE_PIDFD stored a new pidfd, ours alone.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    // Only the child may hold the write end now: end of file is its exec.
    drop(prepared);
    drop(spec.control);
    let child = Child::new(pid as u32, pidfd);
    let failed = exec_error(&report_read, EXEC_TIMEOUT);
    let mut child = child.map_err(prepare)?;
    if let Some(errno) = failed {
        // It reported and exits at once.
        let _ = child.start_kill();
        while matches!(child.try_wait(), Ok(None)) {
            std::thread::yield_now();
        }
        return Err(SpawnError::Exec { program: spec.program, source: io::Error::from_raw_os_error(errno) });
    }
    Ok(child)
}

/// `clone3` was refused with `ENOSYS` once: every spawn after goes straight
/// to `clone`.
static CLONE3_REFUSED: AtomicBool = AtomicBool::new(false);

/// The older `clone`, as a fork with `flags` (the exit signal in its low
/// byte) and the pidfd stored in `pidfd`.
///
/// # Safety
/// As a fork: the caller's child must run only async-signal-safe code.
unsafe fn legacy_clone(flags: u64, pidfd: &mut libc::c_int) -> libc::c_long {
    // SAFETY: the caller's; the pointer is to a live c_int of ours.
    unsafe { libc::syscall(libc::SYS_clone, flags as libc::c_ulong, 0usize, pidfd as *mut libc::c_int, 0usize, 0usize) }
}

/// Said once, to stderr (this crate logs nothing else): the spawns go on.
fn tracing_note_clone3_refused() {
    eprintln!("streamlet-sandbox: clone3 is refused here (ENOSYS); starting streamlets with clone instead");
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 just returned both to us alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// How long a child may take from the clone to its exec before it is
/// killed and the spawn fails: a child stuck on the way (a lock it inherited,
/// a cgroup the kernel is slow to move it into) must not keep the one thread
/// every spawn goes through.
pub const EXEC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The errno the child reported, or `None` at end of file (it exec'd, or
/// died without a word, which its exit status will tell). `ETIMEDOUT` when
/// it did neither within `limit`.
fn exec_error(report: &OwnedFd, limit: std::time::Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    let mut buf = [0u8; 4];
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let mut poll = libc::pollfd { fd: report.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: poll on one live descriptor of ours.
        let ready = unsafe { libc::poll(&mut poll, 1, left.as_millis().min(i32::MAX as u128) as libc::c_int) };
        if ready == 0 {
            return Some(libc::ETIMEDOUT);
        }
        if ready < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break;
        }
        // SAFETY: a read into the rest of a local buffer.
        let n = unsafe { libc::read(report.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => break,
            n if n > 0 => got += n as usize,
            _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => {}
            _ => break,
        }
    }
    (got == buf.len()).then(|| i32::from_ne_bytes(buf))
}

/// The child, from clone to exec. Never returns: it execs, or reports the
/// errno of the failed step on the pipe and exits with 127.
///
/// # Safety
/// Only in the child of [`spawn`]'s clone.
unsafe fn child(prepared: &Prepared, plan: Option<&crate::plan::ChildPlan>) -> ! {
    // SAFETY: as the caller promises; `steps` is async-signal-safe.
    let errno = match unsafe { steps(prepared, plan) } {
        Ok(()) => libc::ENOEXEC,
        Err(e) => e.raw_os_error().unwrap_or(libc::EINVAL),
    };
    let bytes = errno.to_ne_bytes();
    // SAFETY: a write of a local buffer, then _exit; both async-signal-safe.
    unsafe {
        libc::write(prepared.report.as_raw_fd(), bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127)
    }
}

/// The steps of [`child`], up to the exec, which returns only on failure.
///
/// # Safety
/// As for [`child`].
unsafe fn steps(prepared: &Prepared, plan: Option<&crate::plan::ChildPlan>) -> io::Result<()> {
    let check = |rc: libc::c_long| if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) };
    // SAFETY: raw system calls on descriptors and static or prepared data;
    // the caller guarantees we are the child, about to exec or exit.
    unsafe {
        // Into the cgroups first: limited from here on.
        if let Some(plan) = plan {
            plan.join_cgroups()?;
        }
        // A session of its own: no controlling terminal to read or push
        // input into, and a terminal's Ctrl-C reaches only the daemon.
        check(libc::setsid() as libc::c_long)?;
        // The fixed descriptors, from copies above them (dup2 clears CLOEXEC).
        for (from, to) in
            [(&prepared.null, 0), (&prepared.null, 1), (&prepared.stderr, 2), (&prepared.control, CONTROL_FD)]
        {
            check(libc::dup2(from.as_raw_fd(), to) as libc::c_long)?;
        }
        // Everything above closes at exec, the report pipe included.
        let flags = libc::CLOSE_RANGE_CLOEXEC as libc::c_uint;
        check(libc::syscall(libc::SYS_close_range, CONTROL_FD as libc::c_uint + 1, libc::c_uint::MAX, flags))?;
        if let Some(plan) = plan {
            plan.apply_after_cgroups()?;
        }
        // After the change of user, which clears it.
        check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) as libc::c_long)?;
        // The daemon may have died before prctl took effect: then no one
        // reads the report pipe (in a pid namespace getppid says 0, so the
        // pipe, not the parent's pid, tells).
        let mut poll = libc::pollfd { fd: prepared.report.as_raw_fd(), events: 0, revents: 0 };
        check(libc::poll(&mut poll, 1, 0) as libc::c_long)?;
        if poll.revents & libc::POLLERR != 0 {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        if let Some(plan) = plan {
            plan.lock()?;
        }
        libc::execve(prepared.path.as_ptr(), prepared.argv.as_ptr(), prepared.envp.as_ptr());
        Err(io::Error::last_os_error())
    }
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
        let mut child = child;
        assert!(child.wait().await.unwrap().success());
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

    /// Where clone3 is refused, clone makes the same child: its pidfd
    /// works, it sees fd 3, and its exit is reported.
    #[tokio::test]
    async fn clone_makes_the_same_child_where_clone3_is_refused() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (report_read, report_write) = pipe().unwrap();
        let spec = SpawnSpec {
            program: "/bin/sh".into(),
            arg0: None,
            args: vec!["-c".into(), "echo through-clone >&3; exit 7".into()],
            control: theirs.into(),
            stderr: None,
            plan: None,
        };
        let prepared = Prepared::new(&spec, report_write).unwrap();
        let mut pidfd: libc::c_int = -1;
        // SAFETY: the child runs `child` only, as in `spawn`.
        let pid = unsafe { legacy_clone(CLONE_PIDFD | libc::SIGCHLD as u64, &mut pidfd) };
        if pid == 0 {
            // SAFETY: in the child.
            unsafe { child(&prepared, None) }
        }
        assert!(pid > 0, "clone: {}", io::Error::last_os_error());
        assert!(pidfd >= 0, "clone stored a pidfd");
        drop(prepared);
        drop(spec.control);
        assert_eq!(exec_error(&report_read, EXEC_TIMEOUT), None, "it exec'd");
        // SAFETY: CLONE_PIDFD gave us this descriptor.
        let mut child = Child::new(pid as u32, unsafe { OwnedFd::from_raw_fd(pidfd) }).unwrap();
        let status = child.wait().await.unwrap();
        assert_eq!(status.code(), Some(7));
        let mut text = String::new();
        use std::io::Read;
        ours.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
        (&ours).read_to_string(&mut text).unwrap();
        assert_eq!(text, "through-clone\n");
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
