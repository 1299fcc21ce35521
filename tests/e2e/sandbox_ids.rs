//! Who a streamlet runs as: never anyone who can reach the control socket,
//! and never a uid that another streamlet left files behind for.

use crate::sandbox::{open, report};
use crate::support::{hostile_worker, privileged, Daemon, STREAMLETD};

/// `check-config` on `config`: its exit code and stderr.
fn check_config(config: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(STREAMLETD).arg("check-config").arg(&path).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

const POOL: &str =
    "[pools.edge]\nhandler = { kind = \"echo\" }\nworkers = { min = 1, max = 1 }\nstreams_per_worker = 4\n";

/// A pool whose group is the control socket's would make every streamlet a
/// client of the daemon (a gateway by default, able to close other tenants'
/// streams): refused before anything starts, for its group or its user.
#[test]
fn a_pool_that_could_reach_the_control_socket_is_refused() {
    let access = "[access]\nsocket_group = \"nogroup\"\ndefault = \"gateway\"\n\n";
    let (code, err) = check_config(&format!("{access}{POOL}user = \"nobody\"\ngroup = \"nogroup\"\n"));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("pools.edge.group") && err.contains("control socket's group"), "{err}");
    // nobody is a member of nogroup (its own group) whatever the pool's group.
    let (code, err) = check_config(&format!("{access}{POOL}user = \"nobody\"\ngroup = \"daemon\"\n"));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("pools.edge.user") && err.contains("member"), "{err}");
    // The daemon refuses to start on it too, before it binds its socket.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, format!("{access}{POOL}user = \"nobody\"\ngroup = \"nogroup\"\n")).unwrap();
    let socket = dir.path().join("d.sock");
    let out = std::process::Command::new(STREAMLETD)
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(&socket)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!socket.exists());
    // Another group is fine.
    let (code, err) = check_config(&format!("{access}{POOL}user = \"daemon\"\ngroup = \"daemon\"\n"));
    assert_eq!(code, Some(0), "{err}");
}

/// The root is read-only unless the pool says otherwise, so a streamlet
/// leaves no file on the host for the next holder of its uid (it made a
/// 0600 file in /run/lock, which a later streamlet of the same uid read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn by_default_a_streamlet_leaves_no_file_for_its_uids_next_holder() {
    if !privileged() {
        return;
    }
    let config = format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"2s\"\n\n[sandbox]\nrequired = true\n\n{POOL}spare = false\n",
        hostile_worker().display()
    );
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let path = format!("/run/lock/streamlet-left-{}", daemon.pid());
    let (_s, mut conn) = open(&mut client, &[("behave", "create"), ("path", &path)]).await;
    let text = report(&mut conn);
    let left = std::path::Path::new(&path).exists();
    if left {
        std::fs::remove_file(&path).unwrap();
    }
    assert_eq!(text, format!("create {path}: EROFS\n"));
    assert!(!left, "{path} was left on the host");
    // And a writable root is refused for uids that are handed out again.
    let (code, err) = check_config(&format!("{POOL}readonly_root = false\n"));
    assert_eq!(code, Some(64), "{err}");
    assert!(err.contains("pools.edge.readonly_root") && err.contains("needs a `user`"), "{err}");
}

/// The uid of a daemon's first streamlet, from its /proc status.
async fn streamlet_uid(daemon: &Daemon) -> u32 {
    let pid = daemon.client().await.workers(None).await.unwrap()[0].pid;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:\t")).unwrap();
    uid.split_whitespace().next().unwrap().parse().unwrap()
}

/// Two daemons with default configs used to hand out the same uids (61184
/// and up), so their streamlets could signal each other: each now leases a
/// slice of its own, and a range given twice is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_never_hand_out_the_same_uid() {
    if !privileged() {
        return;
    }
    let config = format!("[daemon]\nshutdown_timeout = \"2s\"\n\n[sandbox]\nrequired = true\n\n{POOL}spare = false\n");
    let (a, b) = (Daemon::start(&config), Daemon::start(&config));
    let (ua, ub) = (streamlet_uid(&a).await, streamlet_uid(&b).await);
    let slice = |uid: u32| (uid - 61184) / 512;
    assert_ne!(slice(ua), slice(ub), "uids {ua} and {ub} from one slice");
    let leases: Vec<String> = std::fs::read_dir(streamlet_sandbox::uids::REGISTRY)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    for uid in [ua, ub] {
        let first = 61184 + slice(uid) * 512;
        assert!(leases.contains(&format!("{first}-{}", first + 511)), "{uid}: {leases:?}");
    }
    // A range given explicitly that another live daemon holds: refused.
    let taken = format!("[sandbox]\nrequired = true\nuids = \"{ua}-{}\"\n\n{POOL}", ua + 9);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("streamletd.toml"), taken).unwrap();
    let out = std::process::Command::new(STREAMLETD)
        .arg("--config")
        .arg(dir.path().join("streamletd.toml"))
        .arg("--socket")
        .arg(dir.path().join("c.sock"))
        .env("STATE_DIRECTORY", dir.path().join("state"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("overlap") && err.contains("[sandbox] uids"), "{err}");
}

/// Under socket activation the socket's group comes from the unit
/// (`SocketGroup=`), not the config: the daemon checks its pools against the
/// socket as it finds it, and refuses to serve if a pool could reach it.
#[test]
fn a_pool_that_could_reach_a_socket_systemd_made_is_refused_at_start() {
    if !privileged() {
        return;
    }
    let activate = std::path::Path::new("/usr/bin/systemd-socket-activate");
    if !activate.exists() {
        assert!(
            std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_none_or(|v| v != "1"),
            "systemd-socket-activate is missing: install systemd"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamletd.toml");
    // nobody's own group is nogroup, which the socket will have.
    std::fs::write(&config, format!("[sandbox]\nrequired = true\n\n{POOL}user = \"nobody\"\ngroup = \"daemon\"\n"))
        .unwrap();
    let passed = dir.path().join("activated.sock");
    let mut child = std::process::Command::new(activate)
        .arg("--listen")
        .arg(&passed)
        .arg("-E")
        .arg(format!("STATE_DIRECTORY={}", dir.path().join("state").display()))
        .arg(STREAMLETD)
        .arg("--config")
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !passed.exists() {
        assert!(std::time::Instant::now() < deadline, "systemd-socket-activate did not listen");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let c = std::ffi::CString::new(passed.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: chown(2) of the socket this test had made, by a NUL-terminated path.
    assert_eq!(unsafe { libc::chown(c.as_ptr(), u32::MAX, 65534) }, 0);
    // The first connection starts the daemon.
    let _conn = std::os::unix::net::UnixStream::connect(&passed).unwrap();
    let status = crate::support::wait_timeout(&mut child, std::time::Duration::from_secs(10));
    if status.is_none() {
        // SAFETY: kill(2) of our own child, not yet reaped.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = crate::support::wait_timeout(&mut child, std::time::Duration::from_secs(10));
    }
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let status = status.unwrap_or_else(|| panic!("the daemon serves on a socket its pool could reach: {err}"));
    assert!(!status.success(), "{err}");
    assert!(err.contains("pool \"edge\" could reach the control socket") && err.contains("member"), "{err}");
}
