//! What happens to a streamlet between fork and exec: the sandbox, step by
//! step.
//!
//! A [`ChildPlan`] is built in the daemon before the fork (everything that
//! allocates happens there: paths, the seccomp program, the list of
//! capabilities); [`ChildPlan::apply`] runs in the forked child and makes
//! only raw, async-signal-safe system calls. The order matters:
//!
//! 1. join the cgroups (write "0" to each pre-opened `cgroup.procs`), so the
//!    child is limited before it does anything else;
//! 2. namespaces: join the pool's empty network namespace (only the sockets
//!    handed over later reach anything), new IPC and UTS ones, and a new mount
//!    namespace when the pool asks for a read-only root;
//! 3. in the new mount namespace, the steps of [`crate::mounts`]: everything
//!    private, the whole tree read-only when the pool asks, fresh tmpfs on
//!    `/tmp`, `/var/tmp` and `/dev/shm`, a minimal `/dev` of its own;
//! 4. resource limits (nofile, core, fsize);
//! 5. drop every capability from the bounding set and the ambient set (this
//!    needs CAP_SETPCAP, so before the change of user);
//! 6. the run-as group and user (no supplementary groups), which clears the
//!    permitted and effective capability sets;
//! 7. clear whatever capability sets remain (inheritable, for a daemon not
//!    running as root);
//! 8. `no_new_privs` and the seccomp filter, last, since the filter forbids
//!    some of the steps above.

use std::io;

/// `CLONE_NEW*` flags a plan may ask for.
pub const NAMESPACES: libc::c_int = libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS | libc::CLONE_NEWNS;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAP_VERSION_3: u32 = 0x2008_0522;

/// The sandbox of one streamlet, ready to apply in the child.
#[derive(Debug, Default)]
pub struct ChildPlan {
    /// Pre-opened `cgroup.procs` of the streamlet's cgroup(s).
    pub cgroup_procs: Vec<libc::c_int>,
    /// `CLONE_NEW*` flags for `unshare`.
    pub namespaces: libc::c_int,
    /// Start the child as the first process (init) of a new pid namespace
    /// (`CLONE_NEWPID` at the clone itself, see [`crate::spawn`]): when it
    /// dies the kernel kills everything in the namespace, and nothing
    /// inside can signal it unless it handles the signal. Needs a mount
    /// namespace too, for the namespace's own `/proc`.
    pub pid_namespace: bool,
    /// A network namespace to join (`setns`) instead of making one: an fd
    /// from [`empty_network_namespace`], kept open by the daemon.
    pub join_network: Option<libc::c_int>,
    /// In the new mount namespace (`CLONE_NEWNS` in `namespaces`): the
    /// streamlet's view of the file system, see [`crate::mounts`]. Empty
    /// without a mount namespace.
    pub mounts: crate::mounts::MountPlan,
    pub rlimits: Vec<(libc::__rlimit_resource_t, libc::rlim_t)>,
    /// Drop every capability up to this number from the bounding set.
    pub drop_bounding_up_to: Option<u32>,
    /// Run as this user and group.
    pub run_as: Option<(libc::uid_t, libc::gid_t)>,
    /// The seccomp filter (see [`crate::seccomp`]), built once by the daemon.
    pub seccomp: Option<std::sync::Arc<crate::seccomp::BpfProgram>>,
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl ChildPlan {
    /// Applies the plan to the calling process. Async-signal-safe: raw system
    /// calls only, no allocation, no lock.
    ///
    /// # Safety
    /// Call only in a freshly forked child about to exec; it changes the
    /// process's namespaces, mounts, identity and seccomp state for good.
    pub unsafe fn apply(&self) -> io::Result<()> {
        // SAFETY: as the caller promises.
        unsafe {
            self.join_cgroups()?;
            self.apply_after_cgroups()?;
            self.lock()
        }
    }

    /// Step 1 alone: it must run before anything renumbers descriptors
    /// (the control channel is moved to fd 3 after it).
    ///
    /// # Safety
    /// As for [`apply`](Self::apply).
    pub unsafe fn join_cgroups(&self) -> io::Result<()> {
        for fd in &self.cgroup_procs {
            // SAFETY: a write of one byte from a static buffer to a
            // descriptor the plan owns.
            if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Steps 2 to 7.
    ///
    /// # Safety
    /// As for [`apply`](Self::apply).
    pub unsafe fn apply_after_cgroups(&self) -> io::Result<()> {
        // SAFETY: each call is a plain system call on values owned by `self`
        // or on constants; the caller guarantees we are a forked child that
        // will exec or exit.
        unsafe {
            if let Some(fd) = self.join_network {
                check(libc::setns(fd, libc::CLONE_NEWNET) as libc::c_long)?;
            }
            if self.namespaces != 0 {
                check(libc::unshare(self.namespaces) as libc::c_long)?;
            }
            self.mounts.apply()?;
            for (resource, value) in &self.rlimits {
                let limit = libc::rlimit { rlim_cur: *value, rlim_max: *value };
                check(libc::setrlimit(*resource, &limit) as libc::c_long)?;
            }
            if let Some(last) = self.drop_bounding_up_to {
                for cap in 0..=last {
                    check(libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) as libc::c_long)?;
                }
            }
            check(libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong, 0, 0, 0)
                as libc::c_long)?;
            if let Some((uid, gid)) = self.run_as {
                // The raw system calls, not glibc's wrappers: those make
                // every thread of the process change its ids (`__nptl_setxid`)
                // and wait for each; this child of a raw clone3 has one
                // thread but inherits glibc's list of the daemon's, and waits
                // forever for one that was being created at the clone.
                check(libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()))?;
                check(libc::syscall(libc::SYS_setresgid, gid, gid, gid))?;
                check(libc::syscall(libc::SYS_setresuid, uid, uid, uid))?;
            }
            let header = CapHeader { version: CAP_VERSION_3, pid: 0 };
            let data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
            check(libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()))?;
        }
        Ok(())
    }

    /// Step 8: `no_new_privs` and the seccomp filter. Last, after anything
    /// else the caller must do as the new user (a change of user clears
    /// `PR_SET_PDEATHSIG`, so the caller sets that again in between).
    ///
    /// # Safety
    /// As for [`apply`](Self::apply).
    pub unsafe fn lock(&self) -> io::Result<()> {
        match &self.seccomp {
            // no_new_privs, then the filter.
            Some(program) => crate::seccomp::install_in_child(program),
            // SAFETY: prctl with constant arguments.
            None => check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } as libc::c_long),
        }
    }
}

/// A new, empty network namespace (only a loopback, down), held by the
/// returned descriptor, for streamlets to join with `setns`: much cheaper
/// than a namespace of their own each. Made on a short-lived thread, since
/// `unshare(CLONE_NEWNET)` changes only the calling thread. The descriptor is
/// numbered 64 or above, clear of the child's fixed descriptors.
pub fn empty_network_namespace() -> io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let fd = std::thread::spawn(|| -> io::Result<libc::c_int> {
        // SAFETY: unshare on this thread alone, which exits right after.
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) } as libc::c_long)?;
        // SAFETY: open(2) of a constant path.
        let fd = unsafe { libc::open(c"/proc/thread-self/ns/net".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        check(fd as libc::c_long)?;
        // SAFETY: F_DUPFD_CLOEXEC on the descriptor just opened; the original
        // is closed at once.
        let high = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 64) };
        // SAFETY: closing our own descriptor.
        unsafe { libc::close(fd) };
        check(high as libc::c_long)?;
        Ok(high)
    })
    .join()
    .map_err(|_| io::Error::other("the namespace thread panicked"))??;
    // SAFETY: the thread handed us this descriptor and nothing else owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// The highest capability number this kernel knows.
pub fn last_capability() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}
