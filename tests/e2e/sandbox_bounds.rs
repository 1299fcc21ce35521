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
