//! The seccomp filter of every streamlet: a reviewable table of denied system
//! calls, compiled to a BPF program before the fork and installed last,
//! just before exec.
//!
//! The filter is a deny list: every call not in [`POLICY`] runs, and a listed
//! call fails with an errno (it never kills the streamlet, so a handler that
//! probes for a feature sees an ordinary error). A deny list and not an allow
//! list because streamlets run arbitrary handlers and, later, exec commands;
//! namespaces, capabilities and the run-as user are the main boundary, and
//! this filter takes away what they leave open to a process that is root
//! inside them, or that the kernel never namespaced (the keyring, modules,
//! kexec, bpf), plus the socket options through which a streamlet could undo
//! the pacing the daemon set.
//!
//! Some rules apply only to a pool with `network = "none"` ([`Network`]): there
//! a streamlet may make `AF_UNIX` sockets and no other family, since some
//! families are not network-namespaced at all (`AF_VSOCK` shares the host's
//! port space). The daemon builds the two programs once, before any fork, and
//! gives each streamlet its pool's.
//!
//! Usage, in the daemon:
//!
//! ```no_run
//! use std::os::unix::process::CommandExt;
//!
//! use streamlet_sandbox::seccomp::Network;
//!
//! let program = streamlet_sandbox::seccomp::build(Network::None)?; // allocates: before the fork
//! let mut cmd = std::process::Command::new("/bin/true");
//! // SAFETY: the closure only calls `install_in_child`, which is
//! // async-signal-safe.
//! unsafe { cmd.pre_exec(move || streamlet_sandbox::seccomp::install_in_child(&program)) };
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! How the table becomes a program: the rules of each [`Action`] compile to
//! one seccompiler filter (default allow), and the filters are chained into
//! one program: where a part would allow the call, it jumps to the next part.
//! Each part first checks the architecture; a call made through another
//! architecture's convention (the 32-bit `int 0x80` on x86_64) kills the
//! process, since the syscall numbers in the table would not apply to it. On
//! x86_64 a last part answers `ENOSYS` to every call of the x32 ABI (numbers
//! with bit 30 set), which would otherwise reach `mount` under another number
//! on kernels built with x32.
//!
//! Arguments are compared as 32-bit values: the kernel reads `level`,
//! `optname` and the clone flags tested here as `int`, so the upper half of
//! the register is ignored by the kernel and must be ignored by the filter
//! too (comparing 64 bits would let `0x1_0000_0001` pass as a level other than
//! `SOL_SOCKET`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

pub use seccompiler::BpfProgram;
use seccompiler::{
    sock_filter, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

/// One system call, by its name and its number on the running architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syscall {
    /// The `libc` constant, `SYS_<name>`.
    ident: &'static str,
    /// `None` on an architecture without a policy.
    nr: Option<i64>,
}

impl Syscall {
    /// The call's name, as in its man page.
    pub fn name(&self) -> &'static str {
        self.ident.strip_prefix("SYS_").unwrap_or(self.ident)
    }

    /// The call's number here, or `None` on an architecture without a policy.
    pub fn number(&self) -> Option<i64> {
        self.nr
    }
}

/// `sys!(SYS_ptrace)`: the name and the number come from one `libc` constant,
/// so they cannot disagree.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
macro_rules! sys {
    ($ident:ident) => {
        Syscall { ident: stringify!($ident), nr: Some(libc::$ident as i64) }
    };
}
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
macro_rules! sys {
    ($ident:ident) => {
        Syscall { ident: stringify!($ident), nr: None }
    };
}

/// A test of one argument, read as a 32-bit value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArgTest {
    /// Which argument, from 0.
    pub index: u8,
    /// The argument's name in the man page.
    pub arg: &'static str,
    pub test: Test,
    /// The name of the value or flag tested.
    pub value_name: &'static str,
}

/// How an argument is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// The argument equals the value.
    Equals(u32),
    /// The argument is anything but the value.
    NotEquals(u32),
    /// Every bit of the value is set in the argument.
    HasBits(u32),
}

/// `arg_eq!(1, level, SOL_SOCKET)`: argument 1, `level`, equals `libc::SOL_SOCKET`.
macro_rules! arg_eq {
    ($index:literal, $arg:ident, $value:ident) => {
        ArgTest {
            index: $index,
            arg: stringify!($arg),
            test: Test::Equals(libc::$value as u32),
            value_name: stringify!($value),
        }
    };
}

/// `arg_ne!(0, domain, AF_UNIX)`: argument 0, `domain`, is not `libc::AF_UNIX`.
macro_rules! arg_ne {
    ($index:literal, $arg:ident, $value:ident) => {
        ArgTest {
            index: $index,
            arg: stringify!($arg),
            test: Test::NotEquals(libc::$value as u32),
            value_name: stringify!($value),
        }
    };
}

/// `arg_has!(0, flags, CLONE_NEWNET)`: argument 0, `flags`, has the bit `libc::CLONE_NEWNET`.
macro_rules! arg_has {
    ($index:literal, $arg:ident, $flag:ident) => {
        ArgTest {
            index: $index,
            arg: stringify!($arg),
            test: Test::HasBits(libc::$flag as u32),
            value_name: stringify!($flag),
        }
    };
}

/// What a listed call gets instead of running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Fails with `EPERM`, as a call the caller may not make.
    Deny,
    /// Fails with `ENOSYS`, as a call this kernel lacks, so that libc falls
    /// back to an older call the filter can check.
    Unsupported,
    /// Fails with `EAFNOSUPPORT`, as a socket family this kernel lacks.
    NoFamily,
}

impl Action {
    /// Every action, in the order their parts run.
    pub const ALL: [Action; 3] = [Action::Deny, Action::Unsupported, Action::NoFamily];

    pub fn errno(self) -> i32 {
        match self {
            Action::Deny => libc::EPERM,
            Action::Unsupported => libc::ENOSYS,
            Action::NoFamily => libc::EAFNOSUPPORT,
        }
    }

    fn errno_name(self) -> &'static str {
        match self {
            Action::Deny => "EPERM",
            Action::Unsupported => "ENOSYS",
            Action::NoFamily => "EAFNOSUPPORT",
        }
    }
}

/// The pool's network setting, which picks the program: the rules of
/// [`Scope::NetworkNone`] apply only under `network = "none"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Network {
    /// The pool's empty network namespace.
    None,
    /// The host's network.
    Host,
}

/// Which pools a rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every streamlet.
    All,
    /// Streamlets of a pool with `network = "none"`.
    NetworkNone,
}

impl Scope {
    fn covers(self, network: Network) -> bool {
        match self {
            Scope::All => true,
            Scope::NetworkNone => network == Network::None,
        }
    }
}

/// One entry of the policy: `call`, when every test in `when` holds (always,
/// if `when` is empty), fails as `action` says, in the pools `scope` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub call: Syscall,
    pub when: &'static [ArgTest],
    pub action: Action,
    pub scope: Scope,
    pub reason: &'static str,
}

const fn deny(call: Syscall, reason: &'static str) -> Rule {
    Rule { call, when: &[], action: Action::Deny, scope: Scope::All, reason }
}

const fn deny_when(call: Syscall, when: &'static [ArgTest], reason: &'static str) -> Rule {
    Rule { call, when, action: Action::Deny, scope: Scope::All, reason }
}

const fn unsupported(call: Syscall, reason: &'static str) -> Rule {
    Rule { call, when: &[], action: Action::Unsupported, scope: Scope::All, reason }
}

/// Under `network = "none"`: the socket family tested in `when` is refused
/// as one the kernel lacks.
const fn no_family(call: Syscall, when: &'static [ArgTest], reason: &'static str) -> Rule {
    Rule { call, when, action: Action::NoFamily, scope: Scope::NetworkNone, reason }
}

const NAMESPACE_AT_FORK: &str = "a new namespace at fork, as unshare";
const NEW_MOUNT_API: &str = "the newer mount API: mount by another route";
const IO_URING: &str = "io_uring operations run without passing through seccomp";
const KEYRING: &str = "the kernel keyring is not namespaced: keys are shared with every process of the same user";

/// Every call a streamlet may not make, and why. Calls not listed run.
pub static POLICY: &[Rule] = &[
    // Sockets: the daemon sets the stream's pacing and mark.
    deny_when(
        sys!(SYS_setsockopt),
        &[arg_eq!(1, level, SOL_SOCKET), arg_eq!(2, optname, SO_MAX_PACING_RATE)],
        "the daemon sets the stream's pacing rate; the streamlet must not raise it",
    ),
    deny_when(
        sys!(SYS_setsockopt),
        &[arg_eq!(1, level, SOL_SOCKET), arg_eq!(2, optname, SO_MARK)],
        "the mark selects the routing and firewall rules the daemon's traffic is under",
    ),
    deny_when(
        sys!(SYS_setsockopt),
        &[arg_eq!(1, level, SOL_SOCKET), arg_eq!(2, optname, SO_LINGER)],
        "a lingering close of a handed-over socket would block the daemon when it closes its copy last",
    ),
    deny_when(
        sys!(SYS_setsockopt),
        &[arg_eq!(1, level, SOL_SOCKET), arg_eq!(2, optname, SO_PRIORITY)],
        "the priority picks the queueing band of the daemon's traffic; the streamlet must not raise its own",
    ),
    // Socket families, under network = "none": the empty namespace covers the
    // namespaced families; AF_VSOCK (and any family the kernel never
    // namespaced) would reach the host. No other call makes a socket here:
    // io_uring's socket operation is denied with io_uring, x86_64 has no
    // socketcall, and accept only clones a socket one already has.
    no_family(
        sys!(SYS_socket),
        &[arg_ne!(0, domain, AF_UNIX)],
        "no network: only Unix sockets; AF_VSOCK and other families are not namespaced and reach the host",
    ),
    no_family(sys!(SYS_socketpair), &[arg_ne!(0, domain, AF_UNIX)], "no network: only Unix sockets, as for socket"),
    // The terminal (a second layer: streamlets have no controlling terminal).
    deny_when(
        sys!(SYS_ioctl),
        &[arg_eq!(1, request, TIOCSTI)],
        "pushes input into a terminal, to be run by whoever reads it",
    ),
    deny_when(
        sys!(SYS_ioctl),
        &[arg_eq!(1, request, TIOCLINUX)],
        "console tricks on a virtual terminal (selection paste)",
    ),
    // Other processes.
    deny(sys!(SYS_ptrace), "reads and rewrites the memory and registers of another process"),
    deny(sys!(SYS_process_vm_readv), "reads the memory of another process"),
    deny(sys!(SYS_process_vm_writev), "writes the memory of another process"),
    deny(sys!(SYS_pidfd_getfd), "copies a descriptor (a neighbour's socket) out of another process"),
    deny(sys!(SYS_process_madvise), "acts on the memory of another process (pages it out)"),
    deny(sys!(SYS_kcmp), "tells which files and memory other processes share, a probe into neighbours"),
    // Namespaces.
    deny(sys!(SYS_unshare), "new namespaces would leave the network, mount and IPC ones the daemon set up"),
    deny(sys!(SYS_setns), "joins another namespace, such as the host's network"),
    deny_when(sys!(SYS_clone), &[arg_has!(0, flags, CLONE_NEWNS)], NAMESPACE_AT_FORK),
    deny_when(sys!(SYS_clone), &[arg_has!(0, flags, CLONE_NEWCGROUP)], NAMESPACE_AT_FORK),
    deny_when(sys!(SYS_clone), &[arg_has!(0, flags, CLONE_NEWUTS)], NAMESPACE_AT_FORK),
    deny_when(sys!(SYS_clone), &[arg_has!(0, flags, CLONE_NEWIPC)], NAMESPACE_AT_FORK),
    deny_when(sys!(SYS_clone), &[arg_has!(0, flags, CLONE_NEWUSER)], NAMESPACE_AT_FORK),
    deny_when(sys!(SYS_clone), &[arg_has!(0, flags, CLONE_NEWPID)], NAMESPACE_AT_FORK),
    deny_when(sys!(SYS_clone), &[arg_has!(0, flags, CLONE_NEWNET)], NAMESPACE_AT_FORK),
    unsupported(
        sys!(SYS_clone3),
        "its flags live in a struct seccomp cannot read; on ENOSYS libc falls back to clone, which is checked",
    ),
    // Mounts and the root directory.
    deny(sys!(SYS_mount), "changes the file-system view (a read-only root could be made writable)"),
    deny(sys!(SYS_umount2), "uncovers what a mount hides"),
    deny(sys!(SYS_fsopen), NEW_MOUNT_API),
    deny(sys!(SYS_fsconfig), NEW_MOUNT_API),
    deny(sys!(SYS_fsmount), NEW_MOUNT_API),
    deny(sys!(SYS_fspick), NEW_MOUNT_API),
    deny(sys!(SYS_move_mount), NEW_MOUNT_API),
    deny(sys!(SYS_open_tree), NEW_MOUNT_API),
    deny(sys!(SYS_mount_setattr), NEW_MOUNT_API),
    deny(sys!(SYS_pivot_root), "swaps the root mount"),
    deny(sys!(SYS_chroot), "changes the root directory, the first step of the classic chroot escape"),
    deny(sys!(SYS_open_by_handle_at), "opens a file by handle, past every path check (a known container escape)"),
    deny(sys!(SYS_name_to_handle_at), "makes the handles open_by_handle_at takes"),
    // The kernel and the host.
    deny(sys!(SYS_kexec_load), "replaces the running kernel"),
    deny(sys!(SYS_kexec_file_load), "replaces the running kernel"),
    deny(sys!(SYS_reboot), "reboots or halts the host"),
    deny(sys!(SYS_init_module), "loads code into the kernel"),
    deny(sys!(SYS_finit_module), "loads code into the kernel"),
    deny(sys!(SYS_delete_module), "unloads a kernel module"),
    deny(sys!(SYS_swapon), "changes the host's swap"),
    deny(sys!(SYS_swapoff), "changes the host's swap"),
    deny(sys!(SYS_bpf), "loads programs into the kernel and reads its maps"),
    deny(sys!(SYS_perf_event_open), "kernel and hardware profiling, a large attack surface"),
    deny(sys!(SYS_userfaultfd), "stalls the kernel's page faults at will, a staple of kernel race exploits"),
    deny(sys!(SYS_io_uring_setup), IO_URING),
    deny(sys!(SYS_io_uring_enter), IO_URING),
    deny(sys!(SYS_io_uring_register), IO_URING),
    deny(sys!(SYS_keyctl), KEYRING),
    deny(sys!(SYS_add_key), KEYRING),
    deny(sys!(SYS_request_key), KEYRING),
];

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("no seccomp policy for architecture {0}")]
    UnsupportedArch(&'static str),
    #[error("cannot compile the seccomp policy: {0}")]
    Compile(#[from] seccompiler::BackendError),
    #[error("the seccomp program has {0} instructions, more than the kernel's limit of 4096")]
    TooLong(usize),
}

/// `struct seccomp_data`: the call's number at offset 0.
const SECCOMP_DATA_NR: u32 = 0;
/// x32 calls are numbered from here (`__X32_SYSCALL_BIT`).
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
/// `BPF_MAXINSNS`.
const MAX_INSTRUCTIONS: usize = 4096;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const LD_ABS_W: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;

/// Compiles the rules of [`POLICY`] that cover `network` for the running
/// architecture (x86_64 or aarch64). Allocates: call it in the daemon, before
/// the fork.
pub fn build(network: Network) -> Result<BpfProgram, SeccompError> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        other => return Err(SeccompError::UnsupportedArch(other)),
    };
    let mut parts = Vec::new();
    for action in Action::ALL {
        let mut chains: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
        let mut always = BTreeSet::new();
        for rule in POLICY.iter().filter(|rule| rule.action == action && rule.scope.covers(network)) {
            let nr = rule.call.number().ok_or(SeccompError::UnsupportedArch(std::env::consts::ARCH))?;
            let chain = chains.entry(nr).or_default();
            if rule.when.is_empty() {
                always.insert(nr);
            } else {
                chain.push(compile_tests(rule.when)?);
            }
        }
        // seccompiler reads an empty chain as "always".
        for nr in always {
            chains.insert(nr, Vec::new());
        }
        if chains.is_empty() {
            continue;
        }
        let filter =
            SeccompFilter::new(chains, SeccompAction::Allow, SeccompAction::Errno(action.errno() as u32), arch)?;
        parts.push(BpfProgram::try_from(filter)?);
    }
    if arch == TargetArch::x86_64 {
        parts.push(x32_guard());
    }
    let program = chain(parts);
    if program.len() > MAX_INSTRUCTIONS {
        return Err(SeccompError::TooLong(program.len()));
    }
    Ok(program)
}

fn compile_tests(tests: &[ArgTest]) -> Result<SeccompRule, SeccompError> {
    let conditions = tests
        .iter()
        .map(|test| {
            let (op, value) = match test.test {
                Test::Equals(value) => (SeccompCmpOp::Eq, value),
                Test::NotEquals(value) => (SeccompCmpOp::Ne, value),
                Test::HasBits(bits) => (SeccompCmpOp::MaskedEq(u64::from(bits)), bits),
            };
            SeccompCondition::new(test.index, SeccompCmpArgLen::Dword, op, u64::from(value))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SeccompRule::new(conditions)?)
}

/// On x86_64: `ENOSYS` for every x32 call, allow the rest.
fn x32_guard() -> BpfProgram {
    let insn = |code, jt, jf, k| sock_filter { code, jt, jf, k };
    vec![
        insn(LD_ABS_W, 0, 0, SECCOMP_DATA_NR),
        insn(JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ]
}

/// Joins complete programs into one: in every part but the last, "allow"
/// becomes a jump to the start of the next part, so a call runs only if every
/// part allows it. A jump replaces a return one for one, so the jumps already
/// inside each part keep their targets.
fn chain(parts: Vec<BpfProgram>) -> BpfProgram {
    let count = parts.len();
    let mut program = BpfProgram::with_capacity(parts.iter().map(Vec::len).sum());
    for (i, part) in parts.into_iter().enumerate() {
        let next_part = program.len() + part.len();
        for insn in part {
            let allows = insn.code == RET_K && insn.k == libc::SECCOMP_RET_ALLOW;
            if allows && i + 1 < count {
                let skip = (next_part - program.len() - 1) as u32;
                program.push(sock_filter { code: JA, jt: 0, jf: 0, k: skip });
            } else {
                program.push(insn);
            }
        }
    }
    program
}

/// Turns on `no_new_privs` and installs `program` (from [`build`]) on the
/// calling thread.
///
/// Async-signal-safe: two `prctl` calls, no allocation, no lock, so it may run
/// in a `pre_exec` closure. It must be the **last** step before exec: after
/// it, the steps the filter forbids (`unshare`, `mount`) fail, and
/// `no_new_privs` makes set-user-ID binaries run without their privilege. The
/// filter holds across exec and is inherited by every child.
pub fn install_in_child(program: &BpfProgram) -> io::Result<()> {
    let len = match libc::c_ushort::try_from(program.len()) {
        Ok(len) if len > 0 => len,
        _ => return Err(io::Error::from_raw_os_error(libc::EINVAL)),
    };
    // seccompiler's sock_filter is `#[repr(C)]` with the fields of the
    // kernel's `struct sock_filter`, so the cast only renames the type.
    let fprog = libc::sock_fprog { len, filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut() };
    let zero: libc::c_ulong = 0;
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as libc::c_ulong, zero, zero, zero) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fprog` points at `len` instructions of `program`, borrowed for
    // the whole call; the kernel only reads them and keeps its own copy.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER as libc::c_ulong,
            &fprog as *const libc::sock_fprog,
            zero,
            zero,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl fmt::Display for ArgTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.test {
            Test::Equals(value) => write!(f, "{} == {} ({value})", self.arg, self.value_name),
            Test::NotEquals(value) => write!(f, "{} != {} ({value})", self.arg, self.value_name),
            Test::HasBits(bits) => write!(f, "{} has {} ({bits:#x})", self.arg, self.value_name),
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "| `{}` | ", self.call.name())?;
        let scoped = match self.scope {
            Scope::All => false,
            Scope::NetworkNone => {
                f.write_str("network = \"none\"")?;
                true
            }
        };
        if self.when.is_empty() && !scoped {
            f.write_str("always")?;
        }
        for (i, test) in self.when.iter().enumerate() {
            let and = if i == 0 && !scoped { "" } else { " and " };
            write!(f, "{and}{test}")?;
        }
        write!(f, " | {} | {} |", self.action.errno_name(), self.reason)
    }
}

/// The policy for humans, as a Markdown table (SECURITY.md quotes it).
pub fn describe() -> String {
    let mut text = String::from(
        "Every call not listed runs. A listed call fails with the error shown and does nothing. A rule \
         whose condition names `network = \"none\"` is in the program of such pools only.\n\n\
         | call | when | error | why |\n| --- | --- | --- | --- |\n",
    );
    for rule in POLICY {
        text.push_str(&rule.to_string());
        text.push('\n');
    }
    text.push_str(
        "| any x32 call (x86_64) | number has bit 30 (0x40000000) | ENOSYS | the table names the 64-bit calls; \
         x32 numbers them apart |\n\n\
         A call made through another architecture's convention (the 32-bit `int 0x80` on x86_64) kills the \
         process.\n",
    );
    text
}

#[cfg(test)]
mod tests;
