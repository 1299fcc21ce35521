//! The sandbox on the real kernel: real cgroups (v1 here), namespaces,
//! identity and capabilities. Needs root; under STREAMLET_REQUIRE_PRIVILEGED=1
//! (as in CI) a machine that cannot run it fails instead of skipping.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;

use streamlet_sandbox::cgroup::v1::V1;
use streamlet_sandbox::cgroup::{CgroupManager, CpuLimit, Limits};
use streamlet_sandbox::mounts::{MountPlan, View};
use streamlet_sandbox::plan::{last_capability, ChildPlan, NAMESPACES};
use streamlet_sandbox::{spawn, SpawnSpec};

/// Whether this process may run privileged tests; panics where they must run.
fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let cgroups = std::path::Path::new("/sys/fs/cgroup/memory").exists();
    if root && cgroups {
        return true;
    }
    let why = if root { "no cgroup v1 memory hierarchy" } else { "not root" };
    if std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        panic!("privileged sandbox test cannot run ({why}) but STREAMLET_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("skipping privileged sandbox test: {why}");
    false
}

#[tokio::test]
async fn a_sandboxed_child_is_confined_limited_and_accounted() {
    if !privileged() {
        return;
    }
    let base = format!("streamlet-sandbox-test-{}", std::process::id());
    let v1 = V1::discover(&base).unwrap();
    v1.prepare().unwrap();
    let _cleanup = Cleanup(V1::discover(&base).unwrap());
    let limits = Limits { cpu: Some(CpuLimit::from_cores(0.5)), memory: Some(32 << 20), pids: Some(16) };
    let mut cgroup = v1.create("test", 1, &limits).unwrap();

    let plan = Arc::new(ChildPlan {
        cgroup_procs: cgroup.procs_fds(),
        namespaces: NAMESPACES,
        pid_namespace: true,
        join_network: None,
        mounts: MountPlan::new(View { readonly_root: true, own_proc: true }),
        rlimits: vec![(libc::RLIMIT_NOFILE, 64), (libc::RLIMIT_CORE, 0)],
        drop_bounding_up_to: Some(last_capability()),
        run_as: Some((65534, 65534)),
        seccomp: None,
    });
    let (ours, theirs) = UnixStream::pair().unwrap();
    let script = "exec >&3 2>&3
cat /proc/self/status
echo cgroups:; cat /proc/self/cgroup
echo netdev:; cat /proc/net/dev; echo end-netdev
touch /etc/streamlet-should-not-exist && echo etc-writable
echo tmp > /tmp/x && echo tmp-writable
echo pid=$$ procs=$(ls -d /proc/[0-9]* | wc -l)
ulimit -n
";
    let mut child = spawn(SpawnSpec {
        program: "/bin/sh".into(),
        arg0: None,
        args: vec!["-c".into(), script.into()],
        control: theirs.into(),
        stderr: None,
        plan: Some(plan),
    })
    .unwrap();
    cgroup.close_procs();
    let status = child.wait().await.unwrap();
    let mut out = String::new();
    (&ours).read_to_string(&mut out).unwrap();
    assert!(status.success(), "{status:?}\n{out}");

    let field = |name: &str| {
        out.lines().find_map(|l| l.strip_prefix(&format!("{name}:\t"))).unwrap_or_else(|| panic!("{name} in {out}"))
    };
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("CapPrm"), "0000000000000000");
    assert_eq!(field("CapInh"), "0000000000000000");
    assert_eq!(field("CapBnd"), "0000000000000000");
    assert_eq!(field("CapAmb"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert!(field("Uid").starts_with("65534"), "{}", field("Uid"));
    assert!(out.contains(&format!("memory:/{base}/test/1")) || out.contains(&format!("/{base}/test/1")), "{out}");
    let netdev = out.split("netdev:").nth(1).unwrap().split("end-netdev").next().unwrap();
    let netdev: Vec<&str> = netdev.lines().filter(|l| l.contains(':')).collect();
    assert_eq!(netdev.len(), 1, "only lo in the new network namespace: {netdev:?}");
    assert!(netdev[0].trim_start().starts_with("lo:"));
    assert!(!out.contains("etc-writable"), "the root is read-only");
    assert!(!std::path::Path::new("/etc/streamlet-should-not-exist").exists());
    assert!(out.contains("tmp-writable"), "a private /tmp: {out}");
    assert_eq!(out.lines().last(), Some("64"), "RLIMIT_NOFILE");
    // The init of a pid namespace of its own, whose /proc shows only it and
    // what it runs for the count: a subshell and ls, and wc unless ls has
    // read /proc before the subshell started it (both happen). The host's
    // hundreds of processes never appear.
    assert!(out.lines().any(|l| l == "pid=1 procs=3" || l == "pid=1 procs=4"), "{out}");

    let accounting = v1.accounting(&cgroup).unwrap();
    assert!(accounting.cpu_usage_us > 0, "{accounting:?}");
    assert!(accounting.memory_peak > 0, "{accounting:?}");
    v1.remove(&cgroup).unwrap();
    for h in v1.hierarchies() {
        assert!(!h.base.join("test").exists(), "removed: {}", h.base.display());
    }
}

/// Removes the test's cgroup tree whatever happens.
struct Cleanup(V1);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for h in self.0.hierarchies() {
            let _ = streamlet_sandbox::cgroup::fs::remove_tree(&h.base);
        }
    }
}

/// Spawns that change the child's user while other threads of the parent
/// come and go: the change of user in the child of the clone must not wait
/// for the parent's threads (glibc's wrappers would, forever, for a thread
/// that was being created at the clone).
#[tokio::test]
async fn a_change_of_user_in_the_child_never_waits_for_the_parents_threads() {
    if !privileged() {
        return;
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let churn = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::spawn(|| {}).join().unwrap();
            }
        })
    };
    let plan = Arc::new(ChildPlan { run_as: Some((65534, 65534)), ..ChildPlan::default() });
    let started = std::time::Instant::now();
    for round in 0..300 {
        let (_ours, theirs) = UnixStream::pair().unwrap();
        let spawned = spawn(SpawnSpec {
            program: "/bin/true".into(),
            arg0: None,
            args: vec![],
            control: theirs.into(),
            stderr: None,
            plan: Some(plan.clone()),
        });
        let mut child = spawned.unwrap_or_else(|e| panic!("spawn {round} after {:?}: {e}", started.elapsed()));
        assert!(child.wait().await.unwrap().success(), "spawn {round}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    churn.join().unwrap();
}
