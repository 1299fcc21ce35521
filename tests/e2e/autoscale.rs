//! The autoscaler in the live daemon: streamlets spawned and retired by the
//! rules, with their events; the demand history in the state directory.

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use streamlet_autoscale::history::{self, HistoryFile, PoolHistory};
use streamlet_client::Client;
use streamlet_proto::{ErrorCode, Event, OpenRequest, PoolScaled, ScaleDirection, ScaleReason, WorkerId};

use crate::support::{Daemon, STREAMLETCTL};

/// A pool of at most four streamlets of two streams, growing and shrinking
/// by the reactive rules, quickly.
const ELASTIC: &str = r#"
[daemon]
shutdown_timeout = "2s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 1, max = 4 }
streams_per_worker = 2
spare = false
autoscale = { idle_grace = "1s" }
"#;

async fn scaled(client: &mut Client) -> PoolScaled {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = tokio::time::timeout(left, client.next_event()).await.expect("a scaling event in time").unwrap();
        if let Event::PoolScaled(scaled) = event {
            return scaled;
        }
    }
}

async fn open(client: &mut Client) -> (WorkerId, UnixStream) {
    let (mine, theirs) = UnixStream::pair().unwrap();
    // (It may need the streamlet the last open asked for.)
    let request = OpenRequest { wait_ms: Some(5_000), ..OpenRequest::new("echo") };
    let opened = client.open(request, theirs.as_fd()).await.unwrap();
    (opened.worker, mine)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookahead_spawns_before_the_last_slot_and_idle_grace_retires() {
    let daemon = Daemon::start(ELASTIC);
    let mut client = daemon.client().await;
    let mut watcher = daemon.client().await;
    watcher.subscribe().await.unwrap();

    // One stream on a streamlet of two: within one stream of full.
    let (first, conn) = open(&mut client).await;
    let up = scaled(&mut watcher).await;
    assert_eq!((up.direction, up.reason, up.count, up.workers), (ScaleDirection::Up, ScaleReason::Lookahead, 1, 2));
    let status = daemon.wait_until(|s| s.pools[0].ready == 2);
    assert_eq!((status.pools[0].slots, status.pools[0].desired), (2, 2));

    // The stream ends; a second later one streamlet is retired. (Which one
    // depends on which went idle first, by however little: the rules' unit
    // tests pin the order among streamlets idle past their grace together.)
    let second = client.workers(None).await.unwrap().iter().map(|w| w.id).find(|id| *id != first).unwrap();
    drop(conn);
    let down = scaled(&mut watcher).await;
    assert_eq!(
        (down.direction, down.reason, down.count, down.workers),
        (ScaleDirection::Down, ScaleReason::IdleGrace, 1, 1)
    );
    assert_eq!(down.retired.len(), 1);
    assert!(down.retired[0] == first || down.retired[0] == second, "{down:?}");
    let status = daemon.wait_until(|s| s.pools[0].workers == 1);
    assert_eq!((status.pools[0].slots, status.pools[0].ready), (1, 1), "never below min");
    // It left cleanly: no restart was counted against its slot.
    let workers = client.workers(None).await.unwrap();
    assert!(workers.iter().all(|w| w.id != down.retired[0] && w.restarts == 0), "{workers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn min_free_keeps_empty_streamlets_ready_and_max_caps_growth() {
    let config = ELASTIC.replace("min = 1, max = 4", "min = 1, max = 3, min_free = 2");
    let daemon = Daemon::start(&config);
    // One at start, and one more for min_free: two empty ones.
    let status = daemon.wait_until(|s| s.pools[0].ready == 2);
    assert_eq!(status.pools[0].desired, 2);
    let mut client = daemon.client().await;
    let mut held = Vec::new();
    for _ in 0..6 {
        // Each open may need the streamlet the last one asked for.
        let (mine, theirs) = UnixStream::pair().unwrap();
        let request = OpenRequest { wait_ms: Some(5_000), ..OpenRequest::new("echo") };
        client.open(request, theirs.as_fd()).await.unwrap();
        held.push(mine);
    }
    let status = daemon.wait_until(|s| s.pools[0].streams == 6);
    assert_eq!((status.pools[0].slots, status.pools[0].desired), (3, 3), "max is 3");
    let (_mine, theirs) = UnixStream::pair().unwrap();
    let refused = client.open(OpenRequest::new("echo"), theirs.as_fd()).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NoCapacity), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamletctl_pools_shows_current_desired_and_forecast() {
    let daemon = Daemon::start(ELASTIC);
    let out =
        std::process::Command::new(STREAMLETCTL).arg("--socket").arg(&daemon.socket).arg("pools").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["POOL", "AUTOSCALE", "MIN", "MAX", "CURRENT", "READY", "DESIRED", "FORECAST", "STREAMS"]
    );
    assert_eq!(
        lines.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["echo", "reactive", "1", "4", "1", "1", "1", "-", "0"]
    );
    let out = std::process::Command::new(STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["--json", "pools"])
        .output()
        .unwrap();
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["desired"], 1);
    assert_eq!(rows[0]["forecast"], serde_json::Value::Null);
}

/// A history in which `pool` had `per_minute` arrivals every minute of the
/// last `minutes`, each stream lasting `duration_ms`.
fn busy_history(pool: &str, minutes: u64, per_minute: u32, duration_ms: f64) -> HistoryFile {
    let now_minute = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60;
    let mut record = PoolHistory {
        first_minute: now_minute - minutes,
        mean_duration_ms: duration_ms,
        durations: 10_000,
        ..PoolHistory::default()
    };
    record.arrivals.extend(std::iter::repeat_n(per_minute, minutes as usize));
    HistoryFile { pools: [(pool.to_owned(), record)].into() }
}

/// Starts the daemon with a state directory already holding `history`.
fn start_with_history(config: &str, history: &HistoryFile) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("history.bin"), history::encode(history)).unwrap();
    let path = dir.path().join("streamletd.toml");
    let config = config.replace("[daemon]", &format!("[daemon]\nstate_dir = {:?}", state.display().to_string()));
    std::fs::write(&path, config).unwrap();
    let socket = dir.path().join("streamletd.sock");
    let mut cmd = std::process::Command::new(crate::support::STREAMLETD);
    cmd.arg("--config").arg(&path).arg("--socket").arg(&socket);
    Daemon::spawn_unready(cmd, dir, socket)
}

const PREDICTIVE: &str = r#"
[daemon]
shutdown_timeout = "2s"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 1, max = 20 }
streams_per_worker = 10
spare = false
autoscale = { mode = "predictive", lead = "60s", headroom = 0.2 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learnt_forecast_spawns_ahead_of_demand() {
    // Three hours of 600 streams a minute lasting 10 s: 100 at a time, so
    // 100 / 10 * 1.2 = 12 streamlets before anyone opens a stream.
    let daemon = start_with_history(PREDICTIVE, &busy_history("echo", 180, 600, 10_000.0));
    let mut watcher = daemon.client().await;
    watcher.subscribe().await.unwrap();
    let status = daemon.wait_until(|s| s.pools[0].ready >= 12);
    let pool = &status.pools[0];
    assert_eq!((pool.forecast, pool.desired), (Some(12), 12), "{pool:?}");
    assert!(pool.predicted_streams.is_some_and(|p| (90..=110).contains(&p)), "{pool:?}");
    assert_eq!(pool.streams, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecast_only_reports_the_forecast_and_keeps_the_pool_as_it_is() {
    let config = PREDICTIVE.replace("\"predictive\"", "\"forecast-only\"");
    let daemon = start_with_history(&config, &busy_history("echo", 180, 600, 10_000.0));
    let status = daemon.wait_until(|s| s.pools[0].forecast.is_some() && s.pools[0].ready == 1);
    assert_eq!(status.pools[0].forecast, Some(12));
    assert_eq!(status.pools[0].autoscale, "forecast-only");
    // And it stays at min.
    std::thread::sleep(Duration::from_millis(300));
    let status = daemon.wait_until(|_| true);
    assert_eq!((status.pools[0].slots, status.pools[0].desired), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_survives_a_restart_and_a_corrupt_file_is_replaced() {
    let mut daemon = start_with_history(ELASTIC, &busy_history("echo", 30, 7, 1_500.0));
    daemon.wait_until(|s| s.pools[0].ready == 1);
    let state = daemon.dir.path().join("state");
    let mut client = daemon.client().await;
    for _ in 0..3 {
        let (_worker, conn) = open(&mut client).await;
        drop(conn);
    }
    daemon.wait_until(|s| s.pools[0].streams == 0);
    drop(client);
    assert!(daemon.terminate().success());
    let kept = history::decode(&std::fs::read(state.join("history.bin")).unwrap()).unwrap();
    let echo = &kept.pools["echo"];
    assert_eq!(echo.durations, 10_003, "the three streams' durations were added");
    assert!(echo.arrivals.len() >= 30, "the minutes written before are still there");
    assert!(echo.arrivals.iter().take(30).all(|&n| n == 7));

    // A corrupt file: reported, kept aside, replaced; the daemon runs.
    std::fs::write(state.join("history.bin"), b"not a history at all").unwrap();
    daemon.restart();
    assert!(state.join("history.bin.corrupt").exists());
    assert!(daemon.terminate().success());
    let fresh = history::decode(&std::fs::read(state.join("history.bin")).unwrap()).unwrap();
    assert_eq!(fresh.pools["echo"].durations, 0, "a new history");
}

/// The script both the daemon and the simulator play: `(at_ms, duration_ms)`
/// of each stream. Decisions fall at least 300 ms apart, far more than the
/// daemon's scheduling jitter, so the order cannot depend on timing luck:
/// three opens bring three lookahead spawns (a stream takes a streamlet to
/// one short of full, each on the emptiest), and as they end the idle
/// streamlets go once their second of grace is over and lookahead can spare
/// them, down to min.
const SCRIPT: [(u64, u64); 3] = [(500, 2_500), (1_100, 2_500), (1_700, 600)];

/// A decision, as both sides can tell it: up or down, the rule, and for a
/// retirement which streamlet, by the order the autoscaler spawned them
/// (`None`: the one the pool started with).
type Step = (ScaleDirection, ScaleReason, Option<usize>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_and_the_daemon_make_the_same_decisions() {
    use streamlet_simulate::{self as simulate, Action, Options, Policy, Trace, Workload};
    let config_text = ELASTIC;

    // The simulator, on the same config and script.
    let config = streamlet_config::Config::parse(config_text, "elastic").unwrap();
    let rows: String = SCRIPT.iter().map(|(at, d)| format!("{at},{d}\n")).collect();
    let trace = Trace::parse(&format!("at_ms,duration_ms\n{rows}"), "script.csv").unwrap();
    let options = Options { spawn_delay_ms: 5, warm_up_ms: 0, ..Options::default() };
    let workload = Workload::new(&trace, &options).unwrap();
    let outcome = simulate::run(&config.pools["echo"], &config, Policy::Lookahead, &workload, &options);
    let mut spawned = Vec::new();
    let mut simulated: Vec<Step> = Vec::new();
    for logged in &outcome.decisions {
        let reason = match logged.reason {
            streamlet_autoscale::Reason::Min => continue, // the pool's start, before the script
            streamlet_autoscale::Reason::MinFree => ScaleReason::MinFree,
            streamlet_autoscale::Reason::Lookahead => ScaleReason::Lookahead,
            streamlet_autoscale::Reason::Forecast => ScaleReason::Forecast,
            streamlet_autoscale::Reason::IdleGrace => ScaleReason::IdleGrace,
        };
        match logged.action {
            Action::Spawn { worker } => {
                spawned.push(worker);
                simulated.push((ScaleDirection::Up, reason, None));
            }
            Action::Retire { worker } => {
                simulated.push((ScaleDirection::Down, reason, spawned.iter().position(|w| *w == worker)))
            }
        }
    }

    // The daemon, in real time.
    let daemon = Daemon::start(config_text);
    let mut client = daemon.client().await;
    let mut watcher = daemon.client().await;
    watcher.subscribe().await.unwrap();
    let start = Instant::now();
    let mut held: Vec<(Instant, UnixStream)> = Vec::new();
    let mut script = SCRIPT.iter().peekable();
    let mut live: Vec<Step> = Vec::new();
    let mut ready_order: Vec<WorkerId> = Vec::new();
    let settle = start + Duration::from_millis(6_000);
    while Instant::now() < settle {
        if let Some(&&(at, duration)) = script.peek() {
            if start.elapsed() >= Duration::from_millis(at) {
                script.next();
                let (_worker, conn) = open(&mut client).await;
                held.push((start + Duration::from_millis(at + duration), conn));
            }
        }
        held.retain(|(until, _)| Instant::now() < *until);
        let event = tokio::time::timeout(Duration::from_millis(10), watcher.next_event()).await;
        match event {
            Ok(Ok(Event::WorkerReady(ready))) => ready_order.push(ready.worker),
            Ok(Ok(Event::PoolScaled(scaled))) => match scaled.direction {
                ScaleDirection::Up => {
                    live.extend(std::iter::repeat_n((ScaleDirection::Up, scaled.reason, None), scaled.count as usize))
                }
                ScaleDirection::Down => {
                    for id in scaled.retired {
                        live.push((ScaleDirection::Down, scaled.reason, ready_order.iter().position(|w| *w == id)));
                    }
                }
            },
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("event stream: {e}"),
        }
    }
    assert!(simulated.len() >= 6, "the script exercises spawns and retirements: {simulated:?}");
    assert_eq!(live, simulated, "daemon (left) and simulator (right) decided differently");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_streamlet_is_no_room_so_its_pool_keeps_one_ready() {
    let daemon = Daemon::start(ELASTIC);
    let mut client = daemon.client().await;
    // A stream on the first streamlet; lookahead brings a second.
    let (first, _conn) = open(&mut client).await;
    daemon.wait_until(|s| s.pools[0].ready == 2);
    // The operator drains the first while its stream goes on. The second is
    // empty past its idle grace, but it is the pool's only room.
    client.drain(first, Some(30_000)).await.unwrap();
    std::thread::sleep(Duration::from_millis(1_600));
    let status = daemon.wait_until(|_| true);
    assert!(status.pools[0].ready >= 1, "a ready streamlet stays: {:?}", status.pools[0]);
    let (mine, theirs) = UnixStream::pair().unwrap();
    client.open(OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
    drop(mine);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamletctl_scale_sets_a_pools_bounds_until_the_next_reload() {
    let daemon = Daemon::start(ELASTIC);
    let ctl = |args: &[&str]| {
        std::process::Command::new(STREAMLETCTL).arg("--socket").arg(&daemon.socket).args(args).output().unwrap()
    };
    let out = ctl(&["scale", "echo", "--min", "3"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 to 4 streamlets until the next reload"));
    let status = daemon.wait_until(|s| s.pools[0].ready == 3);
    assert_eq!((status.pools[0].min, status.pools[0].max), (3, 4));

    let out = ctl(&["scale", "echo", "--min", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("bad_request") && stderr.contains("min 5 and max 4"), "{stderr}");
    let out = ctl(&["scale", "nope", "--max", "2"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_pool"));

    // A reload goes back to the file's bounds.
    let mut client = daemon.client().await;
    let summary = client.reload().await.unwrap();
    assert_eq!(summary.changed, ["echo"]);
    let status = client.status().await.unwrap();
    assert_eq!((status.pools[0].min, status.pools[0].max), (1, 4));
}

/// Root daemons on different sockets with no state directory configured
/// (and none from systemd) each keep their history in a directory of their
/// own under /var/lib/streamlet, named as their cgroup subtree is, and a
/// restart on the same socket finds it.
#[test]
fn each_daemon_keeps_a_history_of_its_own() {
    if !crate::support::privileged() {
        return;
    }
    // Named as the daemon names its cgroup subtree.
    let instance = |socket: &std::path::Path| {
        std::path::Path::new("/var/lib/streamlet").join(crate::support::instance_name(socket))
    };
    /// Removes a daemon's state directory, whatever the test's fate.
    struct Remove(std::path::PathBuf);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let shared = std::path::Path::new("/var/lib/streamlet/history.bin");
    let shared_before = std::fs::metadata(shared).and_then(|m| m.modified()).ok();
    let start = || {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streamletd.toml");
        std::fs::write(&path, ELASTIC).unwrap();
        let socket = dir.path().join("streamletd.sock");
        let mut cmd = std::process::Command::new(crate::support::STREAMLETD);
        cmd.arg("--config").arg(&path).arg("--socket").arg(&socket).env_remove("STATE_DIRECTORY");
        let state = Remove(instance(&socket));
        (Daemon::spawn(cmd, dir, socket), state)
    };
    let (mut a, a_state) = start();
    let (mut b, b_state) = start();
    assert_ne!(a_state.0, b_state.0);
    assert!(a.terminate().success() && b.terminate().success());
    for state in [&a_state.0, &b_state.0] {
        let kept = history::decode(&std::fs::read(state.join("history.bin")).unwrap()).unwrap();
        assert!(kept.pools.contains_key("echo"), "{}", state.display());
    }
    // Each finds its own again: a's, damaged, is reported and replaced; b's is not touched.
    std::fs::write(a_state.0.join("history.bin"), b"damaged").unwrap();
    let b_kept = std::fs::read(b_state.0.join("history.bin")).unwrap();
    a.restart();
    assert!(a_state.0.join("history.bin.corrupt").exists());
    assert!(a.terminate().success());
    assert_eq!(std::fs::read(b_state.0.join("history.bin")).unwrap(), b_kept);
    assert!(!b_state.0.join("history.bin.corrupt").exists());
    assert_eq!(
        std::fs::metadata(shared).and_then(|m| m.modified()).ok(),
        shared_before,
        "the system daemon's history is not touched"
    );
}
