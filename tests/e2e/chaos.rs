//! Chaos: a thousand streams echo while a random streamlet is SIGKILLed
//! every 100 ms. Afterwards every stream is accounted for, the quota is back
//! to zero, and nothing is left behind.
//!
//! 30 s of killing by default; `STREAMLET_CHAOS_SECS` sets another length.

use std::collections::{BTreeSet, HashMap};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_proto::{EndReason, Event, OpenRequest, StreamId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::Daemon;

/// Half the streams in a pool whose streams end with their streamlet, half
/// in one whose streams move; room for all of them twice over. The kills are
/// independent events, not a crash loop: a streamlet that ran a second counts
/// as healthy (`healthy_after`), and backoff stays under a second.
const CHAOS: &str = r#"
[daemon]
shutdown_timeout = "5s"
stats_interval = "200ms"

[capacity]
egress = "1GB/s"

[pools.close]
handler = { kind = "echo" }
workers = { min = 8, max = 8 }
streams_per_worker = 128
default_rate = { min = "100kB/s", max = "1MB/s" }
restart = { intensity = 1000, max = "1s", healthy_after = "1s" }

[pools.migrate]
handler = { kind = "echo" }
workers = { min = 8, max = 8 }
streams_per_worker = 128
on_worker_exit = "migrate"
default_rate = { min = "100kB/s", max = "1MB/s" }
restart = { intensity = 1000, max = "1s", healthy_after = "1s" }
"#;

const STREAMS: usize = 1_000;
/// The daemon's resident memory stays under this with 1,000 streams.
const RSS_BOUND_KIB: u64 = 64 * 1024;

/// One client: writes a numbered 16-byte message, waits for it to come back,
/// and again, until told to stop or its stream ends. A message the dead
/// streamlet swallowed times out and is counted as lost.
async fn echo_loop(
    mut conn: tokio::net::UnixStream,
    stop: Arc<AtomicBool>,
    echoed: Arc<AtomicU64>,
    lost: Arc<AtomicU64>,
) -> bool {
    let mut seq = 0u64;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let msg = format!("{seq:015}\n");
        if conn.write_all(msg.as_bytes()).await.is_err() {
            return false;
        }
        // Read until this message comes back (older ones may arrive first).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        loop {
            if let Some(at) = buf.windows(16).position(|w| w == msg.as_bytes()) {
                buf.drain(..at + 16);
                echoed.fetch_add(1, Ordering::Relaxed);
                break;
            }
            let mut chunk = [0u8; 256];
            match tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return false,
                Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
                Err(_) => {
                    lost.fetch_add(1, Ordering::Relaxed);
                    buf.clear();
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_survive_a_kill_every_100ms_with_nothing_unaccounted_for() {
    let seconds: u64 = std::env::var("STREAMLET_CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    let mut daemon = Daemon::start(CHAOS);
    let mut client = daemon.client().await;
    let stop = Arc::new(AtomicBool::new(false));
    let (echoed, lost) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut pool_of: HashMap<StreamId, &str> = HashMap::new();
    let mut tasks = Vec::new();
    for k in 0..STREAMS {
        let pool = if k % 2 == 0 { "close" } else { "migrate" };
        let (mine, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        let opened = client.open(OpenRequest::new(pool), theirs.as_fd()).await.unwrap();
        drop(theirs);
        pool_of.insert(opened.stream, pool);
        mine.set_nonblocking(true).unwrap();
        let conn = tokio::net::UnixStream::from_std(mine).unwrap();
        let task = tokio::spawn(echo_loop(conn, stop.clone(), echoed.clone(), lost.clone()));
        tasks.push((opened.stream, task));
    }

    // Kill a random streamlet (of either pool) every 100 ms.
    let daemon_pid = daemon.pid();
    let mut killer = daemon.client().await;
    let started = Instant::now();
    let mut kills = 0u32;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < Duration::from_secs(seconds) {
        tick.tick().await;
        let workers = killer.workers(None).await.unwrap();
        let alive: Vec<_> = workers.iter().filter(|w| w.pid != 0).collect();
        if alive.is_empty() {
            continue;
        }
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let victim = alive[(rng % alive.len() as u64) as usize];
        // SAFETY: kill(2) of a streamlet the daemon started; if it died
        // meanwhile, the pid is a zombie or gone and nothing else is hit.
        if unsafe { libc::kill(victim.pid as i32, libc::SIGKILL) } == 0 {
            kills += 1;
        }
    }
    // (At most ten a second; fewer when the box is busy.)
    assert!(kills as u64 >= seconds * 3, "only {kills} kills in {seconds} s");

    // Let the last deaths settle, then account for every stream.
    daemon.wait_until(|s| s.pools.iter().all(|p| p.ready == 8));
    let mut ended: HashMap<StreamId, EndReason> = HashMap::new();
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(500), client.next_event()).await {
        if let Event::StreamEnded(e) = event {
            assert!(ended.insert(e.stream, e.reason).is_none(), "stream {} ended twice", e.stream);
        }
    }
    let open: BTreeSet<StreamId> = client.streams(None).await.unwrap().iter().map(|s| s.id).collect();
    for (stream, reason) in &ended {
        assert!(!open.contains(stream), "stream {stream} ended yet listed as open");
        assert!(matches!(reason, EndReason::WorkerDied { .. }), "stream {stream}: {reason:?}");
    }
    for stream in pool_of.keys() {
        assert!(open.contains(stream) ^ ended.contains_key(stream), "stream {stream} unaccounted for");
    }
    let migrated_ended = ended.keys().filter(|s| pool_of[s] == "migrate").count();
    let close_ended = ended.keys().filter(|s| pool_of[s] == "close").count();
    assert!(close_ended > 0, "some streams of the close pool ended with their streamlet");
    assert!(migrated_ended <= STREAMS / 4, "{migrated_ended} of the migrate pool's streams found no room");

    // Every stream still open still echoes.
    stop.store(true, Ordering::Relaxed);
    let mut still = 0;
    for (stream, task) in tasks {
        let echoing = tokio::time::timeout(Duration::from_secs(10), task).await.expect("echo loop stops").unwrap();
        assert_eq!(
            echoing,
            open.contains(&stream),
            "stream {stream}: echoing {echoing}, open {}",
            open.contains(&stream)
        );
        still += usize::from(echoing);
    }

    // The daemon's memory, its children and its quota.
    let rss = std::fs::read_to_string(format!("/proc/{daemon_pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().trim_end_matches(" kB").parse::<u64>().unwrap()))
        .unwrap();
    assert!(rss < RSS_BOUND_KIB, "daemon RSS {rss} KiB");
    let zombies = children_of(daemon_pid).into_iter().filter(|(_, state)| *state == 'Z').count();
    assert_eq!(zombies, 0, "zombie streamlets");
    eprintln!(
        "chaos: {kills} kills in {seconds} s; {still} streams still echoing, {close_ended} ended (close), \
         {migrated_ended} ended (migrate, no room); {} echoes, {} messages lost in dead streamlets; daemon RSS {rss} KiB",
        echoed.load(Ordering::Relaxed),
        lost.load(Ordering::Relaxed)
    );
    // The echo loops dropped their connections: every stream ends.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The streams first: once none is left (and none opens any more), the
        // quota read after must hold nothing. (Read the other way round, the
        // last stream could end between the two.)
        if client.streams(None).await.unwrap().is_empty() {
            let quota = client.quota().await.unwrap();
            let host = quota.lines.iter().find(|l| l.level == "host").unwrap().clone();
            assert_eq!(
                (host.reserved, host.allocated, host.streams),
                (0, 0, 0),
                "quota after every stream closed; by level: {:?}",
                quota.lines
            );
            break;
        }
        assert!(Instant::now() < deadline, "streams did not all close");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // After the daemon: no streamlet process and no cgroup of it remain, nor
    // any other streamlet cgroup under the daemon's own.
    let workers: Vec<u32> = children_of(daemon_pid).into_iter().map(|(pid, _)| pid).collect();
    let groups: Vec<std::path::PathBuf> = workers.iter().flat_map(|pid| pids_cgroup(*pid)).collect();
    assert!(!groups.is_empty(), "streamlets run in cgroups");
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    for pid in workers {
        assert!(crate::support::wait_gone(pid), "streamlet {pid} outlived the daemon");
    }
    for group in &groups {
        assert!(!group.exists(), "cgroup {} left behind", group.display());
        let parent = group.parent().unwrap();
        let siblings: Vec<_> =
            std::fs::read_dir(parent).map(|d| d.flatten().filter(|e| e.path().is_dir()).collect()).unwrap_or_default();
        assert!(siblings.is_empty(), "{} still holds {siblings:?}", parent.display());
    }
}

/// A process's cgroup directory in the v1 `pids` hierarchy.
fn pids_cgroup(pid: u32) -> Option<std::path::PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = text.lines().find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_owned()))?;
    Some(std::path::Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/')))
}

/// `(pid, state)` of every process whose parent is `parent`.
fn children_of(parent: u32) -> Vec<(u32, char)> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()) else { continue };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        if fields.next().and_then(|p| p.parse::<u32>().ok()) == Some(parent) {
            children.push((pid, state));
        }
    }
    children
}
