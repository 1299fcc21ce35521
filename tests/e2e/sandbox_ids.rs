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
