use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::*;

const PYTHON: &str = "/usr/bin/python3";

/// Shared by the scripts: `libc`, and `attempt(rc)`, which prints as
/// "ok" or the errno.
const PRELUDE: &str = r#"
import ctypes, os, signal, socket, subprocess, threading
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
L = ctypes.c_long
def attempt(rc):
    return "ok" if rc != -1 else str(ctypes.get_errno())
def sockopt(level, name, value):
    s = socket.socket()
    try:
        s.setsockopt(level, name, value)
        return "ok"
    except OSError as e:
        return str(e.errno)
    finally:
        s.close()
"#;

/// Whether this process is root; panics where privileged tests must run.
fn root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        panic!("privileged seccomp test cannot run (not root) but STREAMLET_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("skipping privileged seccomp test: not root");
    false
}

/// Runs `program` with `filter` installed between fork and exec and
/// returns its standard output. With `private_mounts` the child first
/// gets a mount namespace of its own, so that a mount the filter fails
/// to stop stays out of the host's.
fn run(program: &str, args: &[&str], filter: Option<BpfProgram>, private_mounts: bool) -> String {
    let mut cmd = Command::new(program);
    cmd.args(args).stdin(Stdio::null()).stderr(Stdio::piped());
    // SAFETY: the closure makes raw system calls only (unshare, mount,
    // prctl) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if private_mounts {
                if libc::unshare(libc::CLONE_NEWNS) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let (none, root) = (std::ptr::null(), c"/".as_ptr());
                if libc::mount(none, root, none, libc::MS_REC | libc::MS_PRIVATE, std::ptr::null()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            match &filter {
                Some(program) => install_in_child(program),
                None => Ok(()),
            }
        });
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{program} failed: {}\n{stdout}{}", out.status, String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Runs a Python script that prints `key=value` lines.
fn python(script: &str, filter: Option<BpfProgram>, private_mounts: bool) -> HashMap<String, String> {
    let script = format!("{PRELUDE}\n{script}");
    let out = run(PYTHON, &["-c", &script], filter, private_mounts);
    out.lines().filter_map(|line| line.split_once('=')).map(|(k, v)| (k.to_owned(), v.to_owned())).collect()
}

fn filter() -> Option<BpfProgram> {
    Some(build(Network::None).unwrap())
}

fn errno(code: i32) -> String {
    code.to_string()
}

fn rules_for(name: &str) -> impl Iterator<Item = &'static Rule> + '_ {
    POLICY.iter().filter(move |rule| rule.call.name() == name)
}

#[test]
fn the_policy_denies_every_call_the_sandbox_issue_names() {
    let always = [
        "ptrace",
        "mount",
        "umount2",
        "unshare",
        "setns",
        "kexec_load",
        "kexec_file_load",
        "bpf",
        "perf_event_open",
        "keyctl",
        "add_key",
        "request_key",
        "pivot_root",
        "chroot",
        "swapon",
        "swapoff",
        "reboot",
        "init_module",
        "finit_module",
        "delete_module",
        "open_by_handle_at",
        "name_to_handle_at",
        "userfaultfd",
        "process_vm_readv",
        "process_vm_writev",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
    ];
    for name in always {
        assert!(
            rules_for(name).any(|rule| rule.when.is_empty() && rule.action == Action::Deny),
            "{name} is not always denied"
        );
    }
    for option in ["SO_MAX_PACING_RATE", "SO_MARK", "SO_LINGER", "SO_PRIORITY"] {
        assert!(
            rules_for("setsockopt").any(|rule| rule.when.iter().any(|test| test.value_name == option)
                && rule.when.iter().any(|test| test.value_name == "SOL_SOCKET")),
            "setsockopt {option} is not denied"
        );
    }
    for flag in [
        "CLONE_NEWNS",
        "CLONE_NEWCGROUP",
        "CLONE_NEWUTS",
        "CLONE_NEWIPC",
        "CLONE_NEWUSER",
        "CLONE_NEWPID",
        "CLONE_NEWNET",
    ] {
        assert!(rules_for("clone").any(|rule| rule.when.iter().any(|t| t.value_name == flag)), "clone {flag}");
    }
    assert!(rules_for("clone3").all(|rule| rule.action == Action::Unsupported && rule.when.is_empty()));
    for kept in ["execve", "execveat", "kill", "tgkill", "rt_sigaction"] {
        assert_eq!(rules_for(kept).count(), 0, "{kept} must stay allowed");
    }
}

#[test]
fn every_rule_has_a_reason_and_each_call_one_action() {
    for rule in POLICY {
        assert!(!rule.reason.is_empty() && !rule.reason.contains('|'), "{rule}");
        assert!(rules_for(rule.call.name()).all(|other| other.action == rule.action), "{rule}");
        if cfg!(any(target_arch = "x86_64", target_arch = "aarch64")) {
            assert!(rule.call.number().is_some(), "{rule}");
        }
    }
}

#[test]
fn the_description_lists_every_rule() {
    let text = describe();
    for rule in POLICY {
        assert!(text.contains(&format!("| `{}` |", rule.call.name())), "{}", rule.call.name());
        assert!(text.contains(rule.reason), "{}", rule.reason);
    }
    assert!(text.contains("level == SOL_SOCKET (1) and optname == SO_MAX_PACING_RATE (47) | EPERM"), "{text}");
    assert!(text.contains("flags has CLONE_NEWNET (0x40000000) | EPERM"), "{text}");
}

/// SECURITY.md shows the table as `describe()` prints it, word for word,
/// so the two cannot drift apart.
#[test]
fn security_md_quotes_the_description() {
    let doc = include_str!("../../../../SECURITY.md");
    assert!(
        doc.contains(&describe()),
        "SECURITY.md's seccomp table differs from `streamletd seccomp-policy`; paste this in:\n{}",
        describe()
    );
}

#[test]
fn only_network_none_limits_socket_families() {
    let scoped: Vec<&Rule> = POLICY.iter().filter(|rule| rule.scope == Scope::NetworkNone).collect();
    let calls: Vec<&str> = scoped.iter().map(|rule| rule.call.name()).collect();
    assert_eq!(calls, ["socket", "socketpair"]);
    for rule in scoped {
        assert_eq!(rule.when, &[arg_ne!(0, domain, AF_UNIX)], "{rule}");
        assert_eq!(rule.action, Action::NoFamily);
    }
    let (none, host) = (build(Network::None).unwrap(), build(Network::Host).unwrap());
    assert!(none.len() > host.len(), "{} vs {}", none.len(), host.len());
    assert!(describe().contains("| `socket` | network = \"none\" and domain != AF_UNIX (1) | EAFNOSUPPORT |"));
}

#[test]
fn the_program_fits_the_kernel_and_chains_its_parts() {
    let program = build(Network::None).unwrap();
    assert!(program.len() <= MAX_INSTRUCTIONS, "{}", program.len());
    // Only the last part may allow; the others jump on.
    let allows = program.iter().filter(|insn| insn.code == RET_K && insn.k == libc::SECCOMP_RET_ALLOW).count();
    assert_eq!(allows, 1);
    assert_eq!(program.last().map(|insn| (insn.code, insn.k)), Some((RET_K, libc::SECCOMP_RET_ALLOW)));
    for (at, insn) in program.iter().enumerate() {
        if insn.code == JA {
            assert!(at + 1 + (insn.k as usize) < program.len(), "jump out of the program at {at}");
        }
    }
}

#[test]
fn install_refuses_an_empty_program() {
    let err = install_in_child(&Vec::new()).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
}

/// Each unconditional rule, called with all-ones arguments (invalid
/// flags, descriptors and pointers, harmless should the filter let the
/// call through), fails with the rule's errno.
#[test]
fn every_listed_call_fails_with_its_errno() {
    let calls: Vec<String> = POLICY
        .iter()
        .filter(|rule| rule.when.is_empty())
        .map(|rule| format!("({:?}, {})", rule.call.name(), rule.call.number().unwrap()))
        .collect();
    let script = format!(
        "for name, nr in [{}]:\n    print(name + '=' + attempt(libc.syscall(L(nr), *[L(-1)] * 6)))",
        calls.join(", ")
    );
    let seen = python(&script, filter(), root());
    for rule in POLICY.iter().filter(|rule| rule.when.is_empty()) {
        assert_eq!(seen.get(rule.call.name()), Some(&errno(rule.action.errno())), "{rule}");
    }
}

#[test]
fn pacing_and_mark_are_denied_other_socket_options_are_not() {
    let script = format!(
        r#"
print("pacing=" + sockopt(socket.SOL_SOCKET, 47, 1000))
print("mark=" + sockopt(socket.SOL_SOCKET, 36, 1))
print("priority=" + sockopt(socket.SOL_SOCKET, socket.SO_PRIORITY, 6))
print("sndbuf=" + sockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536))
print("nodelay=" + sockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1))
s = socket.socket()
v = ctypes.c_int(1000)
# The kernel reads level as an int: 0x1_0000_0001 is SOL_SOCKET to it.
print("wide_level=" + attempt(libc.syscall(L({setsockopt}), L(s.fileno()), L(0x100000001), L(47), ctypes.byref(v), L(4))))
"#,
        setsockopt = libc::SYS_setsockopt
    );
    // The host-network program: the other makes no TCP socket to test on.
    let seen = python(&script, Some(build(Network::Host).unwrap()), false);
    assert_eq!(seen["pacing"], errno(libc::EPERM), "{seen:?}");
    assert_eq!(seen["mark"], errno(libc::EPERM), "{seen:?}");
    assert_eq!(seen["priority"], errno(libc::EPERM), "{seen:?}");
    assert_eq!(seen["wide_level"], errno(libc::EPERM), "{seen:?}");
    assert_eq!(seen["sndbuf"], "ok", "{seen:?}");
    assert_eq!(seen["nodelay"], "ok", "{seen:?}");
}

/// The control: without the filter the same calls succeed here, so the
/// other tests prove the filter and not the environment.
#[test]
fn without_the_filter_the_same_calls_succeed() {
    let seen = python(r#"print("pacing=" + sockopt(socket.SOL_SOCKET, 47, 1000))"#, None, false);
    assert_eq!(seen["pacing"], "ok", "{seen:?}");
    if !root() {
        return;
    }
    let script = r#"
print("mark=" + sockopt(socket.SOL_SOCKET, 36, 1))
print("unshare=" + attempt(libc.unshare(0x40000000)))
print("mount=" + attempt(libc.mount(b"none", b"/tmp", b"tmpfs", ctypes.c_ulong(0), None)))
"#;
    let seen = python(script, None, true);
    assert_eq!(seen["mark"], "ok", "{seen:?}");
    assert_eq!(seen["unshare"], "ok", "{seen:?}");
    assert_eq!(seen["mount"], "ok", "{seen:?}");
}

#[test]
fn namespaces_mounts_and_ptrace_are_denied_even_to_root() {
    let root = root();
    let flags: Vec<String> = rules_for("clone")
        .flat_map(|rule| rule.when)
        .map(|test| match test.test {
            Test::HasBits(bits) => format!("({:?}, {bits})", test.value_name),
            Test::Equals(_) | Test::NotEquals(_) => unreachable!("clone is tested by flag"),
        })
        .collect();
    let script = format!(
        r#"
print("unshare=" + attempt(libc.unshare(0x40000000)))
print("mount=" + attempt(libc.mount(b"none", b"/tmp", b"tmpfs", ctypes.c_ulong(0), None)))
for name, flag in [{flags}]:
    rc = libc.syscall(L({clone}), L(flag | signal.SIGCHLD), L(0), L(0), L(0), L(0))
    if rc == 0:
        os._exit(0)
    if rc > 0:
        os.waitpid(rc, 0)
    print(name + "=" + attempt(rc))
# Last: should PTRACE_TRACEME get through, any later signal would stop this
# process for a tracer that never comes.
print("ptrace=" + attempt(libc.ptrace(L(0), L(0), None, None)), flush=True)
os._exit(0)
"#,
        flags = flags.join(", "),
        clone = libc::SYS_clone,
    );
    let seen = python(&script, filter(), root);
    for key in ["unshare", "mount", "ptrace", "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWUSER", "CLONE_NEWPID"] {
        assert_eq!(seen.get(key), Some(&errno(libc::EPERM)), "{key}: {seen:?}");
    }
    assert_eq!(seen.len(), 3 + flags.len(), "{seen:?}");
}

#[test]
fn fork_exec_threads_and_signals_still_work() {
    let script = format!(
        r#"
pid = os.fork()
if pid == 0:
    os.execv("/bin/true", ["/bin/true"])
print("fork_exec=" + str(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])))
print("subprocess=" + str(subprocess.run(["/bin/true"]).returncode))
t = threading.Thread(target=lambda: None)
t.start()
t.join()
print("thread=ok")
got = []
signal.signal(signal.SIGUSR1, lambda *_: got.append(1))
os.kill(os.getpid(), signal.SIGUSR1)
print("signal=" + ("ok" if got else "lost"))
print("clone3=" + attempt(libc.syscall(L({clone3}), None, L(0))))
"#,
        clone3 = libc::SYS_clone3
    );
    let seen = python(&script, filter(), false);
    assert_eq!(seen["fork_exec"], "0", "{seen:?}");
    assert_eq!(seen["subprocess"], "0", "{seen:?}");
    assert_eq!(seen["thread"], "ok", "{seen:?}");
    assert_eq!(seen["signal"], "ok", "{seen:?}");
    assert_eq!(seen["clone3"], errno(libc::ENOSYS), "{seen:?}");
}

/// Under `network = "none"` only Unix sockets can be made, by `socket`
/// or `socketpair`; under `"host"` every family the kernel has.
#[test]
fn network_none_allows_unix_sockets_only() {
    let script = format!(
        r#"
def make(name, family, kind=socket.SOCK_STREAM):
    try:
        socket.socket(family, kind).close()
        print(name + "=ok")
    except OSError as e:
        print(name + "=" + str(e.errno))
make("unix", socket.AF_UNIX)
make("unix_dgram", socket.AF_UNIX, socket.SOCK_DGRAM)
make("inet", socket.AF_INET)
make("inet6", socket.AF_INET6)
make("vsock", socket.AF_VSOCK)
make("netlink", socket.AF_NETLINK, socket.SOCK_RAW)
pair = (ctypes.c_int * 2)()
print("pair_unix=" + attempt(libc.syscall(L({socketpair}), L(1), L(1), L(0), pair)))
print("pair_inet=" + attempt(libc.syscall(L({socketpair}), L(2), L(1), L(0), pair)))
# The kernel reads domain as an int: 0x1_0000_0001 is AF_UNIX to it, and
# 0x1_0000_0028 is AF_VSOCK.
print("wide_vsock=" + attempt(libc.syscall(L({socket}), L(0x100000028), L(1), L(0))))
"#,
        socketpair = libc::SYS_socketpair,
        socket = libc::SYS_socket,
    );
    let seen = python(&script, filter(), false);
    let refused = errno(libc::EAFNOSUPPORT);
    for key in ["unix", "unix_dgram", "pair_unix"] {
        assert_eq!(seen[key], "ok", "{key}: {seen:?}");
    }
    for key in ["inet", "inet6", "vsock", "netlink", "pair_inet", "wide_vsock"] {
        assert_eq!(seen[key], refused, "{key}: {seen:?}");
    }
    let host = python(&script, Some(build(Network::Host).unwrap()), false);
    for key in ["unix", "inet", "netlink"] {
        assert_eq!(host[key], "ok", "{key} under network = host: {host:?}");
    }
    // socketpair of AF_INET is the kernel's own EOPNOTSUPP there.
    assert_eq!(host["pair_inet"], errno(libc::EOPNOTSUPP), "{host:?}");
}

#[test]
fn the_child_runs_under_one_filter_with_no_new_privs() {
    let status = run("/bin/cat", &["/proc/self/status"], filter(), false);
    assert!(status.contains("Seccomp:\t2\n"), "{status}");
    assert!(status.contains("NoNewPrivs:\t1\n"), "{status}");
    if status.contains("Seccomp_filters:") {
        assert!(status.contains("Seccomp_filters:\t1\n"), "{status}");
    }
}
