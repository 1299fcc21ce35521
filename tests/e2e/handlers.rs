//! Real stream handlers through the daemon: `exec` runs a command per stream,
//! inside the streamlet's sandbox.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use streamlet_proto::{EndReason, Event, ExitCause, OpenRequest};

use crate::support::Daemon;

fn exec_pool(command: &str, direct: bool) -> String {
    format!(
        r#"
[daemon]
shutdown_timeout = "2s"

[pools.run]
handler = {{ kind = "exec", command = {command}, direct = {direct} }}
workers = {{ min = 1, max = 1 }}
streams_per_worker = 4
spare = false
limits = {{ pids = 16 }}
"#
    )
}

/// Opens a stream on `run`, sends `input`, closes the sending side, and
/// returns what came back and how the stream ended.
async fn run(daemon: &Daemon, labels: &[(&str, &str)], input: &[u8]) -> (Vec<u8>, EndReason, (u64, u64)) {
    let mut client = daemon.client().await;
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let labels = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let request = OpenRequest { tenant: Some("acme".into()), labels, ..OpenRequest::new("run") };
    let opened = client.open(request, theirs.as_fd()).await.unwrap();
    drop(theirs);
    mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    mine.write_all(input).unwrap();
    mine.shutdown(std::net::Shutdown::Write).unwrap();
    let mut output = Vec::new();
    mine.read_to_end(&mut output).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
    let Event::StreamEnded(ended) = event else { panic!("{event:?}") };
    assert_eq!(ended.stream, opened.stream);
    (output, ended.reason, (ended.bytes_in, ended.bytes_out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_cat_echoes_through_the_command_and_counts_the_bytes() {
    let daemon = Daemon::start(&exec_pool(r#"["/bin/cat"]"#, false));
    let input = b"through cat\n".repeat(1000);
    let (output, reason, bytes) = run(&daemon, &[], &input).await;
    assert_eq!(output, input);
    assert_eq!(reason, EndReason::Completed);
    assert_eq!(bytes, (input.len() as u64, input.len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_wc_answers_after_the_clients_end_of_input() {
    let daemon = Daemon::start(&exec_pool(r#"["/usr/bin/wc", "-c"]"#, false));
    let (output, reason, _) = run(&daemon, &[], &[7u8; 12345]).await;
    assert_eq!(String::from_utf8(output).unwrap().trim(), "12345");
    assert_eq!(reason, EndReason::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_fails_ends_its_stream_with_its_status_and_sees_its_environment() {
    let script =
        r#"["/bin/sh", "-c", "echo $STREAM_ID $STREAM_TENANT $STREAM_POOL $STREAM_LABEL_REGION_NAME; exit 3"]"#;
    let daemon = Daemon::start(&exec_pool(script, false));
    let (output, reason, _) = run(&daemon, &[("region-name", "eu")], b"").await;
    let text = String::from_utf8(output).unwrap();
    assert_eq!(text.split_whitespace().skip(1).collect::<Vec<_>>(), ["acme", "run", "eu"], "{text}");
    assert_eq!(reason, EndReason::CommandExited { cause: ExitCause::Exited { code: 3 } });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_exec_hands_the_socket_itself_to_the_command() {
    let daemon = Daemon::start(&exec_pool(r#"["/bin/cat"]"#, true));
    let (output, reason, bytes) = run(&daemon, &[], b"no copy in between\n").await;
    assert_eq!(output, b"no copy in between\n");
    assert_eq!(reason, EndReason::Completed);
    assert_eq!(bytes, (0, 0), "the streamlet never sees the bytes");
}

#[test]
fn a_bad_exec_command_is_refused_at_start_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamletd.toml");
    for (command, why) in [(r#"["cat"]"#, "absolute"), (r#"["/nonexistent/cmd"]"#, "No such file"), ("[]", "empty")] {
        std::fs::write(&path, exec_pool(command, false)).unwrap();
        let out =
            std::process::Command::new(crate::support::STREAMLETD).arg("check-config").arg(&path).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{command}: {err}");
        assert!(err.contains("pools.run.handler.command") && err.contains(why), "{command}: {err}");
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(payload);
    f.extend_from_slice(&crc32c::crc32c(payload).to_be_bytes());
    f
}

fn framed_pool(on_corrupt: &str) -> String {
    format!(
        "[daemon]\nshutdown_timeout = \"2s\"\nstats_interval = \"50ms\"\n\n[pools.framed]\nhandler = {{ kind = \"echo\" }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\nframing = \"crc32c\"\non_corrupt = \"{on_corrupt}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_frame_ends_its_stream_and_counts_as_the_pools_error() {
    let daemon = Daemon::start(&framed_pool("end"));
    let mut client = daemon.client().await;
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(OpenRequest::new("framed"), theirs.as_fd()).await.unwrap();
    mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let good = frame(b"checked");
    mine.write_all(&good).unwrap();
    let mut back = vec![0u8; good.len()];
    mine.read_exact(&mut back).unwrap();
    assert_eq!(back, good, "a valid frame comes back as a frame");
    let mut bad = frame(b"flipped");
    bad[6] ^= 0x40;
    mine.write_all(&bad).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
    let Event::StreamEnded(ended) = event else { panic!("{event:?}") };
    assert_eq!(ended.stream, opened.stream);
    assert!(matches!(ended.reason, EndReason::CorruptFrame { .. }), "{:?}", ended.reason);
    let status = client.status().await.unwrap();
    assert_eq!(status.pools[0].errors.get("corrupt_frame"), Some(&1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_on_corrupt_drop_a_corrupt_frame_is_counted_and_skipped() {
    let daemon = Daemon::start(&framed_pool("drop"));
    let mut client = daemon.client().await;
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    client.open(OpenRequest::new("framed"), theirs.as_fd()).await.unwrap();
    mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bad = frame(b"flipped");
    bad[8] ^= 0x01;
    let good = frame(b"after it");
    mine.write_all(&[bad, good.clone()].concat()).unwrap();
    let mut back = vec![0u8; good.len()];
    mine.read_exact(&mut back).unwrap();
    assert_eq!(back, good, "only the valid frame comes back");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = client.status().await.unwrap();
        if status.pools[0].errors.get("corrupt_frames_dropped") == Some(&1) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", status.pools[0].errors);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn framing_applies_to_echo_and_relay_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, exec_pool(r#"["/bin/cat"]"#, false) + "framing = \"crc32c\"\n").unwrap();
    let out = std::process::Command::new(crate::support::STREAMLETD).arg("check-config").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("pools.run.framing") && err.contains("echo and relay"), "{err}");
}

/// An upstream that answers each line in capitals, on TCP and on a Unix socket.
fn capitals_upstream(dir: &std::path::Path) -> (std::net::SocketAddr, std::path::PathBuf) {
    fn serve<S: Read + Write>(mut conn: S) {
        let mut buf = [0u8; 4096];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 || conn.write_all(&buf[..n].to_ascii_uppercase()).is_err() {
                return;
            }
        }
    }
    let tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in tcp.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
    let path = dir.join("upstream.sock");
    let unix = std::os::unix::net::UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        for conn in unix.incoming().flatten() {
            std::thread::spawn(move || serve(conn));
        }
    });
    (addr, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_joins_a_stream_to_an_upstream_the_daemon_connects_for_the_streamlet() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, path) = capitals_upstream(dir.path());
    let config = format!(
        "[daemon]\nshutdown_timeout = \"2s\"\n\n[pools.relay]\nhandler = {{ kind = \"relay\", upstream = \"tcp://{addr}\" }}\n\
         upstream_allow = [\"unix:{}\"]\nworkers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n",
        path.display()
    );
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let relay = |labels: Vec<(String, String)>| OpenRequest {
        labels: labels.into_iter().collect(),
        ..OpenRequest::new("relay")
    };
    for labels in [vec![], vec![("upstream".to_owned(), format!("unix:{}", path.display()))]] {
        let (mut mine, theirs) = UnixStream::pair().unwrap();
        let opened = client.open(relay(labels.clone()), theirs.as_fd()).await.unwrap();
        drop(theirs);
        mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        mine.write_all(b"through the upstream\n").unwrap();
        let mut back = [0u8; 21];
        mine.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"THROUGH THE UPSTREAM\n", "{labels:?}");
        mine.shutdown(std::net::Shutdown::Write).unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
        let Event::StreamEnded(ended) = event else { panic!("{event:?}") };
        assert_eq!((ended.stream, ended.reason), (opened.stream, EndReason::Completed));
        assert_eq!((ended.bytes_in, ended.bytes_out), (21, 21));
    }

    // An upstream outside the allow-list is refused, and nothing is connected.
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let refused = client.open(relay(vec![("upstream".into(), "tcp://127.0.0.1:1".into())]), theirs.as_fd()).await;
    let err = refused.unwrap_err().to_string();
    assert!(err.contains("bad_request") && err.contains("not allowed"), "{err}");
    // A Unix upstream that is gone is refused at the open.
    std::fs::remove_file(&path).unwrap();
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let gone = client.open(relay(vec![("upstream".into(), format!("unix:{}", path.display()))]), theirs.as_fd()).await;
    assert!(gone.unwrap_err().to_string().contains("upstream_unavailable"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_ingress_limit_a_streamlet_reads_no_faster_than_the_streams_max() {
    let config = exec_pool(r#"["/usr/bin/wc", "-c"]"#, false)
        + "ingress_limit = true\ndefault_rate = { min = \"1000\", max = \"1MB/s\" }\n";
    let daemon = Daemon::start(&config);
    let started = std::time::Instant::now();
    let (output, reason, bytes) = run(&daemon, &[], &vec![5u8; 2_000_000]).await;
    let took = started.elapsed();
    assert_eq!(String::from_utf8(output).unwrap().trim(), "2000000");
    assert_eq!(reason, EndReason::Completed);
    assert_eq!(bytes.0, 2_000_000);
    // 2 MB at 1 MB/s, less the bucket's 20 ms: about two seconds, not milliseconds.
    assert!(took >= Duration::from_millis(1800) && took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_does_not_inherit_the_streamlets_control_channel() {
    let script = r#"["/bin/sh", "-c", "readlink /proc/$$/fd/3 || echo none"]"#;
    let daemon = Daemon::start(&exec_pool(script, false));
    let (output, reason, _) = run(&daemon, &[], b"").await;
    let text = String::from_utf8(output).unwrap();
    assert!(!text.contains("socket"), "the command holds the control channel: {text}");
    assert_eq!(reason, EndReason::Completed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_ends_with_its_stream_and_takes_what_it_started_along() {
    // A client that leaves while the command still writes.
    let daemon = Daemon::start(&exec_pool(r#"["/usr/bin/yes", "streamlet-exec-yes"]"#, false));
    let mut client = daemon.client().await;
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(OpenRequest::new("run"), theirs.as_fd()).await.unwrap();
    drop(theirs);
    let mut some = [0u8; 1024];
    mine.read_exact(&mut some).unwrap();
    drop(mine);
    let event =
        tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.expect("the stream ends").unwrap();
    let Event::StreamEnded(ended) = event else { panic!("{event:?}") };
    assert_eq!(ended.stream, opened.stream);
    drop(daemon);

    // A command that leaves something running behind it.
    let script = r#"["/bin/sh", "-c", "/bin/sleep 1000017 & echo started"]"#;
    let daemon = Daemon::start(&exec_pool(script, false));
    let started = std::time::Instant::now();
    let (output, reason, _) = run(&daemon, &[], b"").await;
    assert_eq!((output.as_slice(), reason), (&b"started\n"[..], EndReason::Completed));
    assert!(started.elapsed() < Duration::from_secs(5), "the background child held the stream open");
    let sleeping = std::process::Command::new("pgrep").args(["-f", "sleep 1000017"]).output().unwrap();
    assert!(sleeping.stdout.is_empty(), "left behind: {}", String::from_utf8_lossy(&sleeping.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_framed_relay_checks_frames_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    // The upstream capitalises: frames of digits come through intact, frames
    // with letters come back with a payload their CRC no longer matches.
    let (addr, _) = capitals_upstream(dir.path());
    let config = format!(
        "[daemon]\nshutdown_timeout = \"2s\"\n\n[pools.relay]\nhandler = {{ kind = \"relay\", upstream = \"tcp://{addr}\" }}\n\
         framing = \"crc32c\"\nworkers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n"
    );
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(OpenRequest::new("relay"), theirs.as_fd()).await.unwrap();
    drop(theirs);
    mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let digits = frame(b"0123456789");
    mine.write_all(&digits).unwrap();
    let mut back = vec![0u8; digits.len()];
    mine.read_exact(&mut back).unwrap();
    assert_eq!(back, digits, "a frame the upstream leaves alone comes back whole");
    mine.write_all(&frame(b"letters")).unwrap();
    let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
    let Event::StreamEnded(ended) = event else { panic!("{event:?}") };
    assert_eq!(ended.stream, opened.stream);
    assert!(
        matches!(ended.reason, EndReason::CorruptFrame { .. }),
        "the upstream's corruption is caught: {:?}",
        ended.reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_client_is_relayed_socket_to_socket_and_still_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, _) = capitals_upstream(dir.path());
    let config = format!(
        "[daemon]\nshutdown_timeout = \"2s\"\n\n[pools.relay]\nhandler = {{ kind = \"relay\", upstream = \"tcp://{addr}\" }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\n"
    );
    let daemon = Daemon::start(&config);
    let mut client = daemon.client().await;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut mine = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (theirs, _) = listener.accept().unwrap();
    let opened = client.open(OpenRequest::new("relay"), theirs.as_fd()).await.unwrap();
    drop(theirs);
    mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let input = b"spliced through\n".repeat(20_000);
    let writer = {
        let mut w = mine.try_clone().unwrap();
        let input = input.clone();
        std::thread::spawn(move || {
            w.write_all(&input).unwrap();
            w.shutdown(std::net::Shutdown::Write).unwrap();
        })
    };
    let mut output = Vec::new();
    mine.read_to_end(&mut output).unwrap();
    writer.join().unwrap();
    assert_eq!(output, input.to_ascii_uppercase());
    let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
    let Event::StreamEnded(ended) = event else { panic!("{event:?}") };
    assert_eq!((ended.stream, ended.reason), (opened.stream, EndReason::Completed));
    assert_eq!((ended.bytes_in, ended.bytes_out), (input.len() as u64, input.len() as u64));
}

/// A `direct` command that escapes its process group (`setsid`) and keeps
/// serving its stream after it reported the end serves nothing: the daemon
/// shuts the connection down when the stream ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_that_escapes_with_setsid_serves_nothing_after_its_stream_ends() {
    let script = r#"["/bin/sh", "-c", "/usr/bin/setsid -f /bin/cat; exit 0"]"#;
    let daemon = Daemon::start(&exec_pool(script, true));
    let mut client = daemon.client().await;
    let (mut mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(OpenRequest::new("run"), theirs.as_fd()).await.unwrap();
    drop(theirs);
    let event =
        tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.expect("the stream ends").unwrap();
    let Event::StreamEnded(ended) = event else { panic!("{event:?}") };
    assert_eq!(ended.stream, opened.stream);
    mine.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = mine.write_all(b"ping");
    let mut got = [0u8; 4];
    match mine.read(&mut got) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the escaped command still serves the stream: {other:?} {got:?}"),
    }
}
