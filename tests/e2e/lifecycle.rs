//! The daemon's and the streamlets' lives: start, death and replacement, stop.

use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::Duration;

use streamlet_proto::{EndReason, Event, ExitCause, OpenRequest, WorkerState};

use crate::support::{echo_once, process_gone, signal, wait_gone, Daemon, STREAMLETD, TWO_BY_64};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_streamlet_is_replaced_and_only_its_streams_end() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let mut conns = Vec::new();
    for _ in 0..6 {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let request = OpenRequest::new("echo");
        let opened = client.open(request, theirs.as_fd()).await.unwrap();
        conns.push((opened, mine));
    }
    let workers = client.workers(None).await.unwrap();
    let victim = workers[0].clone();
    assert_eq!(victim.streams, 3);
    signal(victim.pid, libc::SIGKILL);

    // Each of its streams ends with the cause; the others do not.
    for _ in 0..3 {
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
        let Event::StreamEnded(ended) = event else { panic!("expected stream_ended, got {:?}", event) };
        assert_eq!(ended.worker, victim.id);
        assert_eq!(
            ended.reason,
            EndReason::WorkerDied { cause: ExitCause::Signaled { signal: libc::SIGKILL, core_dumped: false } }
        );
    }
    for (opened, mine) in &mut conns {
        if opened.worker == victim.id {
            let mut buf = [0u8; 4];
            mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert_eq!(mine.read(&mut buf).unwrap(), 0, "the daemon shut the dead streamlet's streams down");
        } else {
            echo_once(mine, b"still here");
        }
    }

    // A new streamlet takes the dead one's slot.
    daemon.wait_until(|s| s.pools[0].ready == 2);
    let workers = client.workers(None).await.unwrap();
    assert_eq!(workers.len(), 2);
    let replacement = workers.iter().find(|w| w.restarts == 1).expect("one slot restarted");
    assert_ne!(replacement.pid, victim.pid);
    assert_eq!(replacement.state, WorkerState::Ready);
    assert_eq!(replacement.restarts, 1);
    assert!(matches!(replacement.last_exit, Some(ExitCause::Signaled { signal: 9, .. })));
    assert!(workers.iter().all(|w| w.id != victim.id));
    assert_eq!(client.streams(None).await.unwrap().len(), 3);
    assert!(!std::path::Path::new(&format!("/proc/{}", victim.pid)).exists(), "the daemon reaped the dead streamlet");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_a_stuck_streamlet_until_the_timeout_then_kills_it() {
    let mut daemon = Daemon::start(TWO_BY_64); // shutdown_timeout = "2s"
    let pids: Vec<u32> = daemon.client().await.workers(None).await.unwrap().iter().map(|w| w.pid).collect();
    signal(pids[0], libc::SIGSTOP);
    let started = std::time::Instant::now();
    assert!(daemon.terminate().success());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "the stuck streamlet was given its 2 s (took {took:?})");
    for pid in pids {
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "streamlet {pid} left behind");
    }
}

/// Descriptors the daemon holds return to the same count after streamlets
/// die and are replaced and streams come and go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_descriptor_leaks_across_deaths_and_streams() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let count = || std::fs::read_dir(format!("/proc/{}/fd", daemon.pid())).unwrap().count();
    let before = count();
    for round in 0..5 {
        let victim = client.workers(None).await.unwrap()[0].clone();
        signal(victim.pid, libc::SIGKILL);
        // Until the death is handled and the replacement is ready.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let workers = client.workers(None).await.unwrap();
            let ready = workers.iter().filter(|w| w.state == WorkerState::Ready).count();
            if ready == 2 && workers.iter().all(|w| w.id != victim.id) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "round {round}: {workers:?}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for _ in 0..20 {
            let (mut mine, theirs) = UnixStream::pair().unwrap();
            let request = OpenRequest::new("echo");
            client.open(request, theirs.as_fd()).await.unwrap();
            drop(theirs);
            echo_once(&mut mine, b"x");
        }
    }
    // Every stream ends (the clients hung up), every dead streamlet's reader
    // lets go of its channel (after its 1 s grace), and the status pollers'
    // connections close: the count settles back. A leak never does.
    daemon.wait_until(|s| s.pools[0].streams == 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while count() != before && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(count(), before, "descriptors held by the daemon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_every_streamlet_removes_the_socket_and_leaves_no_orphan() {
    let mut daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let (mine, theirs) = UnixStream::pair().unwrap();
    let request = OpenRequest::new("echo");
    client.open(request, theirs.as_fd()).await.unwrap();
    drop(theirs);
    let pids: Vec<u32> = client.workers(None).await.unwrap().iter().map(|w| w.pid).collect();
    assert_eq!(pids.len(), 2);

    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert!(!daemon.socket.exists(), "the socket is removed");
    for pid in pids {
        // Not even a zombie: the daemon reaped them before it exited.
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "streamlet {pid} outlived the daemon");
    }
    // The stream was ended with a reason, then the connection shut down.
    let event = tokio::time::timeout(Duration::from_secs(5), client.next_event()).await.unwrap().unwrap();
    let Event::StreamEnded(ended) = event else { panic!("expected stream_ended, got {:?}", event) };
    assert_eq!(ended.reason, EndReason::Shutdown);
    let mut buf = [0u8; 1];
    mine.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!((&mine).read(&mut buf).unwrap(), 0);
}

#[test]
fn the_embedded_default_runs_with_the_socket_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("env.sock");
    let mut cmd = Command::new(STREAMLETD);
    cmd.env("STREAMLET_SOCKET", &socket);
    let mut daemon = Daemon::spawn(cmd, dir, socket.clone());
    assert!(daemon.banner.contains(&socket.display().to_string()), "printed the path: {}", daemon.banner);
    let status = daemon.wait_until(|_| true);
    assert_eq!(status.pools.len(), 1);
    let echo = &status.pools[0];
    assert_eq!((echo.name.as_str(), echo.workers, echo.capacity), ("echo", 2, 16));
    assert!(daemon.terminate().success());
}

#[test]
fn socket_flag_beats_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("flag.sock");
    let mut cmd = Command::new(STREAMLETD);
    cmd.arg("--socket").arg(&flag).env("STREAMLET_SOCKET", dir.path().join("env.sock"));
    let mut daemon = Daemon::spawn(cmd, dir, flag.clone());
    assert!(flag.exists());
    assert!(!daemon.dir.path().join("env.sock").exists());
    assert!(daemon.terminate().success());
}

#[test]
fn a_bad_config_is_refused_with_file_key_and_reason_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, TWO_BY_64.replace("streams_per_worker = 64", "streams_per_worker = 0")).unwrap();
    let socket = dir.path().join("never.sock");
    let out = Command::new(STREAMLETD).arg("--config").arg(&config).arg("--socket").arg(&socket).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&config.display().to_string()), "{err}");
    assert!(err.contains("pools.echo.streams_per_worker"), "{err}");
    assert!(err.contains("must be 1 to"), "{err}");
    assert!(!socket.exists(), "no socket is bound for a bad config");

    let out = Command::new(STREAMLETD).arg("check-config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    std::fs::write(&config, TWO_BY_64).unwrap();
    let out = Command::new(STREAMLETD).arg("check-config").arg(&config).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    let out = Command::new(STREAMLETD).arg("check-config").arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

#[test]
fn a_second_daemon_on_the_same_socket_is_refused_and_the_first_keeps_it() {
    let daemon = Daemon::start(TWO_BY_64);
    let out = Command::new(STREAMLETD).arg("--socket").arg(&daemon.socket).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
    assert!(daemon.socket.exists());
    daemon.wait_until(|s| s.pools[0].ready == 2);
    assert!(!process_gone(daemon.pid()));
}

/// Even a stopped streamlet goes (its orphaned process group gets SIGHUP, and
/// PR_SET_PDEATHSIG fires; `hostile.rs` proves the latter alone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamlets_die_with_a_killed_daemon() {
    let daemon = Daemon::start(TWO_BY_64);
    let pids: Vec<u32> = daemon.client().await.workers(None).await.unwrap().iter().map(|w| w.pid).collect();
    assert_eq!(pids.len(), 2);
    signal(pids[0], libc::SIGSTOP);
    signal(daemon.pid(), libc::SIGKILL);
    for pid in pids {
        assert!(wait_gone(pid), "streamlet {pid} outlived a SIGKILLed daemon");
    }
    // A new daemon on the same socket takes over (and clears what is left).
    let mut daemon = daemon;
    daemon.restart();
}

/// Streamlets are forked from a thread that lives as long as the daemon:
/// `PR_SET_PDEATHSIG` fires when the forking *thread* exits, and a pool
/// thread retired after ten idle seconds would take its streamlets along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamlets_outlive_the_thread_pools_idle_timeout() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut client = daemon.client().await;
    let before: Vec<u32> = client.workers(None).await.unwrap().iter().map(|w| w.pid).collect();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let workers = client.workers(None).await.unwrap();
    let after: Vec<u32> = workers.iter().map(|w| w.pid).collect();
    assert_eq!(after, before, "{workers:?}");
    assert!(workers.iter().all(|w| w.restarts == 0), "{workers:?}");
}

#[test]
fn log_format_json_writes_one_object_a_line() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamletd.toml");
    std::fs::write(&config, crate::support::TWO_BY_64).unwrap();
    let mut child = Command::new(STREAMLETD)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("d.sock"))
        .args(["--log-format", "json"])
        .env("STREAMLET_LOG", "info")
        .env("STATE_DIRECTORY", dir.path().join("state"))
        .env_remove("JOURNAL_STREAM")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let object: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(object["level"].is_string() && object["timestamp"].is_string(), "{line}");
        let message = object["message"].as_str().unwrap_or_default().to_owned();
        seen.push(message.clone());
        if message == "streamletd starting" {
            assert!(object["socket"].as_str().is_some_and(|s| s.ends_with("d.sock")), "fields are keys: {line}");
            break;
        }
    }
    assert!(seen.iter().any(|m| m == "streamletd starting"), "{seen:?}");
    signal(child.id(), libc::SIGTERM);
    for line in lines {
        let line = line.unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok(), "not a JSON line: {line}");
    }
    assert!(child.wait().unwrap().success());
}
