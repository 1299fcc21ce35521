//! The hostile-streamlet suite: as root, on the real cgroup file system, a
//! streamlet that tries to hurt the host, the daemon or its neighbours.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use streamlet_client::Client;
use streamlet_proto::{EndReason, Event, ExitCause, OpenRequest, Opened};

use crate::support::{echo_once, hostile_worker, privileged, Daemon};

pub(crate) fn config(limits: &str) -> String {
    config_with(limits, true)
}

pub(crate) fn config_with(limits: &str, readonly_root: bool) -> String {
    format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"2s\"\nstats_interval = \"50ms\"\n\n\
         [sandbox]\nrequired = true\n\n\
         [pools.edge]\nhandler = {{ kind = \"echo\" }}\nworkers = {{ min = 2, max = 2 }}\nstreams_per_worker = 4\n\
         limits = {{ {limits} }}\nreadonly_root = {readonly_root}\n{user}\
         # The spin test blocks a streamlet's thread for seconds on purpose.\n\
         heartbeat_timeout = \"30s\"\n",
        hostile_worker().display(),
        // A writable root needs a user of the pool's own (never a uid that
        // goes to another streamlet later).
        user = if readonly_root { "" } else { "user = \"nobody\"\n" },
    )
}

pub(crate) async fn open(client: &mut Client, labels: &[(&str, &str)]) -> (Opened, UnixStream) {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let request = OpenRequest { labels, ..OpenRequest::new("edge") };
    let opened = client.open(request, theirs.as_fd()).await.unwrap();
    mine.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    (opened, mine)
}

pub(crate) fn report(conn: &mut UnixStream) -> String {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        match conn.read(&mut buf) {
            Ok(0) => return text,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
            Err(e) => panic!("reading the report: {e} (so far: {text:?})"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_bomb_is_oom_killed_and_reported_as_oom_while_neighbours_echo() {
    if !privileged() {
        return;
    }
    let daemon = Daemon::start(&config("memory = \"64MiB\", pids = 64"));
    let mut client = daemon.client().await;
    let (neighbour, mut neighbour_conn) = open(&mut client, &[]).await;
    let (bomb, _bomb_conn) = open(&mut client, &[("behave", "memory-bomb")]).await;
    assert_ne!(bomb.worker, neighbour.worker, "the bomb has a streamlet of its own");
    let ended = loop {
        let event = tokio::time::timeout(Duration::from_secs(20), client.next_event()).await.unwrap().unwrap();
        let Event::StreamEnded(e) = event else { panic!("expected stream_ended, got {:?}", event) };
        if e.stream == bomb.stream {
            break e;
        }
    };
    assert_eq!(ended.reason, EndReason::WorkerDied { cause: ExitCause::Oom }, "{ended:?}");
    echo_once(&mut neighbour_conn, b"still echoing");
    let workers = client.workers(None).await.unwrap();
    let slot = workers.iter().find(|w| w.last_exit.is_some()).expect("the bomb's slot restarted");
    assert_eq!(slot.last_exit, Some(ExitCause::Oom));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_stops_at_pids_max_and_neighbours_are_unaffected() {
    if !privileged() {
        return;
    }
    let daemon = Daemon::start(&config("pids = 16"));
    let mut client = daemon.client().await;
    let (_neighbour, mut neighbour_conn) = open(&mut client, &[]).await;
    let (_bomb, mut bomb_conn) = open(&mut client, &[("behave", "fork-bomb")]).await;
    let text = report(&mut bomb_conn);
    let forked: u32 = text
        .trim()
        .strip_prefix("forked ")
        .and_then(|t| t.split(':').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{text:?}"));
    assert!(text.contains("EAGAIN"), "fork failed for want of pids: {text:?}");
    assert!(forked < 16, "stopped below pids.max: {text:?}");
    echo_once(&mut neighbour_conn, b"unaffected");
    let usage = client.workers(None).await.unwrap().iter().filter_map(|w| w.usage).map(|u| u.pids).max().unwrap();
    assert!(usage <= 16, "pids.current {usage}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_spin_is_held_to_the_quota() {
    if !privileged() {
        return;
    }
    let daemon = Daemon::start(&config("cpu = \"0.5\""));
    let mut client = daemon.client().await;
    let (spinner, mut conn) = open(&mut client, &[("behave", "spin"), ("seconds", "4")]).await;
    let cpu = |workers: &[streamlet_proto::WorkerInfo]| {
        workers.iter().find(|w| w.id == spinner.worker).and_then(|w| w.usage).map(|u| u.cpu_usage_us).unwrap()
    };
    // Measure over the middle of the spin, from the cgroup's own statistics.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (t0, c0) = (Instant::now(), cpu(&client.workers(None).await.unwrap()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (t1, c1) = (Instant::now(), cpu(&client.workers(None).await.unwrap()));
    let share = (c1 - c0) as f64 / (t1 - t0).as_micros() as f64;
    assert!((0.45..=0.55).contains(&share), "CPU share {share:.3} of a core, quota 0.5");
    assert_eq!(report(&mut conn), "spun\n");
    let throttled = client.workers(None).await.unwrap().iter().find(|w| w.id == spinner.worker).unwrap().usage.unwrap();
    assert!(throttled.cpu_throttled_us > 0, "{throttled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamlet_cannot_reach_the_hosts_network() {
    if !privileged() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let daemon = Daemon::start(&config("pids = 64"));
    let mut client = daemon.client().await;
    let (_s, mut conn) = open(&mut client, &[("behave", "connect"), ("port", &port)]).await;
    let text = report(&mut conn);
    // No IP socket at all under network = "none" (the seccomp filter), and
    // an empty network namespace behind that.
    assert_eq!(text, "connect: EAFNOSUPPORT\n");
    assert!(listener.accept().is_err(), "nothing reached the host's listener");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamlet_has_no_privilege_left() {
    if !privileged() {
        return;
    }
    // A daemon with supplementary groups, so dropping them is put to the test.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("streamletd.toml"), config("pids = 64")).unwrap();
    let socket = dir.path().join("d.sock");
    let mut cmd = std::process::Command::new(crate::support::STREAMLETD);
    cmd.arg("--config").arg(dir.path().join("streamletd.toml")).arg("--socket").arg(&socket);
    // SAFETY: setgroups(2) in the forked child before exec, with a static list.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            let groups: [libc::gid_t; 2] = [27, 100];
            if libc::setgroups(2, groups.as_ptr()) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let daemon = Daemon::spawn(cmd, dir, socket);
    let mut client = daemon.client().await;
    let (opened, mut conn) = open(&mut client, &[("behave", "privilege")]).await;
    let text = report(&mut conn);
    for line in [
        "ptrace: EPERM",
        "mount: EPERM",
        "setuid: EPERM",
        "unshare: EPERM",
        "pacing: EPERM",
        "linger: EPERM",
        "devtty: ENXIO",
        "tiocsti: EPERM",
        "stderr: pipe:",
    ] {
        assert!(text.contains(line), "{line} in {text:?}");
    }
    let pid = client.workers(None).await.unwrap().iter().find(|w| w.id == opened.worker).unwrap().pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    for line in [
        "CapInh:\t0000000000000000",
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
        "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t1",
        "Seccomp:\t2",
    ] {
        assert!(status.contains(line), "{line} in /proc/{pid}/status:\n{status}");
    }
    let groups = status.lines().find_map(|l| l.strip_prefix("Groups:")).unwrap();
    assert_eq!(groups.trim(), "", "no supplementary groups (the daemon had 27 and 100)");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:\t")).unwrap();
    assert!(!uid.starts_with("0\t"), "not root: {uid}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamlet_cannot_signal_its_neighbours_or_the_daemon_nor_write_its_files() {
    if !privileged() {
        return;
    }
    // Without a read-only root: the file below is protected by its owner and
    // mode alone.
    let daemon = Daemon::start(&config_with("pids = 64", false));
    let mut client = daemon.client().await;
    let (neighbour, mut neighbour_conn) = open(&mut client, &[]).await;
    let workers = client.workers(None).await.unwrap();
    let neighbour_pid = workers.iter().find(|w| w.id == neighbour.worker).unwrap().pid;
    // A file of the daemon's user, outside the directories a streamlet sees
    // as its own tmpfs.
    let daemon_file = std::path::Path::new("/run").join(format!("streamlet-daemon-file-{}", daemon.pid()));
    std::fs::write(&daemon_file, "precious").unwrap();
    std::fs::set_permissions(&daemon_file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let pids = format!("{},{neighbour_pid}", daemon.pid());
    let path = daemon_file.display().to_string();
    let (escaper, mut conn) = open(&mut client, &[("behave", "escape"), ("pids", &pids), ("path", &path)]).await;
    assert_ne!(escaper.worker, neighbour.worker);
    let text = report(&mut conn);
    // In a pid namespace of its own, the daemon and its neighbour are not
    // even there to be refused (and their uids would refuse it too).
    assert!(text.contains(&format!("kill {}: ESRCH", daemon.pid())), "{text:?}");
    assert!(text.contains(&format!("kill {neighbour_pid}: ESRCH")), "{text:?}");
    assert!(text.contains(&format!("write {path}: EACCES")), "{text:?}");
    assert_eq!(std::fs::read_to_string(&daemon_file).unwrap(), "precious");
    std::fs::remove_file(&daemon_file).unwrap();
    echo_once(&mut neighbour_conn, b"alive");
    let mut status = client.status().await.unwrap();
    status.pools.retain(|p| p.name == "edge");
    assert_eq!(status.pools[0].ready, 2);
    let _ = neighbour_conn.flush();
}

/// What a streamlet forked dies with it, even when the daemon is SIGKILLed
/// (the streamlet is its pid namespace's init); the cgroup tree the daemon
/// leaves is removed by the next daemon on the same socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_subtrees_of_an_earlier_run_are_killed_and_removed_at_start() {
    if !privileged() {
        return;
    }
    let mut daemon = Daemon::start(&config("pids = 8"));
    let mut client = daemon.client().await;
    let (opened, mut conn) = open(&mut client, &[("behave", "fork-bomb")]).await;
    let text = report(&mut conn);
    assert!(text.starts_with("forked "), "{text:?}");
    let worker_pid = client.workers(None).await.unwrap().iter().find(|w| w.id == opened.worker).unwrap().pid;
    let cgroup = std::fs::read_to_string(format!("/proc/{worker_pid}/cgroup")).unwrap();
    let pids_dir = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("8:pids:").or_else(|| l.split_once(":pids:").map(|(_, p)| p)))
        .unwrap()
        .to_owned();
    let dir = std::path::Path::new("/sys/fs/cgroup/pids").join(pids_dir.trim_start_matches('/'));
    let forked: Vec<i32> =
        std::fs::read_to_string(dir.join("cgroup.procs")).unwrap().lines().map(|l| l.parse().unwrap()).collect();
    assert!(forked.len() > 1, "the bomb's children are in its cgroup: {forked:?}");
    drop(conn);
    crate::support::signal(daemon.pid(), libc::SIGKILL);
    // The streamlet dies with the daemon (PR_SET_PDEATHSIG), and the kernel
    // ends its namespace with it: no new daemon is needed for that.
    assert!(crate::support::wait_gone(worker_pid));
    for pid in &forked {
        assert!(crate::support::wait_gone(*pid as u32), "process {pid} outlived its streamlet");
    }
    assert!(dir.exists(), "the stale cgroup is left for the next daemon");
    daemon.restart();
    // The new daemon's streamlet of the same id (maybe its spare) has the
    // same path; only it is in there.
    daemon.wait_until(|s| s.pools[0].spares == 1);
    let mut client = daemon.client().await;
    let now: Vec<u32> = client.workers(None).await.unwrap().iter().map(|w| w.pid).collect();
    let inside: Vec<u32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(inside.iter().all(|p| now.contains(p)), "only the new daemon's streamlets: {inside:?} vs {now:?}");
}

/// A daemon that cannot have the whole sandbox (here: not root) names what is
/// missing and how to get each part, then refuses to start when the sandbox
/// is required, or runs with what it has and warns when it is not.
#[test]
fn without_root_the_daemon_says_what_is_missing() {
    if !privileged() {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // Copies the user can reach whatever the build tree's permissions.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for name in ["streamletd", "streamlet-worker"] {
        std::fs::copy(std::path::Path::new(crate::support::STREAMLETD).with_file_name(name), bin.join(name)).unwrap();
    }
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    let c = std::ffi::CString::new(run.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: chown(2) of a directory we just made, by a NUL-terminated path.
    let rc = unsafe { libc::chown(c.as_ptr(), 65534, 65534) };
    assert_eq!(rc, 0);
    let daemon = |required: bool| {
        let config = dir.path().join(format!("required-{required}.toml"));
        std::fs::write(&config, format!("[sandbox]\nrequired = {required}\n\n[pools.echo]\nhandler = {{ kind = \"echo\" }}\nworkers = {{ min = 1, max = 1 }}\nstreams_per_worker = 2\n")).unwrap();
        let mut cmd = std::process::Command::new(bin.join("streamletd"));
        cmd.arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(run.join(format!("{required}.sock")))
            .uid(65534)
            .gid(65534);
        cmd
    };

    let out = daemon(true).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("sandbox is required ([sandbox] required = true) but incomplete"), "{err}");
    assert!(err.contains("not running as root"), "names the missing root: {err}");
    assert!(err.contains("to fix: run streamletd as root"), "and how to get it: {err}");
    assert!(err.contains("no cgroup limits"), "names the missing cgroups: {err}");
    assert!(err.contains("Delegate=yes") && err.contains("[sandbox] cgroup_root"), "and how to get them: {err}");
    assert!(err.contains("set [sandbox] required = false"), "and how to start without: {err}");
    assert!(!run.join("true.sock").exists(), "refused before binding");

    let socket = run.join("false.sock");
    let mut relaxed = Daemon::spawn(daemon(false), tempfile::tempdir().unwrap(), socket);
    let status = relaxed.wait_until(|s| s.pools[0].ready == 1);
    assert_eq!(status.pools[0].ready, 1, "it runs with what it has");
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = relaxed.client().await;
        let request = OpenRequest::new("echo");
        client.open(request, theirs.as_fd()).await.unwrap();
    });
    echo_once(&mut mine, b"unsandboxed but working");
    assert!(relaxed.terminate().success());
}

/// What a streamlet writes in /tmp, /var/tmp or /dev/shm is its own: the
/// host's directories never see it, even without a read-only root.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_directories_are_private() {
    if !privileged() {
        return;
    }
    let daemon = Daemon::start(&config_with("pids = 64", false));
    let mut client = daemon.client().await;
    let name = format!("streamlet-leftover-{}", daemon.pid());
    let (_s, mut conn) = open(&mut client, &[("behave", "tmp"), ("name", &name)]).await;
    let text = report(&mut conn);
    assert!(text.contains("/tmp: written"), "{text:?}");
    for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
        assert!(!std::path::Path::new(dir).join(&name).exists(), "{dir}/{name} reached the host");
    }
}
