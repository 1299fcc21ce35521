//! `/metrics`: scraped over HTTP from the live daemon, parsed, and checked
//! against what the test did.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use streamlet_proto::OpenRequest;

use crate::support::{signal, Daemon, TWO_BY_64};

/// The response to `GET path` on `conn`: status line and body.
fn get(mut conn: impl Read + Write, path: &str) -> (String, String) {
    write!(conn, "GET {path} HTTP/1.1\r\nHost: streamletd\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("headers end");
    let status = head.lines().next().unwrap().to_owned();
    if status.ends_with("200 OK") {
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
    }
    let length: usize = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().parse().unwrap();
    assert_eq!(length, body.len(), "Content-Length is the body's");
    (status, body.to_owned())
}

/// Parses the exposition text: every sample line is `name{labels} value`
/// with a number, every family has its HELP and TYPE first, and it ends with
/// `# EOF`. Samples by `name{labels}`.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    let mut typed = std::collections::HashSet::new();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.last(), Some(&"# EOF"), "ends with # EOF");
    for line in &lines[..lines.len() - 1] {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["gauge", "counter", "histogram"].contains(&kind), "{line}");
            typed.insert(name.to_owned());
            continue;
        }
        if line.starts_with("# HELP ") {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line}"));
        let name = series.split('{').next().unwrap();
        let family = ["_total", "_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
        assert!(typed.contains(family) || typed.contains(name), "sample before its TYPE: {line}");
        if let Some(labels) = series.strip_prefix(name) {
            assert!(labels.is_empty() || (labels.starts_with('{') && labels.ends_with('}')), "{line}");
        }
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_parsed_and_true() {
    let scratch = tempfile::tempdir().unwrap();
    let socket = scratch.path().join("metrics.sock");
    let config = format!(
        "{TWO_BY_64}\n[metrics]\nlisten = {:?}\n\n[capacity]\negress = \"100MB/s\"\n\n[tenants.acme]\nmax_streams = 10\n",
        format!("unix:{}", socket.display())
    );
    let daemon = Daemon::start(&config);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no metrics socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let scrape = |path: &Path| {
        let (status, body) = get(UnixStream::connect(path).unwrap(), "/metrics");
        assert_eq!(status, "HTTP/1.1 200 OK");
        parse(&body)
    };

    let mut client = daemon.client().await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let (mine, theirs) = UnixStream::pair().unwrap();
        client.open(OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
        held.push(mine);
    }
    // Tenant names come from clients: one the configuration does not name
    // gets no series (its name could be anything, and there could be
    // millions); a configured one does.
    for tenant in ["acme", "client-chosen-7f3a"] {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let request = OpenRequest { tenant: Some(tenant.into()), ..OpenRequest::new("echo") };
        client.open(request, theirs.as_fd()).await.unwrap();
        held.push(mine);
    }
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let unknown = client.open(OpenRequest::new("nope"), theirs.as_fd()).await;
    assert!(unknown.is_err());

    let m = scrape(&socket);
    assert_eq!(m[r#"streamlet_workers{pool="echo",state="ready"}"#], 2.0);
    assert_eq!(m[r#"streamlet_workers{pool="echo",state="draining"}"#], 0.0, "every state is listed");
    assert_eq!(m[r#"streamlet_streams{pool="echo"}"#], 5.0);
    assert_eq!(m[r#"streamlet_opens_total{pool="echo",result="opened"}"#], 5.0);
    assert!(!m.keys().any(|k| k.contains("nope")), "an unknown pool makes no series");
    assert!(m.contains_key(r#"streamlet_bandwidth_bytes_per_second{level="tenant",name="acme",kind="allocated"}"#));
    assert!(!m.keys().any(|k| k.contains("client-chosen")), "a tenant the configuration does not name");
    assert_eq!(m["streamlet_placement_seconds_count"], 5.0);
    assert!(m["streamlet_placement_seconds_sum"] > 0.0);
    assert!(m["streamlet_spawn_seconds_count"] >= 2.0, "both streamlets' spawns");
    assert_eq!(m[r#"streamlet_bandwidth_bytes_per_second{level="host",name="host",kind="capacity"}"#], 100e6);
    assert!(m.contains_key(r#"streamlet_bandwidth_bytes_per_second{level="host",name="host",kind="free"}"#));
    assert_eq!(m[r#"streamlet_desired_workers{pool="echo"}"#], 2.0);

    // A death is a restart by its cause.
    let victim = client.workers(None).await.unwrap()[0].pid;
    signal(victim, libc::SIGKILL);
    // (Until the daemon has seen the death, both still look ready: wait for
    // the restart to be counted, then for the replacement.)
    let deadline = Instant::now() + Duration::from_secs(10);
    while client.workers(None).await.unwrap().iter().map(|w| w.restarts).sum::<u32>() == 0 {
        assert!(Instant::now() < deadline, "the death of {victim} was not seen");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    daemon.wait_until(|s| s.pools[0].ready == 2 && s.pools[0].workers == 2);
    let m = scrape(&socket);
    assert_eq!(m[r#"streamlet_restarts_total{pool="echo",cause="signaled"}"#], 1.0);

    // Anything but GET /metrics is refused.
    let (status, _) = get(UnixStream::connect(&socket).unwrap(), "/");
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    drop(held);
}

#[test]
fn metrics_over_loopback_tcp() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!("{TWO_BY_64}\n[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let _daemon = Daemon::start(&config);
    let deadline = Instant::now() + Duration::from_secs(10);
    let conn = loop {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(conn) => break conn,
            Err(e) => assert!(Instant::now() < deadline, "no metrics on port {port}: {e}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (status, body) = get(conn, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(parse(&body)[r#"streamlet_workers{pool="echo",state="ready"}"#], 2.0);
}
