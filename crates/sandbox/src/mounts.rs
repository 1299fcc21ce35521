//! The file-system view of a streamlet: a reviewable list of mounts, made in
//! the streamlet's own mount namespace between fork and exec.
//!
//! Like the seccomp policy, the plan is data: [`PLAN`] lists every step with
//! the condition it runs under and its reason, [`describe`] prints the table
//! SECURITY.md shows, and [`MountPlan::apply`] runs the steps in order with
//! raw system calls on `'static` paths (nothing allocates in the child).
//!
//! What it gives a streamlet: nothing it mounts reaches the host and nothing
//! the host mounts later reaches it; with `readonly_root` the whole tree
//! read-only; private, empty `/tmp`, `/var/tmp` and `/dev/shm`; and a `/dev`
//! of its own with only `null`, `zero`, `full`, `random`, `urandom` and
//! `tty`, read-only. No `ptmx` and no devpts: the host's ptys are a pool of
//! `kernel.pty.max` shared by every process, which one streamlet could take
//! whole. With a pid namespace, a fresh `/proc` that shows only its own.
//!
//! ```
//! use streamlet_sandbox::mounts::{MountPlan, View};
//!
//! let plan = MountPlan::new(View { readonly_root: true, own_proc: true }); // before the fork
//! assert!(plan.steps().iter().any(|step| step.target() == "/dev/null"));
//! println!("{}", streamlet_sandbox::mounts::describe());
//! ```

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::path::Path;

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// One operation on the file-system view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Every mount under `/` private, recursively.
    PrivateTree,
    /// Every mount under `/` read-only, recursively (`mount_setattr`).
    ReadOnlyTree,
    /// A new tmpfs on `target` with these flags and data. `optional`: a
    /// missing `target` is skipped (nothing to hide there).
    Tmpfs { target: &'static CStr, flags: libc::c_ulong, data: &'static CStr, optional: bool },
    /// A character device node, made with `mknod` and then given `mode`
    /// (the umask would narrow it).
    Device { path: &'static CStr, major: u32, minor: u32, mode: libc::mode_t },
    /// A symbolic link `path` to `to`.
    Symlink { path: &'static CStr, to: &'static CStr },
    /// A directory.
    Dir { path: &'static CStr, mode: libc::mode_t },
    /// The mount at `target` made read-only (a bind remount), keeping `flags`.
    ReadOnly { target: &'static CStr, flags: libc::c_ulong },
    /// A new proc on `/proc`, of the pid namespace the process is in.
    Proc,
}

/// When a step runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Always,
    /// The pool sets `readonly_root`.
    ReadonlyRoot,
    /// The streamlet has a pid namespace of its own.
    OwnProc,
}

/// One step of the plan, with the reason it is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mount {
    pub op: Op,
    pub when: When,
    pub reason: &'static str,
}

impl Mount {
    /// The path the step acts on.
    pub fn target(&self) -> &'static str {
        let path = match self.op {
            Op::PrivateTree | Op::ReadOnlyTree => c"/",
            Op::Tmpfs { target, .. } | Op::ReadOnly { target, .. } => target,
            Op::Device { path, .. } | Op::Symlink { path, .. } | Op::Dir { path, .. } => path,
            Op::Proc => c"/proc",
        };
        path.to_str().unwrap_or("?")
    }
}

const TMP_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV;
/// `/dev` holds the nodes made below, so not `nodev`; nothing in it runs.
const DEV_FLAGS: libc::c_ulong = libc::MS_NOSUID | libc::MS_NOEXEC;
const PRIVATE_TMP: &str = "private and empty: nothing a streamlet leaves there outlives it or reaches another";
const DEVICE: &str = "a device every program may expect; it reaches no shared resource of the host";
const FD_LINK: &str = "what shells and programs expect of /dev (process substitution, `-` as a path)";

const fn tmpfs(target: &'static CStr, data: &'static CStr, optional: bool, reason: &'static str) -> Mount {
    Mount { op: Op::Tmpfs { target, flags: TMP_FLAGS, data, optional }, when: When::Always, reason }
}

const fn device(path: &'static CStr, major: u32, minor: u32, mode: libc::mode_t) -> Mount {
    Mount { op: Op::Device { path, major, minor, mode }, when: When::Always, reason: DEVICE }
}

const fn link(path: &'static CStr, to: &'static CStr) -> Mount {
    Mount { op: Op::Symlink { path, to }, when: When::Always, reason: FD_LINK }
}

/// Every step, in the order it runs.
pub static PLAN: &[Mount] = &[
    Mount {
        op: Op::PrivateTree,
        when: When::Always,
        reason: "what is mounted here never reaches the host, and what the host mounts later never reaches here",
    },
    Mount {
        op: Op::ReadOnlyTree,
        when: When::ReadonlyRoot,
        reason: "the streamlet writes nothing of the host's, and leaves no file behind for its uid's next holder",
    },
    tmpfs(c"/tmp", c"size=16m,mode=1777", false, PRIVATE_TMP),
    tmpfs(c"/var/tmp", c"size=16m,mode=1777", true, PRIVATE_TMP),
    Mount {
        op: Op::Tmpfs { target: c"/dev", flags: DEV_FLAGS, data: c"size=64k,mode=0755", optional: false },
        when: When::Always,
        reason: "a /dev of its own: the host's has ptmx (a host-wide pool of ptys), disks, consoles and its log socket",
    },
    device(c"/dev/null", 1, 3, 0o666),
    device(c"/dev/zero", 1, 5, 0o666),
    device(c"/dev/full", 1, 7, 0o666),
    device(c"/dev/random", 1, 8, 0o666),
    device(c"/dev/urandom", 1, 9, 0o666),
    Mount {
        op: Op::Device { path: c"/dev/tty", major: 5, minor: 0, mode: 0o666 },
        when: When::Always,
        reason: "the controlling terminal, which a streamlet has none of: opening it fails with ENXIO",
    },
    link(c"/dev/fd", c"/proc/self/fd"),
    link(c"/dev/stdin", c"/proc/self/fd/0"),
    link(c"/dev/stdout", c"/proc/self/fd/1"),
    link(c"/dev/stderr", c"/proc/self/fd/2"),
    Mount { op: Op::Dir { path: c"/dev/shm", mode: 0o755 }, when: When::Always, reason: "where the tmpfs below goes" },
    tmpfs(c"/dev/shm", c"size=16m,mode=1777", false, PRIVATE_TMP),
    Mount {
        op: Op::ReadOnly { target: c"/dev", flags: DEV_FLAGS },
        when: When::Always,
        reason: "no new node or file in /dev (its devices stay writable: they are not files of the mount)",
    },
    Mount {
        op: Op::Proc,
        when: When::OwnProc,
        reason: "a /proc of the streamlet's pid namespace: it sees only its own processes",
    },
];

/// What a streamlet's view is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct View {
    pub readonly_root: bool,
    /// A fresh `/proc` (the streamlet has a pid namespace of its own).
    pub own_proc: bool,
}

/// The steps of [`PLAN`] for one view, ready to apply in a child.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MountPlan {
    steps: Vec<Mount>,
}

impl MountPlan {
    /// The steps `view` needs. Allocates: before the fork.
    pub fn new(view: View) -> Self {
        let applies = |step: &&Mount| match step.when {
            When::Always => true,
            When::ReadonlyRoot => view.readonly_root,
            When::OwnProc => view.own_proc,
        };
        Self { steps: PLAN.iter().filter(applies).copied().collect() }
    }

    /// No steps: the host's view, unchanged (no mount namespace).
    pub fn none() -> Self {
        Self::default()
    }

    pub fn steps(&self) -> &[Mount] {
        &self.steps
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Runs the steps in order. Async-signal-safe: raw system calls on
    /// `'static` paths, no allocation, no lock.
    ///
    /// # Safety
    /// Call only in a freshly forked child, in a mount namespace of its own,
    /// about to exec: it changes that namespace for good.
    pub unsafe fn apply(&self) -> io::Result<()> {
        for step in &self.steps {
            // SAFETY: as the caller promises.
            unsafe { apply(&step.op) }?;
        }
        Ok(())
    }
}

fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// One step.
///
/// # Safety
/// As for [`MountPlan::apply`].
unsafe fn apply(op: &Op) -> io::Result<()> {
    let null = std::ptr::null::<libc::c_char>();
    // SAFETY: each call is a plain system call on NUL-terminated static
    // paths or constants; the caller guarantees a child of its own.
    unsafe {
        match *op {
            Op::PrivateTree => {
                check(libc::mount(null, c"/".as_ptr(), null, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null())
                    as libc::c_long)
            }
            Op::ReadOnlyTree => {
                let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, attr_clr: 0, propagation: 0, userns_fd: 0 };
                check(libc::syscall(
                    libc::SYS_mount_setattr,
                    libc::AT_FDCWD,
                    c"/".as_ptr(),
                    AT_RECURSIVE,
                    &attr as *const MountAttr,
                    std::mem::size_of::<MountAttr>(),
                ))
            }
            Op::Tmpfs { target, flags, data, optional } => {
                let rc =
                    libc::mount(c"tmpfs".as_ptr(), target.as_ptr(), c"tmpfs".as_ptr(), flags, data.as_ptr().cast());
                match check(rc as libc::c_long) {
                    Err(e) if optional && e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
                    other => other,
                }
            }
            Op::Device { path, major, minor, mode } => {
                let dev = libc::makedev(major, minor);
                check(libc::mknod(path.as_ptr(), libc::S_IFCHR | mode, dev) as libc::c_long)?;
                check(libc::chmod(path.as_ptr(), mode) as libc::c_long)
            }
            Op::Symlink { path, to } => check(libc::symlink(to.as_ptr(), path.as_ptr()) as libc::c_long),
            Op::Dir { path, mode } => {
                check(libc::mkdir(path.as_ptr(), mode) as libc::c_long)?;
                check(libc::chmod(path.as_ptr(), mode) as libc::c_long)
            }
            Op::ReadOnly { target, flags } => check(libc::mount(
                null,
                target.as_ptr(),
                null,
                libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | flags,
                std::ptr::null(),
            ) as libc::c_long),
            Op::Proc => check(libc::mount(
                c"proc".as_ptr(),
                c"/proc".as_ptr(),
                c"proc".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                std::ptr::null(),
            ) as libc::c_long),
        }
    }
}

/// The part of the host's tree a streamlet does not see (each a mount of
/// its own over the host's), with the reason, if `path` is under one.
/// `/dev` counts whole: the few devices it keeps are not the host's files.
pub fn hidden(path: &Path) -> Option<(&'static str, &'static str)> {
    PLAN.iter().find_map(|step| match step.op {
        Op::Tmpfs { target, .. } => {
            let target = target.to_str().ok()?;
            path.starts_with(target).then_some((target, step.reason))
        }
        Op::Proc => path.starts_with("/proc").then_some(("/proc", step.reason)),
        _ => None,
    })
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |c: &'static CStr| c.to_str().unwrap_or("?");
        match *self {
            Op::PrivateTree => f.write_str("every mount private (recursive `MS_PRIVATE`)"),
            Op::ReadOnlyTree => f.write_str("every mount read-only (`mount_setattr`, recursive)"),
            Op::Tmpfs { flags, data, .. } => {
                let dev = if flags & libc::MS_NODEV != 0 { "nodev" } else { "noexec" };
                write!(f, "tmpfs, nosuid, {dev}, `{}`", text(data))
            }
            Op::Device { major, minor, mode, .. } => write!(f, "device {major}:{minor}, mode {mode:04o}"),
            Op::Symlink { to, .. } => write!(f, "symlink to `{}`", text(to)),
            Op::Dir { mode, .. } => write!(f, "directory, mode {mode:04o}"),
            Op::ReadOnly { .. } => f.write_str("remounted read-only"),
            Op::Proc => f.write_str("a new proc, nosuid, nodev, noexec"),
        }
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let when = match self.when {
            When::Always => "always",
            When::ReadonlyRoot => "`readonly_root`",
            When::OwnProc => "pid namespace",
        };
        write!(f, "| `{}` | {} | {when} | {} |", self.target(), self.op, self.reason)
    }
}

/// The plan for humans, as a Markdown table (SECURITY.md quotes it).
pub fn describe() -> String {
    let mut text = String::from(
        "Each streamlet gets a mount namespace of its own (as root), made as follows, in this order.\n\n\
         | path | what | when | why |\n| --- | --- | --- | --- |\n",
    );
    for step in PLAN {
        text.push_str(&step.to_string());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests;
