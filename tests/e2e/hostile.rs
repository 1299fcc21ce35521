//! Streamlets that break the protocol: the daemon kills them as
//! `protocol_error`, replaces them, and serves on. The streamlet binary here is
//! a small Python program speaking the channel's postcard by hand.

use std::time::Duration;

use streamlet_proto::ExitCause;

use crate::support::Daemon;

/// The common part: read the Init (fd 3, SOCK_SEQPACKET), then `behave`.
const PRELUDE: &str = r#"#!/usr/bin/python3
import os, socket, array
s = socket.socket(fileno=3)
s.recv(65536)
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7f
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)
READY = b"\x00" + varint(os.getpid())
"#;

fn daemon_with(behaviour: &str) -> Daemon {
    // Not under /tmp: streamlets have private temporary directories, and a
    // script is exec'd by its path, after the streamlet's mounts are made.
    let dir = tempfile::Builder::new().prefix("streamlet-e2e-").tempdir_in("/run").unwrap();
    // Streamlets run as uids of their own: they must be able to read the script.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = dir.path().join("hostile-worker");
    std::fs::write(&script, format!("{PRELUDE}{behaviour}")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"1s\"\n\n[pools.bad]\nhandler = {{ kind = \"echo\" }}\nworkers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n",
        script.display()
    );
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, config).unwrap();
    let socket = dir.path().join("d.sock");
    let mut cmd = std::process::Command::new(crate::support::STREAMLETD);
    cmd.arg("--config").arg(&path).arg("--socket").arg(&socket);
    Daemon::spawn_unready(cmd, dir, socket)
}

/// Waits until the slot's last exit is a protocol error mentioning `what`.
async fn killed_for(daemon: &Daemon, what: &str) {
    let mut client = daemon.client().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let workers = client.workers(None).await.unwrap();
        if let Some(ExitCause::ProtocolError { message }) = workers.iter().find_map(|w| w.last_exit.clone()) {
            assert!(message.contains(what), "{message}");
            assert!(workers[0].restarts >= 1);
            return;
        }
        assert!(std::time::Instant::now() < deadline, "not killed for {what}: {workers:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_channel_is_a_protocol_error() {
    let daemon = daemon_with("s.send(b'\\xff\\xff\\xff\\xff')\nimport time; time.sleep(30)\n");
    killed_for(&daemon, "undecodable").await;
    assert!(daemon.client().await.status().await.is_ok(), "the daemon serves on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_descriptor_from_a_streamlet_is_a_protocol_error() {
    let daemon = daemon_with(
        "s.send(READY)\nr, w = os.pipe()\ns.sendmsg([READY], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array('i', [r]))])\nimport time; time.sleep(30)\n",
    );
    killed_for(&daemon, "descriptor").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_message_is_a_protocol_error() {
    let daemon = daemon_with("s.send(READY)\ns.send(b'\\x02' + b'\\x00' * 100000)\nimport time; time.sleep(30)\n");
    killed_for(&daemon, "MSG_TRUNC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_streamlet_that_closed_its_channel_is_killed() {
    let daemon = daemon_with("s.send(READY)\ns.close()\nimport time; time.sleep(30)\n");
    killed_for(&daemon, "closed its control channel").await;
}

/// Lies about streams it does not serve are ignored: it stays in service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_for_a_stream_it_does_not_serve_is_ignored() {
    // Ended { stream: 999, reason: Completed, bytes_in: 1, bytes_out: 1 }
    let daemon = daemon_with(
        "s.send(READY)\ns.send(b'\\x01' + varint(999) + b'\\x00\\x01\\x01')\nimport time; time.sleep(30)\n",
    );
    daemon.wait_until(|s| s.pools[0].ready == 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let workers = daemon.client().await.workers(None).await.unwrap();
    assert_eq!(workers.len(), 1);
    assert_eq!(workers[0].restarts, 0, "{workers:?}");
    assert_eq!(workers[0].state, streamlet_proto::WorkerState::Ready);
}

/// A streamlet that ignores SIGHUP and never reads its channel can only be
/// ended, when the daemon dies, by PR_SET_PDEATHSIG (which a change of user
/// would clear if it were set before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_death_signal_survives_the_change_of_user() {
    let mut daemon = daemon_with(
        "import signal\nsignal.signal(signal.SIGHUP, signal.SIG_IGN)\ns.send(READY)\nimport time; time.sleep(60)\n",
    );
    daemon.wait_until(|s| s.pools[0].ready == 1);
    let pid = daemon.client().await.workers(None).await.unwrap()[0].pid;
    crate::support::signal(daemon.pid(), libc::SIGKILL);
    assert!(crate::support::wait_gone(pid), "streamlet {pid} outlived its daemon");
    // The next daemon on the socket clears the cgroups the killed one left.
    daemon.restart();
}
