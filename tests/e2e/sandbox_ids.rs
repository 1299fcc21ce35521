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
