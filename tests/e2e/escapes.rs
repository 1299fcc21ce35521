//! Terminal escapes never reach the operator. A gateway (the test, and
//! `streamlet-gateway`) opens streams with a hostile tenant, a hostile streamlet (a small Python program speaking the
//! channel by hand) writes hostile bytes to its stderr and ends streams with a
//! hostile reason, and the pool's labels are hostile too; then no output of
//! `streamletctl` (tables and `--json`) and no line of the daemon's log holds a
//! raw control character but its own `\n`, and each hostile text shows,
//! escaped, where it belongs.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use streamlet_proto::{EndReason, Event, OpenRequest};

use crate::support::{Daemon, GATEWAY, STREAMLETCTL, STREAMLETD};

/// ESC [ 2 J clears the screen, BEL rings, CR returns to the line's start,
/// U+009B is CSI on its own, and a LF would start a line that is not one.
const TENANT: &str = "t\x1b[2J\x07\r\u{9b}31m\n12:00:00.000  forged";
const TENANT_SHOWN: &str = r"t\x1b[2J\x07\r\u{9b}31m\n12:00:00.000  forged";
/// The reason the streamlet gives: an OSC that retitles the window, and more.
const REASON: &str = "bye\x1b]0;owned\x07\r\n\u{9b}2J\x7f";
const REASON_SHOWN: &str = r"bye\x1b]0;owned\x07\r\n\u{9b}2J\x7f";
/// Labels of the pool's streamlets, from the configuration (TOML escapes).
const LABEL_TOML: &str = r#"z\u001b[2J\u0007\r\u009b"#;
const LABEL_SHOWN: &str = r"zone=z\x1b[2J\x07\r\u{9b}";
/// The streamlet's stderr line, as the log shows it: CR, ESC, BEL, a C1 CSI
/// in UTF-8, a raw 8-bit CSI and a byte that is not UTF-8.
const STDERR_SHOWN: &str = r"streamlet: hostile \x1b[2J\x07\r\u{9b}31m\x9b\xff\r2024-01-01T00:00:00Z  WARN forged";

/// Init, then Ready, heartbeats, and for each stream: wait for a byte (or
/// end of file), then end it with `REASON` as a handler error.
const STREAMLET: &str = r#"#!/usr/bin/python3
import os, socket, array, threading, time
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
def read_varint(b, i):
    n, shift = 0, 0
    while True:
        n |= (b[i] & 0x7f) << shift
        shift += 7
        i += 1
        if b[i - 1] < 0x80:
            return n
os.write(2, b"hostile \x1b[2J\x07\r\xc2\x9b31m\x9b\xff\r2024-01-01T00:00:00Z  WARN forged\n")
REASON = "bye\x1b]0;owned\x07\r\n\u009b2J\x7f".encode()
def serve(stream, fd):
    conn = socket.socket(fileno=fd)
    got = conn.recv(64)
    # Ended { stream, HandlerError { message }, bytes_in, bytes_out }
    s.send(b"\x01" + varint(stream) + b"\x03" + varint(len(REASON)) + REASON + varint(len(got)) + b"\x00")
    conn.close()
def heartbeat():
    while True:
        time.sleep(0.2)
        s.send(b"\x03")
s.send(b"\x00" + varint(os.getpid()))
threading.Thread(target=heartbeat, daemon=True).start()
while True:
    msg, anc, flags, addr = s.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
    if not msg:
        os._exit(0)
    fds = array.array("i")
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
    if msg[0] == 1 and fds:
        threading.Thread(target=serve, args=(read_varint(msg, 1), fds[0]), daemon=True).start()
"#;

/// A daemon on the hostile streamlet, its stderr (with the supervisor's
/// debug records, which carry the reasons, in `format`) going to the file
/// returned.
fn hostile_daemon(format: &str) -> (Daemon, PathBuf) {
    // Not under /tmp when root: streamlets have private temporary directories.
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let dir = if root {
        tempfile::Builder::new().prefix("streamlet-e2e-").tempdir_in("/run").unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    // Streamlets run as uids of their own: they must be able to read the script.
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let script = dir.path().join("hostile-streamlet");
    std::fs::write(&script, STREAMLET).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!(
        "[daemon]\nworker_binary = \"{}\"\nshutdown_timeout = \"1s\"\n\n[pools.bad]\nhandler = {{ kind = \"echo\" }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 8\nspare = false\nlabels = {{ zone = \"{LABEL_TOML}\" }}\n",
        script.display()
    );
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, config).unwrap();
    let socket = dir.path().join("d.sock");
    let log = dir.path().join("streamletd.log");
    // The fixture lets the daemon inherit the test's stderr; a shell that
    // execs it (same pid) sends it to the file instead.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"export STREAMLET_LOG="info,streamlet_supervisor=debug"; exec "$0" "$@" 2>"$LOG_FILE""#)
        .arg(STREAMLETD)
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(&socket)
        .args(["--log-format", format])
        .env("LOG_FILE", &log)
        .env_remove("JOURNAL_STREAM");
    (Daemon::spawn(cmd, dir, socket), log)
}

/// `streamletctl ARGS` with `stdin`, killed if it runs past 30 s (exit 137).
fn streamletctl(daemon: &Daemon, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .args(["--signal=KILL", "30", STREAMLETCTL])
        .arg("--socket")
        .arg(&daemon.socket)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `bytes` are UTF-8 with no control character but `\n`; the text.
fn clean(what: &str, bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).unwrap_or_else(|e| panic!("{what}: not UTF-8 ({e}): {bytes:?}"));
    let raw: Vec<char> = text.chars().filter(|&c| c.is_control() && c != '\n').collect();
    // Shown with Rust's escapes, so that a failure does not drive this terminal either.
    assert!(raw.is_empty(), "{what}: raw control characters {raw:?} in:\n{}", text.escape_debug());
    text.to_owned()
}

/// The stdout and stderr of a command that succeeds, both clean.
fn run_clean(daemon: &Daemon, args: &[&str], stdin: &[u8]) -> (String, String) {
    let out = streamletctl(daemon, args, stdin);
    let what = format!("streamletctl {}", args.join(" ").escape_debug());
    let stdout = clean(&format!("{what} (stdout)"), &out.stdout);
    let stderr = clean(&format!("{what} (stderr)"), &out.stderr);
    assert!(out.status.success(), "{what}: {}\n{stderr}", out.status);
    (stdout, stderr)
}

fn json(what: &str, text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {}", text.escape_debug()))
}

/// Opens a stream for `TENANT` as a gateway does; the client's end.
async fn open(gateway: &mut streamlet_client::Client) -> (UnixStream, streamlet_proto::Opened) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let request = OpenRequest { tenant: Some(TENANT.into()), ..OpenRequest::new("bad") };
    let opened = gateway.open(request, theirs.as_fd()).await.unwrap();
    (ours, opened)
}

async fn nothing_hostile_reaches_the_operator(format: &str) {
    let (mut daemon, log) = hostile_daemon(format);
    let mut gateway = daemon.client().await;
    // One stream stays open (for `streams` and `quota`); the other ends with
    // the streamlet's reason once it reads a byte.
    let (_held, _) = open(&mut gateway).await;
    let (mut ending, opened) = open(&mut gateway).await;
    ending.write_all(b"x").unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), gateway.next_event()).await;
        match event.expect("the stream ended within 10 s").unwrap() {
            Event::StreamEnded(ended) if ended.stream == opened.stream => {
                assert_eq!(ended.reason, EndReason::HandlerError { message: REASON.into() });
                break;
            }
            _ => continue,
        }
    }
    let worker = opened.worker.0.to_string();
    the_gateways_log_is_clean(&daemon);

    // `open` says why its stream ended, on stderr.
    let (stdout, stderr) = run_clean(&daemon, &["open", "--pool", "bad", "--tenant", TENANT], b"x");
    assert_eq!(stdout, "");
    assert!(stderr.contains(&format!("ended: handler_error ({REASON_SHOWN})")), "{stderr}");
    let (_, stderr) = run_clean(&daemon, &["--json", "open", "--pool", "bad", "--tenant", TENANT], b"x");
    let announced = stderr.lines().next().unwrap_or_default();
    assert_eq!(json("open --json", announced)["pool"], "bad", "{stderr}");

    let (events, _) = run_clean(&daemon, &["events", "--recent", "100"], b"");
    assert!(events.contains(&format!("tenant={TENANT_SHOWN}")), "{events}");
    assert!(events.contains(&format!("reason=handler_error ({REASON_SHOWN})")), "{events}");
    let (events, _) = run_clean(&daemon, &["--json", "events", "--recent", "100"], b"");
    let events: Vec<serde_json::Value> = events.lines().map(|l| json("events --json", l)).collect();
    assert!(events.iter().any(|e| e["event"]["stream_opened"]["tenant"] == TENANT), "{events:?}");
    assert!(events.iter().any(|e| e["event"]["stream_ended"]["reason"]["handler_error"]["message"] == REASON));

    let (streams, _) = run_clean(&daemon, &["streams"], b"");
    assert_eq!(streams.lines().count(), 2, "a title and one stream:\n{streams}");
    assert!(streams.contains(TENANT_SHOWN), "{streams}");
    let (streams, _) = run_clean(&daemon, &["--json", "streams"], b"");
    assert_eq!(json("streams --json", &streams)[0]["tenant"], TENANT);

    let (quota, _) = run_clean(&daemon, &["quota"], b"");
    assert!(quota.lines().any(|l| l.starts_with("tenant") && l.contains(TENANT_SHOWN)), "{quota}");
    let (quota, _) = run_clean(&daemon, &["--json", "quota"], b"");
    assert!(json("quota --json", &quota).as_array().unwrap().iter().any(|l| l["name"] == TENANT));

    for args in [&["workers"][..], &["worker", &worker]] {
        let (text, _) = run_clean(&daemon, args, b"");
        assert!(text.contains(LABEL_SHOWN), "{text}");
        let json_args: Vec<&str> = std::iter::once("--json").chain(args.iter().copied()).collect();
        let (text, _) = run_clean(&daemon, &json_args, b"");
        let value = json("workers --json", &text);
        let labels = if value.is_array() { &value[0]["labels"] } else { &value["labels"] };
        assert_eq!(labels["zone"], "z\x1b[2J\x07\r\u{9b}");
    }
    for args in [&["status"][..], &["--json", "status"], &["pools"]] {
        run_clean(&daemon, args, b"");
    }
    // An error that quotes the request.
    let out = streamletctl(&daemon, &["open", "--pool", "nope\x1b[2J\u{9b}\r"], b"");
    assert!(!out.status.success());
    let stderr = clean("streamletctl open --pool <hostile> (stderr)", &out.stderr);
    assert!(stderr.contains("is not configured"), "{stderr}");

    assert!(daemon.terminate().success());
    let log = std::fs::read(&log).unwrap();
    let log = clean("the daemon's log", &log);
    let mut reasons = 0;
    for line in log.lines() {
        match format {
            "json" => {
                let record = json("a JSON log record", line);
                if record["message"].as_str().is_some_and(|m| m.starts_with("streamlet: hostile")) {
                    assert_eq!(record["message"], STDERR_SHOWN);
                }
                reasons += usize::from(record["reason"] == format!("handler_error ({REASON})"));
            }
            _ => {
                assert!(line.get(..4).is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit())), "not a record: {line}");
                if line.contains("streamlet: hostile") {
                    assert!(line.contains(STDERR_SHOWN), "{line}");
                }
                reasons += usize::from(line.contains(&format!("reason=handler_error ({REASON_SHOWN})")));
            }
        }
    }
    assert!(log.contains("streamlet: hostile"), "the streamlet's stderr is logged:\n{log}");
    assert!(reasons >= 2, "the ends are logged with their reasons:\n{log}");
}

/// `streamlet-gateway`, for `TENANT`: a client sends a byte, the streamlet
/// ends the stream with `REASON`, and the gateway's log says so, escaped.
fn the_gateways_log_is_clean(daemon: &Daemon) {
    let mut gateway = Command::new(GATEWAY)
        .args(["--listen", "127.0.0.1:0", "--pool", "bad", "--tenant", TENANT, "--socket"])
        .arg(&daemon.socket)
        // (Each stream's end is a debug line: nothing is logged per connection by default.)
        .env("STREAMLET_LOG", "info,streamlet_client=debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut banner = String::new();
    BufReader::new(gateway.stdout.take().unwrap()).read_line(&mut banner).unwrap();
    let addr = banner.split_whitespace().find_map(|w| w.trim_end_matches(',').parse::<std::net::SocketAddr>().ok());
    let addr = addr.unwrap_or_else(|| panic!("no address in {banner:?}"));
    let stderr = gateway.stderr.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in BufReader::new(stderr).split(b'\n') {
            let line = line.unwrap();
            let _ = lines.send(line.clone());
            log.extend_from_slice(&line);
            log.push(b'\n');
        }
        log
    });
    let mut client = TcpStream::connect(addr).unwrap();
    client.write_all(b"x").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !seen
        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        .expect("the gateway logged the stream's end within 10 s")
        .windows(12)
        .any(|w| w == b"stream ended")
    {}
    let _ = gateway.kill();
    let _ = gateway.wait();
    let log = clean("the gateway's log", &reader.join().unwrap());
    assert!(log.contains(&format!("reason=handler_error ({REASON_SHOWN})")), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_hostile_reaches_the_operator_nor_the_human_log() {
    nothing_hostile_reaches_the_operator("human").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_hostile_reaches_the_operator_nor_the_json_log() {
    nothing_hostile_reaches_the_operator("json").await;
}
