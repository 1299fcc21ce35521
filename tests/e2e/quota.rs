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
    let request = OpenRequest {
        pool: "echo".into(),
        tenant: Some(tenant.into()),
        labels: Default::default(),
        region: None,
        priority: Some(priority),
        rate,
    };
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
        let Event::StreamEnded(e) = event;
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
