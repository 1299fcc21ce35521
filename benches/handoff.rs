//! Stream handoff through the real daemon, and the machine's raw
//! `SCM_RIGHTS` rate beside it as the limit.
//!
//! `cargo bench --bench handoff` (options after `--`: `--seconds N`, `--runs N`).
//!
//! One handoff: a socketpair, `Open` with one end attached, the daemon places
//! it and passes it to a streamlet, the client writes 1 KiB and reads the
//! echo, then closes. Measured at concurrency 1 and 64 (64 client tasks,
//! each with its own control connection, on one client thread). Reported:
//! handoffs per second (median and spread over runs) and latency percentiles
//! over every handoff of every run.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/machine.rs"]
mod machine;
use daemon::Daemon;
use machine::machine;

use std::os::fd::AsFd;
use std::os::unix::net::UnixStream as StdUnixStream;

use std::time::{Duration, Instant};

use streamlet_client::Client;
use streamlet_proto::fdpass::{recv_with_fds, send_with_fds};
use streamlet_proto::OpenRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PAYLOAD: usize = 1024;

const CONFIG: &str = r#"
[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 1024
limits = { nofile = 2048 }
"#;

struct Options {
    seconds: f64,
    runs: usize,
}

fn options() -> Options {
    let mut o = Options { seconds: 3.0, runs: 5 };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--seconds" => o.seconds = pair[1].parse().expect("--seconds N"),
            "--runs" => o.runs = pair[1].parse().expect("--runs N"),
            _ => {}
        }
    }
    o
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench; stay quick there.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let o = options();
    machine();
    raw_scm_rights(&o);
    let daemon = Daemon::start(CONFIG, 2);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    for concurrency in [1usize, 64] {
        let mut rates = Vec::new();
        let mut latencies = Vec::new();
        // Warm-up: fills caches and the streamlets' task pools.
        runtime.block_on(run(&daemon.socket, concurrency, Duration::from_millis(500)));
        for _ in 0..o.runs {
            let (count, elapsed, mut lat) =
                runtime.block_on(run(&daemon.socket, concurrency, Duration::from_secs_f64(o.seconds)));
            rates.push(count as f64 / elapsed.as_secs_f64());
            latencies.append(&mut lat);
        }
        latencies.sort();
        rates.sort_by(f64::total_cmp);
        println!(
            "handoff  concurrency {concurrency:>2}: {:>8.0} streams/s median (min {:.0}, max {:.0}, {} runs)  latency p50 {:>6.1} us  p99 {:>7.1} us  ({} handoffs)",
            rates[rates.len() / 2],
            rates[0],
            rates[rates.len() - 1],
            o.runs,
            micros(percentile(&latencies, 0.50)),
            micros(percentile(&latencies, 0.99)),
            latencies.len(),
        );
    }
    drop(daemon);
}

/// One measurement: `concurrency` tasks doing handoffs back to back for `length`.
async fn run(socket: &std::path::Path, concurrency: usize, length: Duration) -> (usize, Duration, Vec<Duration>) {
    let start = Instant::now();
    let deadline = start + length;
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let socket = socket.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut client = Client::connect(&socket).await.expect("connect");
            let mut latencies = Vec::new();
            let payload = vec![0x5au8; PAYLOAD];
            let mut echo = vec![0u8; PAYLOAD];
            while Instant::now() < deadline {
                let t = Instant::now();
                let (mine, theirs) = StdUnixStream::pair().unwrap();
                let request = OpenRequest::new("echo");
                client.open(request, theirs.as_fd()).await.expect("open");
                drop(theirs);
                mine.set_nonblocking(true).unwrap();
                let mut mine = tokio::net::UnixStream::from_std(mine).unwrap();
                mine.write_all(&payload).await.unwrap();
                mine.read_exact(&mut echo).await.unwrap();
                drop(mine);
                latencies.push(t.elapsed());
                // Stream-ended events pile up unread otherwise.
                client.take_events();
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.append(&mut task.await.unwrap());
    }
    (all.len(), start.elapsed(), all)
}

/// The limit: one thread passing a descriptor per `sendmsg` to another over a
/// Unix socketpair, the receiver closing each.
fn raw_scm_rights(o: &Options) {
    let mut rates = Vec::new();
    for _ in 0..o.runs {
        let (a, b) = StdUnixStream::pair().unwrap();
        let (payload, _keep) = StdUnixStream::pair().unwrap();
        let receiver = std::thread::spawn(move || {
            let mut count = 0u64;
            let mut buf = [0u8; 64];
            let mut fds = Vec::new();
            loop {
                let n = recv_with_fds(b.as_fd(), &mut buf, &mut fds).unwrap().bytes;
                count += fds.len() as u64;
                fds.clear();
                if n == 0 {
                    return count;
                }
            }
        });
        let start = Instant::now();
        let length = Duration::from_secs_f64(o.seconds.min(2.0));
        while start.elapsed() < length {
            for _ in 0..256 {
                send_with_fds(a.as_fd(), b"x", &[payload.as_fd()]).unwrap();
            }
        }
        drop(a);
        let count = receiver.join().unwrap();
        rates.push(count as f64 / start.elapsed().as_secs_f64());
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "raw SCM_RIGHTS, 1 fd per sendmsg, 2 threads: {:>8.0} fds/s median (min {:.0}, max {:.0}, {} runs)",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        o.runs
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
