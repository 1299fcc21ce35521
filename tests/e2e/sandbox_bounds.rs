//! Bounds of the sandbox on what the host shares with every process: socket
//! families the network namespace does not cover, the host's ptys, and the
//! devices in `/dev`.

use crate::sandbox::{config, open, report};
use crate::support::{privileged, Daemon};

/// Binds an `AF_VSOCK` stream socket to `port` on any CID, in this process:
/// `Ok` with the socket (closed on drop), or the errno.
fn host_vsock_bind(port: u32) -> Result<std::os::fd::OwnedFd, i32> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    // SAFETY: socket(2) just returned this descriptor to us alone.
    let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_vm is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = libc::VMADDR_CID_ANY;
    addr.svm_port = port;
    // SAFETY: bind(2) of our socket to an address that lives across the call.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
    }
    Ok(socket)
}

/// `AF_VSOCK` is not network-namespaced: under `network = "none"` a
/// streamlet cannot make such a socket at all, so it cannot take a port of
/// the host's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_network_a_streamlet_cannot_take_a_vsock_port_of_the_hosts() {
    if !privileged() {
        return;
    }
    let port = 20_000 + std::process::id() % 40_000;
    // The host's own vsock works here: what follows proves the sandbox.
    drop(host_vsock_bind(port + 1).expect("AF_VSOCK works on this host"));
    let daemon = Daemon::start(&config("pids = 64"));
    let mut client = daemon.client().await;
    let (_s, mut conn) = open(&mut client, &[("behave", "vsock"), ("port", &port.to_string())]).await;
    // The streamlet holds whatever it got while the stream is open.
    assert_eq!(report(&mut conn), "vsock socket: EAFNOSUPPORT\n");
    assert!(host_vsock_bind(port).is_ok(), "the host can still bind vsock port {port}");
}

/// The host's `/dev/ptmx` hands out ptys from one pool of
/// `kernel.pty.max` for the whole host: a streamlet has a `/dev` of its own
/// without it (with a read-only root as without), so it cannot take one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamlet_has_a_dev_of_its_own_without_the_hosts_ptys() {
    if !privileged() {
        return;
    }
    for readonly_root in [true, false] {
        let daemon = Daemon::start(&crate::sandbox::config_with("pids = 64", readonly_root));
        let mut client = daemon.client().await;
        let (_s, mut conn) = open(&mut client, &[("behave", "ptmx"), ("count", "64")]).await;
        assert_eq!(report(&mut conn), "ptmx: opened 0: ENOENT\n", "readonly_root = {readonly_root}");
        let (_s, mut conn) = open(&mut client, &[("behave", "dev")]).await;
        assert_eq!(
            report(&mut conn),
            "dev: fd full null random shm stderr stdin stdout tty urandom zero\n",
            "readonly_root = {readonly_root}"
        );
    }
}

/// A command under /tmp exists on the host but not in the streamlet, whose
/// /tmp is its own: `check-config` says so instead of every stream failing.
#[test]
fn an_exec_command_the_sandbox_hides_fails_check_config_with_the_reason() {
    let dir = tempfile::tempdir_in("/tmp").unwrap();
    let command = dir.path().join("command");
    std::fs::write(&command, "#!/bin/sh\nexec cat\n").unwrap();
    std::fs::set_permissions(&command, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = dir.path().join("streamletd.toml");
    std::fs::write(
        &config,
        format!(
            "[pools.run]\nhandler = {{ kind = \"exec\", command = [\"{}\"] }}\nworkers = {{ min = 1, max = 1 }}\nstreams_per_worker = 1\n",
            command.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::STREAMLETD).arg("check-config").arg(&config).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("pools.run.handler.command") && err.contains("is under /tmp"), "{err}");
}
