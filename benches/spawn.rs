//! Spawn-to-ready latency of a streamlet: fully sandboxed (cgroup with
//! limits, its own pid namespace and /proc, new network/IPC/UTS/mount
//! namespaces with its own /dev and temporary directories, its own uid, no
//! capabilities, rlimits, seccomp, the channel handshake) beside the same
//! spawn without the sandbox, the sandbox without the host's network, the
//! sandbox with and without its pid namespace spawned in pairs, `bwrap
//! --unshare-all --die-with-parent --ro-bind / / /bin/true` and a plain
//! `/bin/true` on the same machine.
//!
//! `cargo bench --bench spawn` (as root for the sandbox; `-- --spawns N`).
//!
//! Timed: from the start of the cgroup's creation (the sandboxed case) or of
//! the fork, to the streamlet's `Ready` on its channel (for bwrap and
//! /bin/true: to their exit). The kill and clean-up after each are not timed.

use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_proto::channel::{encode, seqpacket_pair, Channel};
use streamlet_proto::fdpass::send_with_fds;
use streamlet_proto::worker::{FromWorker, HandlerSpec, Init, ToWorker};
use streamlet_proto::WorkerId;
use streamlet_sandbox::mounts::{MountPlan, Op, View};
use streamlet_sandbox::plan::ChildPlan;
use streamlet_sandbox::{spawn, SpawnSpec};
use streamlet_supervisor::exe::WorkerExe;
use streamlet_supervisor::sandbox::{Confinement, Sandbox};
use streamlet_supervisor::Config;

const CONFIG: &str = r#"
[sandbox]
required = false

[pools.bench]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 8
limits = { cpu = "0.5", memory = "64MiB", pids = 64 }
network = "none"
"#;

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let spawns: usize = args.windows(2).find(|w| w[0] == "--spawns").map_or(300, |w| w[1].parse().expect("--spawns N"));
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let config = Config::parse(CONFIG, "bench").unwrap();
    let pool = config.pools["bench"].clone();
    let socket = std::path::PathBuf::from(format!("/tmp/streamlet-bench-{}.sock", std::process::id()));
    let mut sandbox = Sandbox::probe(&config, &socket);
    for line in sandbox.missing() {
        println!("note: sandbox incomplete here: {line}");
    }
    sandbox.prepare(&socket, false).unwrap();
    println!("sandbox: {}", sandbox.describe());
    let worker = std::path::Path::new(env!("CARGO_BIN_EXE_streamlet-worker"));
    let exe = WorkerExe::open(worker).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let mut unconfined = runtime.block_on(measure(&exe, spawns, None));
    report("streamlet, no sandbox", &mut unconfined);
    if root {
        let mut confined = runtime.block_on(measure(&exe, spawns, Some((&sandbox, &pool))));
        report("streamlet, full sandbox", &mut confined);
        // Where the time goes: the same without a new network namespace.
        let host_net = streamlet_supervisor::config::PoolConfig {
            network: streamlet_supervisor::config::Network::Host,
            ..(*pool).clone()
        };
        let mut confined = runtime.block_on(measure(&exe, spawns, Some((&sandbox, &host_net))));
        report("streamlet, full sandbox but the host's network", &mut confined);
        // The pid namespace's share (and its /proc's), paired spawn by spawn.
        let (mut with, mut without, mut diff) = runtime.block_on(measure_paired(
            spawns,
            Some((&sandbox, &pool)),
            (&exe, |_| {}),
            (&exe, without_pid_namespace),
        ));
        report("paired: streamlet, full sandbox", &mut with);
        report("paired: streamlet, full sandbox but no pid namespace", &mut without);
        report_difference("paired: the pid namespace's cost (with - without)", &mut diff);
    } else {
        println!("not root: the sandboxed spawn is not measured");
    }
    // The built-in worker (streamletd's own executable, the default) against
    // the separate streamlet-worker binary, paired, without a sandbox: what
    // exec'ing and starting the larger binary costs.
    let daemon = WorkerExe::builtin_of(std::path::Path::new(env!("CARGO_BIN_EXE_streamletd"))).unwrap();
    let (mut builtin, mut separate, mut diff) =
        runtime.block_on(measure_paired(spawns, None, (&daemon, |_| {}), (&exe, |_| {})));
    report("paired: streamlet, no sandbox, built into streamletd", &mut builtin);
    report("paired: streamlet, no sandbox, streamlet-worker", &mut separate);
    report_difference("paired: the built-in worker's cost (streamletd - worker)", &mut diff);
    let mut bwrap =
        command_loop(spawns, "bwrap", &["--unshare-all", "--die-with-parent", "--ro-bind", "/", "/", "/bin/true"]);
    report("bwrap --unshare-all --die-with-parent --ro-bind / / /bin/true", &mut bwrap);
    let mut plain = command_loop(spawns, "/bin/true", &[]);
    report("/bin/true (fork, exec, exit)", &mut plain);
    sandbox.teardown();
}

/// The plan as the daemon makes it, less the pid namespace and its /proc.
fn without_pid_namespace(plan: &mut ChildPlan) {
    plan.pid_namespace = false;
    let readonly_root = plan.mounts.steps().iter().any(|step| step.op == Op::ReadOnlyTree);
    plan.mounts = MountPlan::new(View { readonly_root, own_proc: false });
}

async fn measure(
    exe: &WorkerExe,
    spawns: usize,
    sandboxed: Option<(&Sandbox, &streamlet_supervisor::config::PoolConfig)>,
) -> Vec<Duration> {
    measure_with(exe, spawns, sandboxed, |_| {}).await
}

async fn measure_with(
    exe: &WorkerExe,
    spawns: usize,
    sandboxed: Option<(&Sandbox, &streamlet_supervisor::config::PoolConfig)>,
    adjust: fn(&mut ChildPlan),
) -> Vec<Duration> {
    let mut times = Vec::with_capacity(spawns);
    for i in 0..spawns + 10 {
        let elapsed = spawn_once(exe, WorkerId(i as u64 + 1), sandboxed, adjust).await;
        if i >= 10 {
            times.push(elapsed);
        }
    }
    times
}

/// A binary and a change to the plan, for [`measure_paired`].
type Variant<'a> = (&'a WorkerExe, fn(&mut ChildPlan));

/// `first` and `second` spawned in turn, one of each per round, so that
/// whatever else the machine does weighs on both alike: their times, and
/// the difference within each pair.
async fn measure_paired(
    spawns: usize,
    sandboxed: Option<(&Sandbox, &streamlet_supervisor::config::PoolConfig)>,
    first: Variant<'_>,
    second: Variant<'_>,
) -> (Vec<Duration>, Vec<Duration>, Vec<f64>) {
    let (mut a, mut b, mut diff) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..spawns + 10 {
        let id = 2 * i as u64 + 1;
        let x = spawn_once(first.0, WorkerId(id), sandboxed, first.1).await;
        let y = spawn_once(second.0, WorkerId(id + 1), sandboxed, second.1).await;
        if i >= 10 {
            a.push(x);
            b.push(y);
            diff.push((x.as_secs_f64() - y.as_secs_f64()) * 1e3);
        }
    }
    (a, b, diff)
}

/// One spawn to `Ready`, timed; the kill and clean-up after it are not.
async fn spawn_once(
    exe: &WorkerExe,
    id: WorkerId,
    sandboxed: Option<(&Sandbox, &streamlet_supervisor::config::PoolConfig)>,
    adjust: fn(&mut ChildPlan),
) -> Duration {
    let start = Instant::now();
    let (ours, theirs) = seqpacket_pair().unwrap();
    let init = ToWorker::Init(Init {
        worker: id,
        pool: "bench".into(),
        handler: HandlerSpec::Echo { framing: None },
        stats_interval_ms: 0,
        heartbeat_interval_ms: 0,
    });
    send_with_fds(ours.as_fd(), &encode(&init).unwrap(), &[]).unwrap();
    let (plan, cgroup, uid) = match sandboxed {
        Some((sandbox, pool)) => {
            let (mut plan, cgroup, uid) = sandbox.plan(pool, id).unwrap();
            adjust(&mut plan);
            (Some(Arc::new(plan)), cgroup, uid)
        }
        None => (None, None, None),
    };
    let mut child = spawn(SpawnSpec {
        program: exe.exec_path(),
        arg0: Some(exe.arg0().to_owned()),
        args: vec![],
        control: theirs,
        stderr: None,
        plan,
    })
    .unwrap();
    let mut cgroup = cgroup;
    if let Some(c) = cgroup.as_mut() {
        c.close_procs();
    }
    let channel = Channel::new(ours).unwrap();
    match channel.recv::<FromWorker>().await.unwrap() {
        Some((FromWorker::Ready { .. }, _)) => {}
        other => panic!("expected Ready, got {other:?}"),
    }
    let elapsed = start.elapsed();
    drop(channel);
    let _ = child.start_kill();
    let _ = child.wait().await;
    if let Some((sandbox, _)) = sandboxed {
        sandbox.release(Confinement { cgroup: cgroup.map(Arc::new), uid });
    }
    elapsed
}

fn command_loop(spawns: usize, program: &str, args: &[&str]) -> Vec<Duration> {
    let mut times = Vec::with_capacity(spawns);
    for i in 0..spawns + 10 {
        let start = Instant::now();
        let status = match Command::new(program).args(args).status() {
            Ok(status) => status,
            Err(e) => {
                println!("{program}: cannot run ({e}); install it to compare");
                return Vec::new();
            }
        };
        let elapsed = start.elapsed();
        if !status.success() {
            println!("{program}: exited with {status}; not measured");
            return Vec::new();
        }
        if i >= 10 {
            times.push(elapsed);
        }
    }
    times
}

/// The spread of the differences within pairs, in milliseconds.
fn report_difference(what: &str, diff: &mut [f64]) {
    diff.sort_by(f64::total_cmp);
    let at = |p: f64| diff[((diff.len() - 1) as f64 * p).round() as usize];
    println!(
        "{what:<62} p10 {:>6.3} ms  p50 {:>6.3} ms  p90 {:>6.3} ms  ({} pairs)",
        at(0.1),
        at(0.5),
        at(0.9),
        diff.len()
    );
}

fn report(what: &str, times: &mut [Duration]) {
    if times.is_empty() {
        return;
    }
    times.sort();
    let at = |p: f64| times[((times.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1e3;
    println!(
        "{what:<62} p50 {:>6.3} ms  p90 {:>6.3} ms  p99 {:>6.3} ms  ({} spawns)",
        at(0.5),
        at(0.9),
        at(0.99),
        times.len()
    );
}
