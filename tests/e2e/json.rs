//! `streamletctl --json`: every command against a real daemon, each output
//! parsed and its fields checked against what docs/json.md gives.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{Daemon, STREAMLETCTL, TWO_BY_64};

fn run(daemon: &Daemon, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .arg("--json")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The command's stdout, one JSON value.
fn json(daemon: &Daemon, args: &[&str]) -> Value {
    let out = run(daemon, args, b"");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Each line a JSON value.
fn json_lines(text: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(text);
    text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

fn keys(value: &Value) -> Vec<&str> {
    let object = value.as_object().unwrap_or_else(|| panic!("not an object: {value}"));
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// The first (and only) item of an array.
fn only(value: &Value) -> &Value {
    let items = value.as_array().unwrap_or_else(|| panic!("not an array: {value}"));
    assert_eq!(items.len(), 1, "{value}");
    &items[0]
}

const WORKER: [&str; 10] =
    ["capacity", "id", "labels", "last_exit", "pid", "pool", "restarts", "state", "streams", "uptime"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_prints_the_json_docs_json_md_gives() {
    let daemon = Daemon::start(&format!("{TWO_BY_64}\n[tenants.acme]\nmax_streams = 4\n"));
    let mut client = daemon.client().await;
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let request =
        streamlet_proto::OpenRequest { tenant: Some("acme".into()), ..streamlet_proto::OpenRequest::new("echo") };
    let opened = client.open(request, theirs.as_fd()).await.unwrap();

    // status: the daemon, then its pools.
    let status = json(&daemon, &["status"]);
    assert_eq!(keys(&status), ["pid", "pools", "socket", "uptime", "version"]);
    assert_eq!(status["pid"], daemon.pid());
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(status["socket"], daemon.socket.to_str().unwrap());
    assert!(status["uptime"].as_f64().unwrap() > 0.0, "{status}");
    assert_eq!(
        keys(only(&status["pools"])),
        [
            "capacity",
            "degraded_for",
            "errors",
            "handler",
            "listening",
            "placement",
            "pool",
            "ready",
            "streams",
            "workers"
        ]
    );
    assert_eq!(status["pools"][0]["streams"], 1);
    assert_eq!(status["pools"][0]["listening"], serde_json::json!([]), "no listen: none");

    let pools = json(&daemon, &["pools"]);
    assert_eq!(
        keys(only(&pools)),
        ["autoscale", "current", "desired", "forecast", "max", "min", "pool", "predicted_streams", "ready", "streams"]
    );

    let workers = json(&daemon, &["workers"]);
    let rows = workers.as_array().unwrap();
    assert!(!rows.is_empty(), "{workers}");
    let mut fields = WORKER.to_vec();
    if crate::support::privileged() {
        fields.push("usage");
        fields.sort_unstable();
        assert_eq!(keys(&rows[0]["usage"]), ["cpu", "cpu_throttled", "memory", "memory_peak", "oom_kills", "pids"]);
    }
    assert_eq!(keys(&rows[0]), fields);
    let serving = opened.worker.0.to_string();
    let detail = json(&daemon, &["worker", &serving]);
    let mut detailed = fields.clone();
    detailed.extend(["deaths", "stream_ids"]);
    detailed.sort_unstable();
    assert_eq!(keys(&detail), detailed);
    assert_eq!(detail["stream_ids"], serde_json::json!([opened.stream.0]));

    let streams = json(&daemon, &["streams"]);
    assert_eq!(
        keys(only(&streams)),
        ["age", "bytes_in", "bytes_out", "id", "pool", "priority", "rate", "sending", "stalled", "tenant", "worker"]
    );
    assert_eq!(only(&streams)["tenant"], "acme");

    let quota = json(&daemon, &["quota"]);
    let lines = quota.as_array().unwrap();
    let levels: Vec<(&str, &str)> =
        lines.iter().map(|l| (l["level"].as_str().unwrap(), l["name"].as_str().unwrap())).collect();
    assert_eq!(levels, [("host", "host"), ("pool", "echo"), ("tenant", "acme")]);
    for line in lines {
        assert_eq!(
            keys(line),
            [
                "allocated",
                "capacity",
                "free",
                "leases",
                "level",
                "max_streams",
                "name",
                "open_streams",
                "rated_streams",
                "reserved",
                "streams"
            ]
        );
        assert_eq!(line["open_streams"], 1, "{line}");
    }

    // events: one object a line, numbered; those that follow unnumbered.
    let out = run(&daemon, &["events", "--recent", "3"], b"");
    let logged = json_lines(&out.stdout);
    assert_eq!(logged.len(), 3, "{logged:?}");
    for event in &logged {
        assert_eq!(keys(event), ["at_ms", "event", "seq"]);
        assert!(event["seq"].as_u64().is_some() && event["event"].is_object(), "{event}");
    }
    let mut follower = Command::new(STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["--json", "events", "-f", "--recent", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = follower.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(10)).expect("the latest event");
    assert!(serde_json::from_str::<Value>(&first).unwrap()["seq"].is_u64(), "{first}");
    // Once it follows (its first line came after the subscription), a new
    // stream is news to it.
    let (other, theirs) = UnixStream::pair().unwrap();
    let second = client.open(streamlet_proto::OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
    let followed: Value = serde_json::from_str(&rx.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap();
    assert_eq!(keys(&followed), ["at_ms", "event", "seq"]);
    assert_eq!(followed["seq"], Value::Null, "{followed}");
    assert_eq!(followed["event"]["stream_opened"]["stream"], second.stream.0, "{followed}");
    let _ = follower.kill();
    let _ = follower.wait();

    // open: the stream on stdout, what happened to it on stderr.
    let out = run(&daemon, &["open", "--pool", "echo", "--tenant", "acme"], b"ping\n");
    assert_eq!(out.stdout, b"ping\n");
    let notes = json_lines(&out.stderr);
    assert_eq!(keys(&notes[0]), ["pool", "rate", "stream", "worker"], "{notes:?}");
    assert_eq!(notes.len(), 2, "the end is told: {notes:?}");
    assert_eq!(keys(&notes[1]), ["bytes_exact", "bytes_in", "bytes_out", "ended", "stream"]);
    assert_eq!((&notes[1]["ended"], &notes[1]["bytes_out"]), (&Value::from("completed"), &Value::from(5)));
    assert_eq!(notes[1]["bytes_exact"], Value::from(true));

    // lease: granted, then released at the end of input.
    let out = run(&daemon, &["lease", "--pool", "echo", "--min", "8kbit", "--max", "16kbit", "--ttl", "30s"], b"");
    let said = json_lines(&out.stdout);
    let events: Vec<&str> = said.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["granted", "released"]);
    for line in &said {
        assert_eq!(keys(line), ["event", "expires_in_ms", "lease", "rate"]);
    }

    // The operator's actions.
    let closed = json(&daemon, &["close", &opened.stream.0.to_string()]);
    assert_eq!(closed, serde_json::json!({ "stream": opened.stream.0 }));
    // (No stream left to hold a drain up.)
    drop(other);
    daemon.wait_until(|s| s.pools[0].streams == 0);
    let scaled = json(&daemon, &["scale", "echo", "--min", "2", "--max", "2"]);
    assert_eq!(keys(&scaled), ["desired", "max", "min", "pool"]);
    assert_eq!((&scaled["min"], &scaled["max"]), (&Value::from(2), &Value::from(2)));
    let reloaded = json(&daemon, &["reload"]);
    assert_eq!(keys(&reloaded), ["added", "changed", "notes", "removed", "source"]);
    let ids: Vec<String> = json(&daemon, &["workers"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["state"] == "ready")
        .map(|w| w["id"].to_string())
        .collect();
    let drained = json(&daemon, &["drain", &ids[0], "--timeout", "5s"]);
    assert_eq!(
        drained,
        serde_json::json!({ "worker": ids[0].parse::<u64>().unwrap(), "state": "draining", "timeout": 5.0 })
    );
    let killed = json(&daemon, &["kill", &ids[1]]);
    assert_eq!(killed, serde_json::json!({ "worker": ids[1].parse::<u64>().unwrap(), "killed": true }));
    daemon.wait_until(|s| s.pools[0].ready == 2 && s.pools[0].workers == 2);
    let restarting = json(&daemon, &["restart", "echo"]);
    assert_eq!(keys(&restarting), ["pool", "workers"]);
    assert_eq!(restarting["workers"].as_array().unwrap().len(), 2, "{restarting}");
}

/// What prints no JSON says so instead of ignoring `--json`.
#[test]
fn completions_and_man_refuse_json() {
    for args in [&["--json", "completions", "bash"][..], &["man", "--json"]] {
        let out =
            Command::new(STREAMLETCTL).args(args).env("STREAMLET_SOCKET", "/nonexistent/s.sock").output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr.contains("--json") && stderr.contains("never JSON"), "{stderr}");
    }
}
