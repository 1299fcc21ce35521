use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::*;

fn position(target: &str, pred: impl Fn(&Op) -> bool) -> usize {
    PLAN.iter().position(|m| m.target() == target && pred(&m.op)).unwrap_or_else(|| panic!("no step for {target}"))
}

#[test]
fn the_steps_run_in_an_order_that_works() {
    assert_eq!(PLAN[0].op, Op::PrivateTree, "private first: nothing after it may reach the host");
    let read_only = position("/", |op| *op == Op::ReadOnlyTree);
    let dev = position("/dev", |op| matches!(op, Op::Tmpfs { .. }));
    let sealed = position("/dev", |op| matches!(op, Op::ReadOnly { .. }));
    for (at, step) in PLAN.iter().enumerate() {
        if matches!(step.op, Op::Tmpfs { .. } | Op::Proc) {
            assert!(at > read_only, "{step}: a mount made before the read-only step would be read-only too");
        }
        if step.target().starts_with("/dev/") {
            assert!(dev < at && at < sealed, "{step}: between the new /dev and its remount read-only");
        }
    }
    assert!(
        position("/dev/shm", |op| matches!(op, Op::Dir { .. }))
            < position("/dev/shm", |op| matches!(op, Op::Tmpfs { .. }))
    );
}

#[test]
fn dev_has_no_pty_and_nothing_but_the_harmless_devices() {
    let devices: Vec<&str> = PLAN.iter().filter(|m| matches!(m.op, Op::Device { .. })).map(Mount::target).collect();
    assert_eq!(devices, ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"]);
    assert!(PLAN.iter().all(|m| !m.target().contains("pts") && !m.target().contains("ptmx")));
}

#[test]
fn a_view_takes_the_steps_it_asks_for() {
    let plain = MountPlan::new(View::default());
    assert!(plain.steps().iter().all(|m| m.when == When::Always));
    assert_eq!(plain.steps().len(), PLAN.iter().filter(|m| m.when == When::Always).count());
    let whole = MountPlan::new(View { readonly_root: true, own_proc: true });
    assert_eq!(whole.steps(), PLAN);
    assert!(MountPlan::none().is_empty());
}

#[test]
fn hidden_names_the_mount_that_hides_a_path() {
    for (path, target) in [
        ("/tmp/x", "/tmp"),
        ("/var/tmp/a/b", "/var/tmp"),
        ("/dev/shm/x", "/dev"),
        ("/dev/null", "/dev"),
        ("/proc/1/exe", "/proc"),
    ] {
        assert_eq!(hidden(Path::new(path)).map(|(t, _)| t), Some(target), "{path}");
    }
    for path in ["/usr/bin/cat", "/tmpfile", "/run/x", "/var/lib/x", "/devices"] {
        assert_eq!(hidden(Path::new(path)), None, "{path}");
    }
}

#[test]
fn the_description_lists_every_step_and_security_md_quotes_it() {
    let text = describe();
    for step in PLAN {
        assert!(text.contains(&step.to_string()), "{step}");
        assert!(!step.reason.contains('|') && !step.op.to_string().contains('|'), "{step}");
    }
    assert!(text.contains("| `/dev/null` | device 1:3, mode 0666 | always |"), "{text}");
    let doc = include_str!("../../../../SECURITY.md");
    assert!(doc.contains(&text), "SECURITY.md's mount table differs from mounts::describe(); paste this in:\n{text}");
}

/// As root: the plan, applied in a child's own mount namespace, gives the
/// /dev and /tmp it promises.
#[test]
fn applied_the_child_sees_its_own_dev_and_tmp() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
            panic!("privileged mount test cannot run (not root) but STREAMLET_REQUIRE_PRIVILEGED=1");
        }
        eprintln!("skipping privileged mount test: not root");
        return;
    }
    let plan = MountPlan::new(View { readonly_root: true, own_proc: false });
    let script = "ls -A /dev | tr '\\n' ' '; echo; \
        echo x > /dev/null && echo null=ok; \
        head -c 4 /dev/urandom | wc -c; \
        touch /dev/new 2>/dev/null && echo dev=writable || echo dev=sealed; \
        touch /tmp/new && echo tmp=ok; \
        touch /etc/streamlet-mount-test 2>/dev/null && echo root=writable || echo root=sealed; \
        ls /dev/ptmx 2>/dev/null || echo ptmx=absent";
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", script]).stdin(Stdio::null());
    // SAFETY: unshare(2) and the plan's raw system calls only.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(io::Error::last_os_error());
            }
            plan.apply()
        });
    }
    let out = cmd.output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("fd full null random shm stderr stdin stdout tty urandom zero "));
    for line in ["null=ok", "4", "dev=sealed", "tmp=ok", "root=sealed", "ptmx=absent"] {
        assert!(text.lines().any(|l| l == line), "{line} in {text}");
    }
    assert!(!Path::new("/etc/streamlet-mount-test").exists());
}
