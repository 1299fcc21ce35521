//! SIGKILL to replacement ready: how long a crashed streamlet's slot stays
//! empty, beside how long the daemon takes to learn of the death.
//!
//! `cargo bench --bench restart` (as root, for the full sandbox; `-- --kills N`).
//!
//! A real `streamletd` runs a pool of four sandboxed streamlets. The bench
//! subscribes to lifecycle events, then again and again SIGKILLs the oldest
//! ready streamlet and times, from just before the `kill(2)`:
//! - *detection*: until its `worker_exited` event arrives (the daemon reaped it
//!   through its pidfd, classified the death and published it);
//! - *ready*: until the replacement's `worker_ready` arrives (spawned into a
//!   new cgroup and namespaces, exec'd, `Init` read, `Ready` sent).
//!
//! Both include the event's trip to this process. It runs twice: with the
//! pool's spare (the default: a ready streamlet takes the dead one's slot at
//! once, and a new spare is spawned behind it) and without (the replacement
//! is spawned into a new cgroup). Each kill is a first crash
//! (`healthy_after = "100ms"`, 150 ms between kills; the breaker's intensity
//! raised), the case where the default policy restarts at once. The same kill
//! loop under supervisord, s6 and runit is `benches/restart-anchors.sh`.

#[path = "support/daemon.rs"]
mod daemon;
use daemon::Daemon;

use std::time::{Duration, Instant};

use streamlet_client::Client;
use streamlet_proto::{Event, WorkerState};

const CONFIG: &str = r#"
[daemon]
shutdown_timeout = "2s"

[pools.bench]
handler = { kind = "echo" }
workers = { min = 4, max = 4 }
streams_per_worker = 8
limits = { cpu = "0.5", memory = "64MiB", pids = 64 }
network = "none"
readonly_root = true
restart = { healthy_after = "100ms", intensity = 1000 }
"#;

fn main() {
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let kills: usize = args.windows(2).find(|w| w[0] == "--kills").map_or(100, |w| w[1].parse().expect("--kills N"));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!("SIGKILL of a streamlet, {kills} kills, pool of 4 sandboxed streamlets (milliseconds)");
    println!("{:<40} {:>8} {:>8} {:>8} {:>8}", "", "p50", "p90", "p99", "max");
    for spare in [true, false] {
        let daemon = Daemon::start(&format!("{CONFIG}spare = {spare}\n"), 4);
        let (detect, ready) = runtime.block_on(measure(&daemon.socket, kills));
        let how = if spare { "spare = true (default)" } else { "spare = false" };
        report(&format!("{how}: detection"), detect);
        report(&format!("{how}: replacement ready"), ready);
    }
}

async fn measure(socket: &std::path::Path, kills: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut control = Client::connect(socket).await.unwrap();
    let mut events = Client::connect(socket).await.unwrap();
    events.subscribe().await.unwrap();
    let (mut detect, mut ready) = (Vec::new(), Vec::new());
    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let workers = control.workers(None).await.unwrap();
        let victim = workers
            .iter()
            .filter(|w| w.state == WorkerState::Ready)
            .max_by_key(|w| w.uptime_ms)
            .expect("a ready streamlet")
            .clone();
        let start = Instant::now();
        // SAFETY: kill(2) of a live streamlet of the daemon we started.
        assert_eq!(unsafe { libc::kill(victim.pid as i32, libc::SIGKILL) }, 0);
        let mut exited = None;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.next_event())
                .await
                .expect("the replacement within 10 s")
                .unwrap();
            match event {
                Event::WorkerExited(x) if x.worker == victim.id => exited = Some(start.elapsed()),
                Event::WorkerReady(_) if exited.is_some() => {
                    ready.push(start.elapsed());
                    break;
                }
                _ => {}
            }
        }
        detect.push(exited.unwrap());
    }
    (detect, ready)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!("{name:<40} {:>8.2} {:>8.2} {:>8.2} {:>8.2}", at(0.5), at(0.9), at(0.99), at(1.0));
}
