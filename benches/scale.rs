//! The scale run: 500 streamlets and as many idle streams as the daemon's
//! descriptor limit allows.
//!
//! `cargo bench --bench scale` (as root, for the full sandbox; options after
//! `--`: `--streamlets N`, `--streams N`, `--idle-seconds S`).
//!
//! A real `streamletd` runs one pool of `--streamlets` sandboxed echo
//! streamlets (default 500, no spare) that accepts TCP clients itself
//! (`listen`). The daemon holds one descriptor per stream, so how many
//! streams fit is its `RLIMIT_NOFILE` (raised to the hard limit) less its
//! reserve and what each streamlet costs it; the daemon says so in its start
//! log, and `--streams` defaults to just under that. Measured:
//! - how long the streamlets take to become ready, from the daemon's start;
//! - the fill: each stream is a TCP connection that writes one byte and reads
//!   it back (so it is placed and served), 64 in flight, from eight loopback
//!   source addresses in turn; the open rate over the whole fill and per step
//!   of 2,000;
//! - with no stream and with all of them, idle: the daemon's RSS and
//!   descriptors, its CPU (and the streamlets') over `--idle-seconds`
//!   (default 10), and the
//!   streamlets' memory (RSS and PSS summed over the daemon's descendants,
//!   and their memory cgroups' `memory.usage_in_bytes` or `memory.current`);
//! - at full: `status` and `workers` latency (20 calls each), the size of the
//!   `workers` reply, and echo round trips on 100 of the idle streams;
//! - the costs per stream, and what 50,000 streams would take if they grow
//!   linearly.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/machine.rs"]
mod machine;
use daemon::Daemon;
use machine::machine;

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use streamlet_client::Client;
use streamlet_proto::Encoding;

/// Connections the fill keeps in flight.
const WINDOW: usize = 64;
/// The fill reports its rate every this many streams.
const STEP: usize = 2_000;
/// Streams the echo sample goes through.
const SAMPLE: usize = 100;
/// Calls of `status` and of `workers` timed.
const CALLS: usize = 20;
/// What the extrapolation is for.
const TARGET: f64 = 50_000.0;

struct Options {
    streamlets: u32,
    streams: Option<usize>,
    idle: Duration,
}

fn options() -> Options {
    let mut o = Options { streamlets: 500, streams: None, idle: Duration::from_secs(10) };
    let args: Vec<String> = std::env::args().collect();
    for pair in args.windows(2) {
        match pair[0].as_str() {
            "--streamlets" => o.streamlets = pair[1].parse().expect("--streamlets N"),
            "--streams" => o.streams = Some(pair[1].parse().expect("--streams N")),
            "--idle-seconds" => o.idle = Duration::from_secs_f64(pair[1].parse().expect("--idle-seconds S")),
            _ => {}
        }
    }
    o
}

/// The pool; the daemon's state (its demand history) in `state`, so that
/// the run leaves none behind.
fn config(streamlets: u32, per_streamlet: usize, state: &Path) -> String {
    format!(
        r#"
[daemon]
shutdown_timeout = "5s"
state_dir = "{state}"

[pools.echo]
handler = {{ kind = "echo" }}
workers = {{ min = {streamlets}, max = {streamlets} }}
streams_per_worker = {per_streamlet}
spare = false
listen = ["127.0.0.1:0"]
limits = {{ nofile = {nofile} }}
"#,
        nofile = (per_streamlet + 64).max(128),
        state = state.display(),
    )
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench; stay quick there.
    if std::env::args().any(|a| a == "--test") {
        return;
    }
    let o = options();
    let hard = raise_nofile();
    machine();
    println!("this process: RLIMIT_NOFILE raised to {hard} (one socket per stream here too)");

    // Room for the most streams the hard limit could allow, whatever the default.
    let most = o.streams.unwrap_or(hard as usize);
    let per_streamlet = most.div_ceil(o.streamlets as usize).max(40);
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("streamletd.log");
    if std::env::var_os("BENCH_LOG").is_none() {
        // Only the start log's line on descriptors, and warnings and errors.
        std::env::set_var("BENCH_LOG", "warn,streamlet_supervisor::daemon=info");
    }
    let started = Instant::now();
    let daemon = with_stderr_to(&log_path, || {
        Daemon::start(&config(o.streamlets, per_streamlet, &log_dir.path().join("state")), o.streamlets)
    });
    let ready_in = started.elapsed();
    println!("{} streamlets ready in {:.2} s (from the daemon's start)", o.streamlets, ready_in.as_secs_f64());

    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    let fit = allowed_streams(&log);
    let n = match (o.streams, fit) {
        (Some(n), _) => n,
        // Just under: a hundred below, rounded down to a hundred.
        (None, Some(fit)) => fit.saturating_sub(100) / 100 * 100,
        (None, None) => panic!("no \"allows about N streams\" line in the daemon's log: pass --streams N"),
    };
    match fit {
        Some(fit) => println!("the daemon's descriptor limit allows about {fit} streams: filling {n}"),
        None => println!("the daemon did not say what its descriptor limit allows: filling {n}"),
    }

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut client = runtime.block_on(Client::connect(&daemon.socket)).unwrap();
    let status = runtime.block_on(client.status()).unwrap();
    let pid = status.pid;
    let addr: SocketAddr = status.pools[0].listening.first().expect("the pool listens").parse().unwrap();
    println!("daemon pid {pid}, pool echo on {addr}, capacity {}", status.pools[0].capacity);

    std::thread::sleep(Duration::from_secs(1));
    let empty = Snapshot::take(pid, o.idle);
    empty.print("0 streams");

    let (streams, fill) = fill(addr, n);
    let placed = runtime.block_on(client.status()).unwrap().pools[0].streams as usize;
    println!(
        "filled {} of {n} in {:.2} s: {:.0} streams/s; the daemon counts {placed} streams; {} refused",
        streams.len(),
        fill.elapsed.as_secs_f64(),
        streams.len() as f64 / fill.elapsed.as_secs_f64(),
        fill.refused,
    );
    println!(
        "  slowest window of {WINDOW}: {:.1} ms, after {} streams",
        fill.slowest.0.as_secs_f64() * 1e3,
        fill.slowest.1
    );
    for (i, rate) in fill.steps.iter().enumerate() {
        println!("  streams {:>6} to {:>6}: {rate:>7.0} streams/s", i * STEP, ((i + 1) * STEP).min(streams.len()));
    }

    std::thread::sleep(Duration::from_secs(2));
    let full = Snapshot::take(pid, o.idle);
    full.print(&format!("{} streams", streams.len()));

    let (status_ms, workers_ms, workers_json_ms, worker_count) = runtime.block_on(control_latency(&daemon.socket));
    let workers = runtime.block_on(client.workers(None)).unwrap();
    let json_bytes = serde_json::to_vec(&workers).map_or(0, |v| v.len());
    let ctl_bytes = streamletctl_workers_bytes(&daemon.socket);
    println!("status              median {:>6.2} ms  max {:>6.2} ms", median(&status_ms), max(&status_ms));
    println!(
        "workers ({worker_count})      median {:>6.2} ms  max {:>6.2} ms  (postcard, as streamletctl asks)",
        median(&workers_ms),
        max(&workers_ms)
    );
    println!(
        "workers, JSON       median {:>6.2} ms  max {:>6.2} ms  ({json_bytes} bytes of JSON; `streamletctl --json workers` prints {ctl_bytes})",
        median(&workers_json_ms),
        max(&workers_json_ms)
    );

    let echo_us = echo_sample(&streams);
    println!(
        "echo on {} idle streams: median {:.0} us, max {:.0} us, all bytes back",
        echo_us.len(),
        median(&echo_us) * 1e3,
        max(&echo_us) * 1e3
    );

    let count = streams.len().max(1) as f64;
    let daemon_per = (full.daemon_rss as f64 - empty.daemon_rss as f64) / count;
    let rss_per = (full.streamlets_rss as f64 - empty.streamlets_rss as f64) / count;
    let pss_per = (full.streamlets_pss as f64 - empty.streamlets_pss as f64) / count;
    let cgroup_per = match (full.cgroup, empty.cgroup) {
        (Some(f), Some(e)) => Some((f as f64 - e as f64) / count),
        _ => None,
    };
    // What the daemon's budget keeps besides streams: its limit (the hard
    // one, which it raises its soft limit to) less the streams that fit.
    let overhead = fit.map_or(8 * o.streamlets as usize + 1_024 + 64, |fit| hard as usize - fit);
    let at = |base: u64, per: f64| (base as f64 + per * TARGET) / MIB;
    let lines = Lines { ready_in, fill: &fill, n: streams.len(), placed, empty: &empty, full: &full };
    lines.print_table(
        &status_ms,
        &workers_ms,
        &workers_json_ms,
        json_bytes,
        &echo_us,
        [daemon_per, rss_per, pss_per, cgroup_per.unwrap_or(f64::NAN)],
    );
    println!();
    println!(
        "50,000 streams, if memory grows linearly per stream over the same {} streamlets: daemon RSS {:.0} MiB, \
         streamlets RSS {:.0} MiB (shared pages counted in each), PSS {:.0} MiB{}; the daemon would hold \
         about {} descriptors (50,000 and the {} it holds with no stream), and its budget, which counts {} \
         besides streams here (8 per streamlet, its reserve, its start), takes an RLIMIT_NOFILE of {} or more",
        o.streamlets,
        at(empty.daemon_rss, daemon_per),
        at(empty.streamlets_rss, rss_per),
        at(empty.streamlets_pss, pss_per),
        match (empty.cgroup, cgroup_per) {
            (Some(base), Some(per)) => format!(", cgroups {:.0} MiB", at(base, per)),
            _ => String::new(),
        },
        50_000 + empty.daemon_fds,
        empty.daemon_fds,
        overhead,
        50_000 + overhead,
    );

    let complaints: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    let later = std::fs::read_to_string(&log_path).unwrap_or_default();
    let later: Vec<&str> = later.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
    println!("daemon log: {} warnings or errors at start, {} in all", complaints.len(), later.len());
    for line in later.iter().take(5) {
        println!("  {line}");
    }

    // The clients first, so that the daemon sees its streams end; then the
    // daemon (SIGTERM), then its log.
    drop(streams);
    drop(client);
    drop(runtime);
    drop(daemon);
    drop(log_dir);
}

const MIB: f64 = 1024.0 * 1024.0;

/// Raises this process's soft RLIMIT_NOFILE to the hard one; returns it.
fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
    let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
    // SAFETY: setrlimit reads one rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) }, 0, "raise RLIMIT_NOFILE");
    limit.rlim_max
}

/// Runs `f` with this process's stderr (which the daemon it starts inherits)
/// on the file at `path`, then puts stderr back (and, if `f` panics, shows
/// the file first).
fn with_stderr_to<T>(path: &Path, f: impl FnOnce() -> T) -> T {
    let file = std::fs::File::create(path).unwrap();
    // SAFETY: dup(2) and dup2(2) of descriptors this process holds; stderr is
    // restored before anything here writes to it.
    let saved = unsafe { libc::dup(2) };
    assert!(saved >= 0);
    // SAFETY: as above.
    assert!(unsafe { libc::dup2(file.as_raw_fd(), 2) } >= 0);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    // SAFETY: as above; `saved` is closed once copied back.
    unsafe {
        libc::dup2(saved, 2);
        libc::close(saved);
    }
    out.unwrap_or_else(|panic| {
        eprintln!("{}", std::fs::read_to_string(path).unwrap_or_default());
        std::panic::resume_unwind(panic)
    })
}

/// N in the daemon's "the descriptor limit ... allows about N streams".
fn allowed_streams(log: &str) -> Option<usize> {
    log.lines().find_map(|line| {
        let rest = &line[line.find("allows about ")? + "allows about ".len()..];
        rest.split_whitespace().next()?.parse().ok()
    })
}

struct Fill {
    elapsed: Duration,
    /// Streams per second in each step of STEP streams.
    steps: Vec<f64>,
    refused: usize,
    /// The slowest window: its time, and the streams open before it.
    slowest: (Duration, usize),
}

/// Source addresses the streams come from, in turn. From one address, once
/// about half the local port range (28,232 here) is in use, every connect
/// scans it all: the kernel tries the ports of one parity first, and a
/// `connect` of the bench, not the daemon, became the limit (50 ms a window
/// past 14,080 streams). Connections that differ in source address may share
/// a port.
const SOURCES: [Ipv4Addr; 8] = [
    Ipv4Addr::new(127, 0, 0, 2),
    Ipv4Addr::new(127, 0, 0, 3),
    Ipv4Addr::new(127, 0, 0, 4),
    Ipv4Addr::new(127, 0, 0, 5),
    Ipv4Addr::new(127, 0, 0, 6),
    Ipv4Addr::new(127, 0, 0, 7),
    Ipv4Addr::new(127, 0, 0, 8),
    Ipv4Addr::new(127, 0, 0, 9),
];

/// A TCP connection to `to` from `from` (the port chosen at `connect`, by
/// the whole 4-tuple: IP_BIND_ADDRESS_NO_PORT), that resets when dropped
/// (SO_LINGER 0), so that no TIME_WAIT holds its port after the run.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let SocketAddr::V4(to) = to else { return TcpStream::connect(to) };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let check = |rc: libc::c_int| if rc < 0 { Err(std::io::Error::last_os_error()) } else { Ok(rc) };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: socket(2) returns a new descriptor, owned from here on.
    let fd =
        unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0))?) };
    let one: libc::c_int = 1;
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    let (local, remote) = (sockaddr(from, 0), sockaddr(*to.ip(), to.port()));
    // SAFETY: setsockopt, bind and connect on the socket above, each given a
    // value of the size it says.
    unsafe {
        let opt = |level, name, value: *const libc::c_void, size: usize| {
            check(libc::setsockopt(fd.as_raw_fd(), level, name, value, size as libc::socklen_t))
        };
        opt(libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, (&raw const one).cast(), std::mem::size_of_val(&one))?;
        opt(libc::SOL_SOCKET, libc::SO_LINGER, (&raw const linger).cast(), std::mem::size_of_val(&linger))?;
        check(libc::bind(fd.as_raw_fd(), (&raw const local).cast(), len))?;
        check(libc::connect(fd.as_raw_fd(), (&raw const remote).cast(), len))?;
    }
    Ok(TcpStream::from(fd))
}

/// Opens `n` TCP streams, WINDOW at a time: connect, write a byte, read it
/// back. Stops after the first window with a refusal (the daemon closes a
/// connection it cannot take).
fn fill(addr: SocketAddr, n: usize) -> (Vec<TcpStream>, Fill) {
    let mut streams = Vec::with_capacity(n);
    let mut steps = Vec::new();
    let mut refused = 0;
    let start = Instant::now();
    let mut step_start = start;
    let mut slowest = (Duration::ZERO, 0);
    while streams.len() < n && refused == 0 {
        let batch = WINDOW.min(n - streams.len());
        let (window, before) = (Instant::now(), streams.len());
        let mut flight = Vec::with_capacity(batch);
        for _ in 0..batch {
            let source = SOURCES[(streams.len() + flight.len()) % SOURCES.len()];
            match connect_from(source, addr) {
                Ok(s) => flight.push(s),
                Err(e) => {
                    eprintln!("connect: {e}");
                    refused += 1;
                }
            }
        }
        for s in &mut flight {
            s.set_nodelay(true).unwrap();
            s.write_all(b"x").unwrap();
        }
        for mut s in flight {
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut byte = [0u8];
            match s.read(&mut byte) {
                Ok(1) if byte[0] == b'x' => {
                    let before = streams.len();
                    streams.push(s);
                    if before / STEP != streams.len() / STEP || streams.len() == n {
                        let now = Instant::now();
                        let done = streams.len() - steps.len() * STEP;
                        steps.push(done as f64 / (now - step_start).as_secs_f64());
                        step_start = now;
                    }
                }
                _ => refused += 1,
            }
        }
        if window.elapsed() > slowest.0 {
            slowest = (window.elapsed(), before);
        }
    }
    (streams, Fill { elapsed: start.elapsed(), steps, refused, slowest })
}

/// The daemon and its streamlets, idle, at one moment (CPU over `idle`).
struct Snapshot {
    daemon_rss: u64,
    /// Descriptors the daemon has open.
    daemon_fds: usize,
    /// Cores over the idle window: utime + stime (clock ticks), and the
    /// scheduler's run time of every thread (nanoseconds; ticks miss short
    /// wake-ups such as heartbeats).
    daemon_cpu: f64,
    daemon_run: f64,
    streamlets_run: f64,
    processes: usize,
    streamlets_rss: u64,
    streamlets_pss: u64,
    /// The streamlets' memory cgroups, summed, where readable.
    cgroup: Option<u64>,
    cgroups: usize,
}

impl Snapshot {
    fn take(pid: u32, idle: Duration) -> Snapshot {
        let kids = descendants(pid);
        let run = |pids: &[u32]| pids.iter().map(|&p| run_ns(p)).sum::<u64>();
        let (d0, r0, s0) = (cpu_ticks(pid), run_ns(pid), run(&kids));
        let start = Instant::now();
        std::thread::sleep(idle);
        let elapsed = start.elapsed().as_secs_f64();
        let (d1, r1, s1) = (cpu_ticks(pid), run_ns(pid), run(&kids));
        // SAFETY: sysconf has no side effects.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let kids = descendants(pid);
        let mut paths = BTreeSet::new();
        for &k in &kids {
            if let Some(p) = memory_cgroup(k) {
                paths.insert(p);
            }
        }
        let usages: Vec<u64> = paths.iter().filter_map(|p| cgroup_usage(p)).collect();
        Snapshot {
            daemon_rss: status_kib(pid, "VmRSS:") * 1024,
            daemon_fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
            daemon_cpu: (d1 - d0) as f64 / hz / elapsed,
            daemon_run: r1.saturating_sub(r0) as f64 / 1e9 / elapsed,
            streamlets_run: s1.saturating_sub(s0) as f64 / 1e9 / elapsed,
            processes: kids.len(),
            streamlets_rss: kids.iter().map(|&k| status_kib(k, "VmRSS:")).sum::<u64>() * 1024,
            streamlets_pss: kids.iter().map(|&k| pss_kib(k)).sum::<u64>() * 1024,
            cgroup: (!usages.is_empty()).then(|| usages.iter().sum()),
            cgroups: usages.len(),
        }
    }

    fn print(&self, what: &str) {
        println!(
            "{what}: daemon RSS {:.1} MiB, {} descriptors, CPU {:.3} cores (utime+stime; {:.3} run time); {} streamlet processes: \
             RSS {:.1} MiB, PSS {:.1} MiB, CPU {:.3} cores (run time){}",
            self.daemon_rss as f64 / MIB,
            self.daemon_fds,
            self.daemon_cpu,
            self.daemon_run,
            self.processes,
            self.streamlets_rss as f64 / MIB,
            self.streamlets_pss as f64 / MIB,
            self.streamlets_run,
            match self.cgroup {
                Some(bytes) => format!(", {} memory cgroups {:.1} MiB", self.cgroups, bytes as f64 / MIB),
                None => ", memory cgroups not readable".into(),
            }
        );
    }
}

/// Every process below `pid` (its streamlets and anything they run).
fn descendants(pid: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if let Some(ppid) = stat_fields(p).and_then(|f| f.get(1).and_then(|s| s.parse::<u32>().ok())) {
            children.entry(ppid).or_default().push(p);
        }
    }
    let mut out = Vec::new();
    let mut stack = vec![pid];
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map_or(&[][..], Vec::as_slice) {
            out.push(c);
            stack.push(c);
        }
    }
    out
}

/// /proc/PID/stat's fields after the command's closing parenthesis: state
/// first, ppid second, utime 12th and stime 13th.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(stat[stat.rfind(')')? + 1..].split_whitespace().map(str::to_owned).collect())
}

fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid).map_or(0, |f| f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0))
}

/// Nanoseconds on a CPU of every live thread of `pid` (the first field of
/// each task's schedstat).
fn run_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else { return 0 };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with(key)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

fn pss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Pss:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()))
        .unwrap_or(0)
}

/// The process's memory cgroup directory: v1's memory hierarchy, else v2's.
fn memory_cgroup(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let v1 = text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers.split(',').any(|c| c == "memory").then(|| format!("/sys/fs/cgroup/memory{path}"))
    });
    let v2 = || text.lines().find_map(|l| l.strip_prefix("0::").map(|p| format!("/sys/fs/cgroup{p}")));
    v1.or_else(v2)
}

fn cgroup_usage(dir: &str) -> Option<u64> {
    ["memory.usage_in_bytes", "memory.current"]
        .iter()
        .find_map(|f| std::fs::read_to_string(format!("{dir}/{f}")).ok()?.trim().parse().ok())
}

/// Milliseconds of CALLS `status`, `workers` (postcard) and `workers` (JSON)
/// calls, one after another; and how many streamlets `workers` listed.
async fn control_latency(socket: &Path) -> (Vec<f64>, Vec<f64>, Vec<f64>, usize) {
    let mut postcard = Client::connect(socket).await.unwrap();
    let mut json = Client::connect_with(socket, Encoding::Json, "scale-bench").await.unwrap();
    let (mut status, mut workers, mut workers_json) = (Vec::new(), Vec::new(), Vec::new());
    let mut count = 0;
    for _ in 0..CALLS {
        let t = Instant::now();
        postcard.status().await.unwrap();
        status.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        count = postcard.workers(None).await.unwrap().len();
        workers.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        json.workers(None).await.unwrap();
        workers_json.push(t.elapsed().as_secs_f64() * 1e3);
    }
    (status, workers, workers_json, count)
}

/// Bytes `streamletctl --json workers` prints.
fn streamletctl_workers_bytes(socket: &Path) -> usize {
    std::process::Command::new(env!("CARGO_BIN_EXE_streamletctl"))
        .arg("--socket")
        .arg(socket)
        .arg("--json")
        .arg("workers")
        .output()
        .map_or(0, |out| out.stdout.len())
}

/// Milliseconds of one round trip (32 bytes out, the same back) on each of
/// SAMPLE streams spread over all of them.
fn echo_sample(streams: &[TcpStream]) -> Vec<f64> {
    let mut out = Vec::new();
    if streams.is_empty() {
        return out;
    }
    let stride = (streams.len() / SAMPLE).max(1);
    for (i, mut s) in streams.iter().step_by(stride).take(SAMPLE).enumerate() {
        let payload = [b'a' + (i % 26) as u8; 32];
        let t = Instant::now();
        s.write_all(&payload).unwrap();
        let mut back = [0u8; 32];
        s.read_exact(&mut back).unwrap();
        out.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(back, payload, "echo on stream {i} of the sample");
    }
    out
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

struct Lines<'a> {
    ready_in: Duration,
    fill: &'a Fill,
    n: usize,
    placed: usize,
    empty: &'a Snapshot,
    full: &'a Snapshot,
}

impl Lines<'_> {
    fn print_table(
        &self,
        status: &[f64],
        workers: &[f64],
        workers_json: &[f64],
        json_bytes: usize,
        echo: &[f64],
        per: [f64; 4],
    ) {
        let mib = |b: u64| b as f64 / MIB;
        let steps = {
            let mut s = self.fill.steps.clone();
            s.sort_by(f64::total_cmp);
            s
        };
        println!();
        println!("| | value |");
        println!("| --- | --- |");
        println!("| streamlets ready (from the daemon's start) | {:.2} s |", self.ready_in.as_secs_f64());
        println!("| streams open (the daemon counts) | {} ({}) |", self.n, self.placed);
        println!(
            "| open rate while filling: whole fill (steps of {STEP}: min-max) | {:.0}/s ({:.0}-{:.0}) |",
            self.n as f64 / self.fill.elapsed.as_secs_f64(),
            steps.first().copied().unwrap_or(f64::NAN),
            steps.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "| daemon RSS: 0 streams / full | {:.1} / {:.1} MiB |",
            mib(self.empty.daemon_rss),
            mib(self.full.daemon_rss)
        );
        println!("| daemon descriptors: 0 streams / full | {} / {} |", self.empty.daemon_fds, self.full.daemon_fds);
        println!(
            "| daemon CPU idle, utime+stime: 0 streams / full | {:.3} / {:.3} cores |",
            self.empty.daemon_cpu, self.full.daemon_cpu
        );
        println!(
            "| daemon CPU idle, run time: 0 streams / full | {:.3} / {:.3} cores |",
            self.empty.daemon_run, self.full.daemon_run
        );
        println!(
            "| streamlets' CPU idle, run time: 0 streams / full | {:.3} / {:.3} cores |",
            self.empty.streamlets_run, self.full.streamlets_run
        );
        println!(
            "| streamlets' RSS summed: 0 streams / full | {:.0} / {:.0} MiB |",
            mib(self.empty.streamlets_rss),
            mib(self.full.streamlets_rss)
        );
        println!(
            "| streamlets' PSS summed: 0 streams / full | {:.0} / {:.0} MiB |",
            mib(self.empty.streamlets_pss),
            mib(self.full.streamlets_pss)
        );
        if let (Some(e), Some(f)) = (self.empty.cgroup, self.full.cgroup) {
            println!("| streamlets' memory cgroups: 0 streams / full | {:.0} / {:.0} MiB |", mib(e), mib(f));
        }
        println!("| `status`: median / max of {CALLS} | {:.2} / {:.2} ms |", median(status), max(status));
        println!("| `workers` (postcard): median / max of {CALLS} | {:.2} / {:.2} ms |", median(workers), max(workers));
        println!(
            "| `workers` (JSON, {:.0} KB): median / max of {CALLS} | {:.2} / {:.2} ms |",
            json_bytes as f64 / 1e3,
            median(workers_json),
            max(workers_json)
        );
        println!(
            "| echo on {} idle streams: median / max | {:.0} / {:.0} us |",
            echo.len(),
            median(echo) * 1e3,
            max(echo) * 1e3
        );
        println!(
            "| daemon descriptors per stream | {:.2} |",
            (self.full.daemon_fds as f64 - self.empty.daemon_fds as f64) / self.n.max(1) as f64
        );
        println!("| daemon RSS per stream | {:.2} KiB |", per[0] / 1024.0);
        println!("| streamlets' RSS / PSS per stream | {:.2} / {:.2} KiB |", per[1] / 1024.0, per[2] / 1024.0);
        if per[3].is_finite() {
            println!("| streamlets' cgroup memory per stream | {:.2} KiB |", per[3] / 1024.0);
        }
    }
}
