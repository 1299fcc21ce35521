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

/// Reports each stream ended as soon as it is assigned, then goes on
/// serving it (echo) from a thread of its own: streams the daemon no longer
/// counts.
const ENDS_AND_KEEPS_SERVING: &str = r#"
import threading, time
def heartbeats():
    while True:
        s.send(b'\x03')
        time.sleep(0.2)
def serve(conn):
    while True:
        try:
            data = conn.recv(4096)
            if not data:
                return
            conn.sendall(data)
        except OSError:
            return
s.send(READY)
threading.Thread(target=heartbeats, daemon=True).start()
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(4))
    if not msg:
        break
    if msg[0] != 1 or not anc:
        continue
    fd = array.array('i', anc[0][2][:4])[0]
    stream, shift, i = 0, 0, 1
    while True:
        b = msg[i]
        stream |= (b & 0x7f) << shift
        i += 1
        shift += 7
        if not b & 0x80:
            break
    s.send(b'\x01' + varint(stream) + b'\x00' + varint(0) + varint(0))
    threading.Thread(target=serve, args=(socket.socket(fileno=fd),), daemon=True).start()
"#;

/// A streamlet that says a stream ended and keeps serving it serves nothing:
/// the daemon shuts its copy of the connection down at every end, so six
/// streams on a pool of four slots are never served at once behind its back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ended_is_served_no_more_whatever_the_streamlet_does() {
    use std::io::{Read, Write};
    use std::os::fd::AsFd;

    let daemon = daemon_with(ENDS_AND_KEEPS_SERVING);
    daemon.wait_until(|s| s.pools[0].ready == 1);
    let mut client = daemon.client().await;
    let mut ends = Vec::new();
    for _ in 0..6 {
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        client.open(streamlet_proto::OpenRequest::new("bad"), theirs.as_fd()).await.unwrap();
        drop(theirs);
        daemon.wait_until(|s| s.pools[0].streams == 0);
        ends.push(mine);
    }
    assert!(client.streams(None).await.unwrap().is_empty(), "the daemon counts none of them");
    for mut end in ends {
        end.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = end.write_all(b"ping");
        let mut got = [0u8; 4];
        match end.read(&mut got) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("a stream the daemon ended was still served: {other:?} {got:?}"),
        }
    }
}

/// Says whatever it likes about its streams: counters at their largest, then
/// small, then largest again (a delta that would wrap a sum), and, once the
/// client sends a byte, an end with a 60 KiB reason.
const TALL_TALES: &str = r#"
import threading, time
MAX = (1 << 64) - 1
def heartbeats():
    while True:
        s.send(b'\x03')
        time.sleep(0.2)
def stats(stream, corrupt):
    one = varint(stream) + varint(MAX) + varint(MAX) + varint(MAX) + varint(corrupt)
    s.send(b'\x02' + varint(1) + one)
def serve(conn, stream):
    for corrupt in [5, MAX, 1, MAX, 1, MAX]:
        stats(stream, corrupt)
    conn.recv(1)
    message = b'\x1b[2J' + b'x' * 60000
    s.send(b'\x01' + varint(stream) + b'\x03' + varint(len(message)) + message + varint(MAX) + varint(MAX))
s.send(READY)
threading.Thread(target=heartbeats, daemon=True).start()
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(4))
    if not msg:
        break
    if msg[0] != 1 or not anc:
        continue
    fd = array.array('i', anc[0][2][:4])[0]
    stream, shift, i = 0, 0, 1
    while True:
        b = msg[i]
        stream |= (b & 0x7f) << shift
        i += 1
        shift += 7
        if not b & 0x80:
            break
    threading.Thread(target=serve, args=(socket.socket(fileno=fd), stream), daemon=True).start()
"#;

/// What a streamlet says is bounded before it is counted, stored or sent on:
/// counters saturate instead of wrapping, a reason is cut to
/// `MAX_REASON_LEN`, and the event log still fits in a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamlets_tall_tales_are_bounded() {
    use std::io::Write;
    use std::os::fd::AsFd;

    let daemon = daemon_with(TALL_TALES);
    daemon.wait_until(|s| s.pools[0].ready == 1);
    let mut client = daemon.client().await;
    let (mut mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let opened = client.open(streamlet_proto::OpenRequest::new("bad"), theirs.as_fd()).await.unwrap();
    drop(theirs);
    let status = daemon.wait_until(|s| s.pools[0].errors.get("corrupt_frames_dropped").is_some_and(|n| *n > 5));
    assert_eq!(status.pools[0].errors["corrupt_frames_dropped"], u64::MAX, "saturated, not wrapped");
    let streams = client.streams(None).await.unwrap();
    assert_eq!((streams[0].bytes_in, streams[0].bytes_out), (u64::MAX, u64::MAX));
    mine.write_all(b"!").unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
    let streamlet_proto::Event::StreamEnded(ended) = event else { panic!("{event:?}") };
    assert_eq!(ended.stream, opened.stream);
    let streamlet_proto::EndReason::HandlerError { message } = &ended.reason else { panic!("{:?}", ended.reason) };
    assert!(message.len() <= streamlet_proto::MAX_REASON_LEN, "{}", message.len());
    assert_eq!((ended.bytes_in, ended.bytes_out), (u64::MAX, u64::MAX));
    let log = client.events(None, false).await.expect("the event log fits in a reply");
    assert!(log
        .events
        .iter()
        .any(|e| matches!(&e.event, streamlet_proto::Event::StreamEnded(x) if x.stream == opened.stream)));
    assert_eq!(daemon.client().await.workers(None).await.unwrap()[0].restarts, 0, "the streamlet is not blamed");
}
