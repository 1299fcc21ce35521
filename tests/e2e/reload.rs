//! Reload: `streamletctl reload` and SIGHUP apply a new configuration
//! without dropping a stream; an invalid one changes nothing.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use streamlet_proto::{ErrorCode, OpenRequest};

use crate::support::{echo_once, privileged, signal, Daemon};

const BEFORE: &str = r#"
[daemon]
shutdown_timeout = "2s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 4
spare = false
limits = { memory = "64MiB" }

[pools.old]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 4
spare = false
"#;

const AFTER: &str = r#"
[daemon]
shutdown_timeout = "2s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 3, max = 3 }
streams_per_worker = 4
spare = false
placement = "pack"
limits = { memory = "96MiB" }

[pools.fresh]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 4
spare = false
"#;

async fn open(client: &mut streamlet_client::Client, pool: &str) -> UnixStream {
    let (mine, theirs) = UnixStream::pair().unwrap();
    client.open(OpenRequest::new(pool), theirs.as_fd()).await.unwrap();
    mine
}

/// The memory limit of `pid`'s cgroup (v1), in bytes.
fn memory_limit(pid: u32) -> u64 {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = cgroups.lines().find_map(|l| l.split_once(":memory:").map(|(_, p)| p.to_owned())).unwrap();
    let file = Path::new("/sys/fs/cgroup/memory").join(path.trim_start_matches('/')).join("memory.limit_in_bytes");
    std::fs::read_to_string(file).unwrap().trim().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_resizes_switches_and_removes_pools_without_dropping_a_stream() {
    let daemon = Daemon::start(BEFORE);
    let config = daemon.dir.path().join("streamletd.toml");
    let mut client = daemon.client().await;
    let mut on_echo = open(&mut client, "echo").await;
    let mut on_old = open(&mut client, "old").await;
    let echo_pid = client.workers(Some("echo".into())).await.unwrap()[0].pid;

    std::fs::write(&config, AFTER).unwrap();
    let summary = client.reload().await.unwrap();
    assert_eq!(summary.added, ["fresh"]);
    assert_eq!(summary.removed, ["old"]);
    assert_eq!(summary.changed, ["echo"]);

    let status = daemon.wait_until(|s| {
        s.pools.iter().any(|p| p.name == "echo" && p.ready == 3)
            && s.pools.iter().any(|p| p.name == "fresh" && p.ready == 1)
    });
    let echo = status.pools.iter().find(|p| p.name == "echo").unwrap();
    assert_eq!((echo.placement.as_str(), echo.max), ("pack", 3), "the policy switched and the pool grew");
    assert!(status.pools.iter().all(|p| p.name != "old"), "a removed pool is no more in the status");
    // No stream was dropped: both still echo, the removed pool's too.
    echo_once(&mut on_echo, b"still here");
    echo_once(&mut on_old, b"draining, still served");
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let refused = client.open(OpenRequest::new("old"), theirs.as_fd()).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::UnknownPool), "{refused}");
    // The stream that was there counts under the new policy: pack fills
    // the streamlet that has it first.
    let opened = {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let opened = client.open(OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
        drop(mine);
        opened
    };
    let streams = client.streams(Some("echo".into())).await.unwrap();
    let first = streams.iter().find(|s| s.id != opened.stream).unwrap();
    assert_eq!(opened.worker, first.worker, "pack chose the streamlet already holding a stream");
    if privileged() {
        assert_eq!(memory_limit(echo_pid), 96 << 20, "the live streamlet's cgroup has the new limit");
    }

    // The removed pool's streamlet leaves with its last stream.
    drop(on_old);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.workers(None).await.unwrap().iter().any(|w| w.pool == "old") {
        assert!(std::time::Instant::now() < deadline, "the old pool's streamlet did not leave");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_file_changes_nothing_and_sighup_reloads_a_valid_one() {
    let mut daemon = Daemon::start(BEFORE);
    let config = daemon.dir.path().join("streamletd.toml");
    let mut client = daemon.client().await;
    std::fs::write(&config, BEFORE.replace("min = 2, max = 2", "min = 5, max = 2")).unwrap();
    let refused = client.reload().await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::BadConfig), "{refused}");
    assert!(refused.to_string().contains("pools.echo.workers.min"), "names the key: {refused}");
    assert!(refused.to_string().contains("running configuration stays"), "{refused}");
    let status = client.status().await.unwrap();
    assert_eq!(status.pools.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["echo", "old"]);

    // SIGHUP: the same as `reload`.
    std::fs::write(&config, BEFORE.replace("[pools.old]", "[pools.renamed]")).unwrap();
    signal(daemon.pid(), libc::SIGHUP);
    daemon.wait_until(|s| s.pools.iter().any(|p| p.name == "renamed" && p.ready == 1) && s.pools.len() == 2);
    assert!(daemon.terminate().success(), "and it still shuts down cleanly");
}

/// BEFORE without the pool `old`.
fn without_old() -> String {
    let at = BEFORE.find("[pools.old]").unwrap();
    BEFORE[..at].to_owned()
}

async fn old_streamlets(client: &mut streamlet_client::Client) -> usize {
    client.workers(None).await.unwrap().iter().filter(|w| w.pool == "old").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_removed_and_added_back_while_draining_keeps_its_bounds() {
    let daemon = Daemon::start(BEFORE);
    let config = daemon.dir.path().join("streamletd.toml");
    let mut client = daemon.client().await;
    let on_old = open(&mut client, "old").await;
    std::fs::write(&config, without_old()).unwrap();
    client.reload().await.unwrap();
    std::fs::write(&config, BEFORE).unwrap();
    let summary = client.reload().await.unwrap();
    assert_eq!(summary.added, ["old"]);
    daemon.wait_until(|s| s.pools.iter().any(|p| p.name == "old" && p.ready == 1));
    // The drained streamlet leaves with its stream; nothing takes its place
    // beyond max 1.
    drop(on_old);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(old_streamlets(&mut client).await, 1, "{:?}", client.workers(None).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spawn_on_its_way_when_its_pool_is_removed_is_called_off() {
    let config_text = BEFORE.replace(
        "[pools.old]\nhandler = { kind = \"echo\" }",
        "[pools.old]\nhandler = { kind = \"echo\" }\nrestart = { initial = \"2s\", jitter = 0.0 }",
    );
    let mut daemon = Daemon::start(&config_text);
    let config = daemon.dir.path().join("streamletd.toml");
    let mut client = daemon.client().await;
    let victim = client.workers(Some("old".into())).await.unwrap()[0].pid;
    signal(victim, libc::SIGKILL);
    // Its replacement waits 2 s; the pool goes meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(&config, without_old()).unwrap();
    client.reload().await.unwrap();
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(old_streamlets(&mut client).await, 0, "the replacement was not started for a pool that is gone");
    let started = std::time::Instant::now();
    assert!(daemon.terminate().success());
    assert!(started.elapsed() < Duration::from_secs(2), "no spawn left pending to wait for");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capacity_added_by_a_reload_covers_the_streams_already_open() {
    let daemon = Daemon::start(BEFORE);
    let config = daemon.dir.path().join("streamletd.toml");
    let mut client = daemon.client().await;
    let _on_echo = open(&mut client, "echo").await;
    assert_eq!(client.streams(None).await.unwrap()[0].rate, None, "no capacity, no rate");
    std::fs::write(&config, BEFORE.replace("[pools.echo]", "[capacity]\negress = \"1000000\"\n\n[pools.echo]"))
        .unwrap();
    client.reload().await.unwrap();
    let _second = open(&mut client, "echo").await;
    let rates: Vec<Option<u64>> = client.streams(None).await.unwrap().iter().map(|s| s.rate).collect();
    assert_eq!(rates.len(), 2);
    assert!(rates.iter().all(|r| r.is_some_and(|r| r <= 1_000_000)), "both under the new capacity: {rates:?}");
    assert!(rates.iter().flatten().sum::<u64>() <= 1_000_000, "{rates:?}");
}
