//! Bandwidth quota and tenant limits through the daemon.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use streamlet_client::Client;
use streamlet_proto::{EndReason, ErrorCode, Event, OpenRequest, RateRequest};

use crate::support::Daemon;

/// The seed's example: 50 units of bandwidth, at most 15 per customer.
const CONFIG: &str = r#"
[capacity]
egress = "50000"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 16
preempt = true
default_rate = { min = "1000", max = "15000" }

[tenants.default]
max_streams = 2
"#;

async fn open(
    client: &mut Client,
    tenant: &str,
    priority: u8,
    rate: Option<RateRequest>,
) -> Result<(u64, UnixStream), streamlet_client::ClientError> {
    let (mine, theirs) = UnixStream::pair().unwrap();
    let request =
        OpenRequest { tenant: Some(tenant.into()), priority: Some(priority), rate, ..OpenRequest::new("echo") };
    let opened = client.open(request, theirs.as_fd()).await?;
    Ok((opened.stream.0, mine))
}

async fn rates(client: &mut Client) -> HashMap<u64, Option<u64>> {
    client.streams(None).await.unwrap().into_iter().map(|s| (s.id.0, s.rate)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rates_follow_the_rules_as_customers_arrive() {
    let daemon = Daemon::start(CONFIG);
    let mut client = daemon.client().await;
    let mut held = Vec::new();

    let (a, conn) = open(&mut client, "a", 0, None).await.unwrap();
    held.push(conn);
    assert_eq!(rates(&mut client).await[&a], Some(15_000), "one customer: its max");

    let (b, conn) = open(&mut client, "b", 0, None).await.unwrap();
    held.push(conn);
    let r = rates(&mut client).await;
    assert_eq!((r[&a], r[&b]), (Some(15_000), Some(15_000)), "two customers: both at their max");

    for tenant in ["c", "d"] {
        let (_, conn) = open(&mut client, tenant, 0, None).await.unwrap();
        held.push(conn);
    }
    let r = rates(&mut client).await;
    assert_eq!(r.len(), 4);
    assert!(r.values().all(|rate| *rate == Some(12_500)), "four customers share 50000 equally: {r:?}");

    // A tenant at its max_streams.
    let (_, conn) = open(&mut client, "a", 0, None).await.unwrap();
    held.push(conn);
    let err = open(&mut client, "a", 0, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TenantLimit), "{err}");

    // A minimum that cannot fit even after preemption is refused.
    let err = open(&mut client, "e", 0, Some(RateRequest { min: 60_000, max: 60_000 })).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Insufficient), "{err}");
    let r = rates(&mut client).await;
    assert_eq!(r.values().map(|r| r.unwrap()).sum::<u64>(), 50_000, "the host's capacity, exactly: {r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_higher_priority_stream_preempts_lower_ones_where_the_pool_allows() {
    let daemon = Daemon::start(CONFIG);
    let mut client = daemon.client().await;
    let mut held = Vec::new();
    let mut low = Vec::new();
    for tenant in ["a", "b", "c", "d"] {
        let (id, conn) = open(&mut client, tenant, 0, None).await.unwrap();
        low.push(id);
        held.push(conn);
    }
    let (vip, conn) = open(&mut client, "vip", 9, Some(RateRequest { min: 48_000, max: 48_000 })).await.unwrap();
    held.push(conn);
    // 4 x 1000 + 48000 > 50000: two low-priority streams go.
    let mut preempted = Vec::new();
    while preempted.len() < 2 {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
        let Event::StreamEnded(e) = event else { panic!("expected stream_ended, got {:?}", event) };
        assert_eq!(e.reason, EndReason::Preempted, "{e:?}");
        assert!(low.contains(&e.stream.0));
        preempted.push(e.stream.0);
    }
    let r = rates(&mut client).await;
    assert_eq!(r[&vip], Some(48_000));
    let rest: u64 = r.iter().filter(|(id, _)| **id != vip).map(|(_, rate)| rate.unwrap()).sum();
    assert_eq!(rest, 2_000, "the two left keep their minimum: {r:?}");
}

#[test]
fn streamletctl_open_takes_priority_and_rates() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let daemon = Daemon::start(CONFIG);
    let mut child = Command::new(crate::support::STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["open", "--pool", "echo", "--tenant", "ops", "--priority", "3", "--min", "8kbit", "--max", "16kbit"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"paced\n").unwrap();
    let status = crate::support::wait_timeout(&mut child, Duration::from_secs(10)).expect("open exits");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("16 kbit/s"), "its allocation (2000 B/s) is shown: {err}");
    let bad = Command::new(crate::support::STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["open", "--pool", "echo", "--min", "fast", "--max", "1Mbit"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a rate"), "{}", String::from_utf8_lossy(&bad.stderr));
}

/// `open --min 1Mbps`: the common spellings of bit and byte rates, on the
/// command line as in the configuration (one parser for both).
#[test]
fn streamletctl_open_takes_rates_as_people_write_them() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let daemon = Daemon::start(&CONFIG.replace("egress = \"50000\"", "egress = \"10 Mbit/s\""));
    let mut child = Command::new(crate::support::STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["open", "--pool", "echo", "--tenant", "ops", "--min", "1Mbps", "--max", "125kB/s"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"paced\n").unwrap();
    let status = crate::support::wait_timeout(&mut child, Duration::from_secs(10)).expect("open exits");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(err.contains("1 Mbit/s"), "1Mbps and 125kB/s are the same 125000 B/s: {err}");
    let bad = Command::new(crate::support::STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["open", "--pool", "echo", "--min", "1MB", "--max", "1MB/s"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("\"1MB\" is not a rate") && err.contains("add /s"), "{err}");
    assert!(err.contains("8Mbps") && err.contains("1MiB/s"), "the accepted forms are named: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_holds_quota_and_a_tenant_slot_until_released_or_expired() {
    use streamlet_proto::LeaseRequest;
    let daemon = Daemon::start(CONFIG);
    let mut client = daemon.client().await;
    let lease = |ttl_ms| LeaseRequest {
        pool: "echo".into(),
        tenant: Some("gw".into()),
        priority: None,
        rate: RateRequest { min: 10_000, max: 30_000 },
        ttl_ms,
    };
    let granted = client.lease(lease(60_000)).await.unwrap();
    assert_eq!(granted.rate, 30_000);
    let (a, conn) = open(&mut client, "a", 0, None).await.unwrap();
    assert_eq!(rates(&mut client).await[&a], Some(15_000), "a stream and a lease share the host");
    let report = client.quota().await.unwrap();
    let host = report.lines.iter().find(|l| l.level == "host").unwrap();
    assert_eq!((host.capacity, host.allocated, host.leases, host.streams), (Some(50_000), 45_000, 1, 1));
    let refreshed = client.refresh(granted.lease).await.unwrap();
    assert_eq!(refreshed.rate, 30_000);
    // The tenant's two slots: this lease and one more.
    let second = client.lease(lease(200)).await.unwrap();
    let err = client.lease(lease(200)).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::TenantLimit), "{err}");
    client.release(granted.lease).await.unwrap();
    assert_eq!(client.refresh(granted.lease).await.unwrap_err().code(), Some(ErrorCode::UnknownLease));
    // Not refreshed, the second expires: its quota and slot come back.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(client.refresh(second.lease).await.unwrap_err().code(), Some(ErrorCode::UnknownLease));
    let report = client.quota().await.unwrap();
    assert_eq!(report.lines.iter().find(|l| l.level == "host").unwrap().leases, 0);
    assert_eq!(rates(&mut client).await[&a], Some(15_000), "back to its max");
    // Both of the tenant's slots are free again.
    client.lease(lease(60_000)).await.unwrap();
    client.lease(lease(60_000)).await.unwrap();
    drop(conn);
}

#[test]
fn streamletctl_holds_a_lease_and_shows_the_quota() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let daemon = Daemon::start(CONFIG);
    let ctl = |args: &[&str]| {
        let out =
            Command::new(crate::support::STREAMLETCTL).arg("--socket").arg(&daemon.socket).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut holder = Command::new(crate::support::STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["lease", "--pool", "echo", "--tenant", "gw", "--min", "80kbit", "--max", "160kbit", "--ttl", "300ms"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("granted") && first.contains("160 kbit/s"), "{first}");
    // Held past its TTL by the refreshes.
    std::thread::sleep(Duration::from_millis(700));
    let refreshed = lines.next().unwrap().unwrap();
    assert!(refreshed.contains("refreshed"), "{refreshed}");
    let quota: serde_json::Value = serde_json::from_str(&ctl(&["--json", "quota"])).unwrap();
    let host = quota.as_array().unwrap().iter().find(|l| l["level"] == "host").unwrap().clone();
    assert_eq!(host["leases"], 1, "{quota}");
    assert_eq!(host["allocated"], 20_000);
    let table = ctl(&["quota"]);
    assert!(table.contains("ALLOCATED") && table.contains("gw"), "{table}");
    drop(holder.stdin.take());
    let status = crate::support::wait_timeout(&mut holder, Duration::from_secs(10)).expect("exits at end of input");
    assert!(status.success());
    let quota: serde_json::Value = serde_json::from_str(&ctl(&["--json", "quota"])).unwrap();
    let host = quota.as_array().unwrap().iter().find(|l| l["level"] == "host").unwrap().clone();
    assert_eq!(host["leases"], 0, "released: {quota}");
}

/// No capacity anywhere, so a stream is under the quota only when it asks
/// for a rate; and two tenants the configuration names.
const COUNTED: &str = r#"
[pools.echo]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 8
spare = false

[tenants.acme]
max_streams = 4

[tenants.idle]
max_streams = 2
"#;

/// `quota` counts the same streams at every level, says which of them have
/// a rate, and lists a configured tenant before its first stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamletctl_quota_counts_every_stream_at_every_level() {
    use std::process::Command;
    let daemon = Daemon::start(COUNTED);
    let ctl = |args: &[&str]| {
        let out =
            Command::new(crate::support::STREAMLETCTL).arg("--socket").arg(&daemon.socket).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mut client = daemon.client().await;
    let (_plain, _conn) = open(&mut client, "acme", 0, None).await.unwrap();
    let counts = |level: &str, name: &str| {
        let lines: serde_json::Value = serde_json::from_str(&ctl(&["--json", "quota"])).unwrap();
        let line = lines.as_array().unwrap().iter().find(|l| l["level"] == level && l["name"] == name).cloned();
        let line = line.unwrap_or_else(|| panic!("no {level} {name} in {lines}"));
        (line["open_streams"].as_u64().unwrap(), line["rated_streams"].as_u64().unwrap())
    };
    // One stream without a rate: counted everywhere, rated nowhere.
    for (level, name) in [("host", "host"), ("pool", "echo"), ("tenant", "acme")] {
        assert_eq!(counts(level, name), (1, 0), "{level} {name}");
    }
    assert_eq!(counts("tenant", "idle"), (0, 0), "a configured tenant is listed before its first stream");

    let (_rated, _conn2) = open(&mut client, "acme", 0, Some(RateRequest { min: 1000, max: 2000 })).await.unwrap();
    for (level, name) in [("host", "host"), ("pool", "echo"), ("tenant", "acme")] {
        assert_eq!(counts(level, name), (2, 1), "{level} {name}");
    }
    let table = ctl(&["quota"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    assert!(header.contains("STREAMS  RATED"), "{table}");
    // The last four columns: STREAMS RATED LEASES MAX_STREAMS.
    let tail = |level: &str, name: &str| {
        let row = table.lines().find(|l| l.split_whitespace().take(2).eq([level, name]));
        let words: Vec<&str> =
            row.unwrap_or_else(|| panic!("no {level} {name} in {table}")).split_whitespace().collect();
        words[words.len() - 4..].join(" ")
    };
    assert_eq!(tail("host", "host"), "2 1 0 -", "{table}");
    assert_eq!(tail("pool", "echo"), "2 1 0 -", "{table}");
    assert_eq!(tail("tenant", "acme"), "2 1 0 4", "{table}");
    assert_eq!(tail("tenant", "idle"), "0 0 0 2", "{table}");
    assert!(table.lines().last().unwrap().starts_with("STREAMS: open streams; RATED:"), "{table}");
}

/// Room for two streams of 20 MB/s, each allowed up to 40.
const BURSTY: &str = r#"
[daemon]
shutdown_timeout = "2s"
stats_interval = "100ms"

[capacity]
egress = "40MB/s"
burst = "1s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 8
default_rate = { min = "1MB/s", max = "40MB/s" }
"#;

/// A loopback TCP connection: the client's end, and the server's end that
/// is handed over (the test keeps a copy of the same socket).
fn tcp_pair() -> (std::net::TcpStream, std::net::TcpStream) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, server)
}

/// The kernel's pacing limit on a socket, bytes per second.
fn pacing(socket: &std::net::TcpStream) -> u64 {
    use std::os::fd::AsRawFd;
    let mut rate = 0u64;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: a valid socket, and a buffer of `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&mut rate as *mut u64).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt: {}", std::io::Error::last_os_error());
    if len == 4 {
        rate & 0xffff_ffff
    } else {
        rate
    }
}

/// Polls `f` every 10 ms until it is true or `limit` passes.
fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kernel_paces_each_stream_and_a_busy_one_bursts_into_an_idle_ones_share() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let daemon = Daemon::start(BURSTY);
    let mut client = daemon.client().await;
    let (mut busy_client, busy) = tcp_pair();
    let (_idle_client, idle) = tcp_pair();
    let request = || OpenRequest { tenant: Some("t".into()), ..OpenRequest::new("echo") };
    let first = client.open(request(), busy.as_fd()).await.unwrap();
    assert_eq!(pacing(&busy), 40_000_000, "alone: paced at its max");
    let second = client.open(request(), idle.as_fd()).await.unwrap();
    let r = rates(&mut client).await;
    assert_eq!((r[&first.stream.0], r[&second.stream.0]), (Some(20_000_000), Some(20_000_000)));
    // Both are paced at their allocation less the margin that lets the next
    // admission fit without touching them; the first was lowered at once.
    let paced = 20_000_000 - 20_000_000 / 64;
    assert_eq!((pacing(&busy), pacing(&idle)), (paced, paced));

    // One sends as fast as it may; the other sends nothing.
    let stop = Arc::new(AtomicBool::new(false));
    let mut reader = busy_client.try_clone().unwrap();
    // (A timeout, so that the pump sees `stop` even when its peer stops reading.)
    busy_client.set_write_timeout(Some(Duration::from_millis(100))).unwrap();
    let pump = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let chunk = vec![7u8; 64 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match busy_client.write(&chunk) {
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                    Err(_) => break,
                }
            }
        })
    };
    let drain = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });

    let burst = eventually(Duration::from_secs(10), || pacing(&busy) == 40_000_000);
    assert!(burst, "the busy stream never burst: paced at {}", pacing(&busy));
    assert_eq!(pacing(&idle), paced, "the idle stream keeps its pacing: it may need it back");
    assert_eq!(rates(&mut client).await[&first.stream.0], Some(20_000_000), "the allocation is unchanged");
    let ended = eventually(Duration::from_secs(3), || pacing(&busy) == paced);
    assert!(ended, "the burst never ended: paced at {}", pacing(&busy));

    stop.store(true, Ordering::Relaxed);
    pump.join().unwrap();
    client.close(first.stream).await.unwrap();
    client.close(second.stream).await.unwrap();
    drain.join().unwrap();
}
