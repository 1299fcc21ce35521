//! Roles from the peer's credentials: real clients running as other uids.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Output, Stdio};

use crate::support::{privileged, Daemon, STREAMLETCTL, TWO_BY_64};

/// `nobody` and its group, on every Debian-like host.
const NOBODY: u32 = 65534;
/// A uid no account has, in nobody's group: it reaches the socket through
/// the group, and no role names it.
const STRANGER: u32 = 65533;

fn ctl(daemon: &Daemon, uid: u32, args: &[&str]) -> Output {
    Command::new(STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .uid(uid)
        .gid(NOBODY)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn roles_come_from_peer_credentials_and_refusals_say_unauthorized() {
    if !privileged() {
        return;
    }
    let config = format!(
        "{TWO_BY_64}\n[access]\nsocket_group = {NOBODY}\ndefault = \"none\"\nviewer = {{ uids = [{NOBODY}] }}\n"
    );
    let daemon = Daemon::start(&config);
    // Let other uids walk to the socket; the socket itself decides.
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let meta = std::fs::metadata(&daemon.socket).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o660, "owner and group only");
    assert_eq!((meta.uid(), meta.gid()), (0, NOBODY), "the configured group");

    // A viewer reads.
    let out = ctl(&daemon, NOBODY, &["status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo"));
    // And is refused what gateways and admins do.
    for args in [&["drain", "1"][..], &["kill", "1"], &["restart", "echo"], &["open", "--pool", "echo"]] {
        let out = ctl(&daemon, NOBODY, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was allowed");
        assert!(stderr.contains("unauthorized") && stderr.contains("viewer role"), "{args:?}: {stderr}");
    }
    // A uid no role names gets the default: nothing.
    let out = ctl(&daemon, STRANGER, &["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("unauthorized") && stderr.contains("none role"), "{stderr}");
    // Root is admin: the refused drain was refused for its role, not its target.
    let workers =
        Command::new(STREAMLETCTL).arg("--socket").arg(&daemon.socket).args(["--json", "workers"]).output().unwrap();
    let workers: serde_json::Value = serde_json::from_slice(&workers.stdout).unwrap();
    let id = workers[0]["id"].as_u64().unwrap().to_string();
    let out = Command::new(STREAMLETCTL).arg("--socket").arg(&daemon.socket).args(["drain", &id]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn without_the_socket_group_another_uid_cannot_connect_at_all() {
    if !privileged() {
        return;
    }
    let daemon = Daemon::start(TWO_BY_64);
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = ctl(&daemon, NOBODY, &["status"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.to_lowercase().contains("permission denied"), "{stderr}");
    assert!(stderr.contains("mode 660, root:root"), "says why: {stderr}");
    // Joining gid 0 would give far more than this socket: the way in is a
    // group of the daemon's configuration.
    assert!(!stderr.contains("usermod"), "never advises joining root's group: {stderr}");
    assert!(stderr.contains("[access] socket_group"), "says what to do: {stderr}");
}

#[test]
fn outside_a_normal_socket_group_the_hint_is_to_join_it() {
    if !privileged() {
        return;
    }
    let config = format!("{TWO_BY_64}\n[access]\nsocket_group = {NOBODY}\n");
    let daemon = Daemon::start(&config);
    std::fs::set_permissions(daemon.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // A uid and a primary group of their own, outside nobody's group.
    let out = Command::new(STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("status")
        .uid(STRANGER)
        .gid(STRANGER)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    let group = group_name(NOBODY);
    assert!(stderr.contains(&format!("usermod -aG {group} $USER")), "names the socket's group: {stderr}");
    assert!(!stderr.contains("socket_group"), "{stderr}");
}

/// The name /etc/group gives `gid`, else the number.
fn group_name(gid: u32) -> String {
    let groups = std::fs::read_to_string("/etc/group").unwrap_or_default();
    let name = groups.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2) == Some(&gid.to_string().as_str())).then(|| fields[0].to_owned())
    });
    name.unwrap_or_else(|| gid.to_string())
}
