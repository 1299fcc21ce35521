//! `streamletd demo`: a narrated tour on the embedded default.
//!
//! It starts a real daemon (this binary, in a child process), runs the TCP
//! gateway in-process, opens streams through it, kills a streamlet, watches
//! the replacement, and shuts everything down, leaving no process, socket or
//! scratch file behind.

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use streamlet_client::gateway::{Gateway, GatewayEvent};
use streamlet_client::{table, Client};
use streamlet_proto::{StreamEnded, StreamId, WorkerInfo, WorkerState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const CLIENTS: usize = 6;
const WAIT: Duration = Duration::from_secs(10);

pub fn run() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("streamletd demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tour()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamletd demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The daemon child; killed if the tour fails half-way.
struct DaemonProcess(Option<Child>);

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

async fn tour() -> Result<()> {
    let scratch =
        tempfile::Builder::new().prefix("streamlet-demo-").tempdir().context("creating a scratch directory")?;
    let socket = scratch.path().join("streamletd.sock");
    println!("streamlet demo: a daemon on the embedded default (pool \"echo\": 2 streamlets x 8 streams),");
    println!("a TCP gateway, and {CLIENTS} clients.");
    println!("scratch directory: {}", scratch.path().display());

    // 1. The daemon.
    let mut daemon = DaemonProcess(Some(start_daemon(&socket)?));
    let daemon_pid = daemon.0.as_ref().map_or(0, Child::id);
    let mut pids: BTreeSet<u32> = BTreeSet::from([daemon_pid]);
    let mut client = connect(&socket).await?;
    let workers =
        wait_workers(&mut client, |w| w.iter().filter(|w| w.state == WorkerState::Ready).count() == 2).await?;
    pids.extend(workers.iter().map(|w| w.pid));
    println!("\n== 1. streamletd (pid {daemon_pid}) listens on {} and has forked its streamlets:", socket.display());
    print!("{}", table::workers_table(&workers));

    // 2. The gateway.
    let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the gateway")?;
    let addr = listener.local_addr()?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let gateway = Gateway::new(&socket, "echo").tenant(Some("demo".into())).events(events_tx);
    let gateway_task = tokio::spawn(gateway.run(listener));
    println!("\n== 2. a gateway listens on {addr} (outside the demo: nc {} {})", addr.ip(), addr.port());
    println!("   and hands each TCP connection to streamletd, which places it on a streamlet:");

    // 3. Clients.
    let mut conns: Vec<(SocketAddr, TcpStream)> = Vec::new();
    let mut placed: HashMap<SocketAddr, (StreamId, u64)> = HashMap::new();
    for i in 0..CLIENTS {
        let mut tcp = TcpStream::connect(addr).await?;
        let local = tcp.local_addr()?;
        let message = format!("hello from client {i}\n");
        tcp.write_all(message.as_bytes()).await?;
        let mut echoed = vec![0u8; message.len()];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut echoed)).await.context("waiting for the echo")??;
        while !placed.contains_key(&local) {
            match tokio::time::timeout(WAIT, events.recv()).await.context("waiting for the placement")? {
                Some(GatewayEvent::Placed { peer, opened }) => {
                    placed.insert(peer, (opened.stream, opened.worker.0));
                }
                Some(GatewayEvent::Refused { error, .. }) => bail!("the daemon refused a client: {error}"),
                Some(_) => {}
                None => bail!("the gateway stopped"),
            }
        }
        let (stream, worker) = placed[&local];
        println!(
            "   client {i} ({local}) -> stream {stream} on streamlet {worker}, echoed {:?}",
            String::from_utf8_lossy(&echoed).trim_end()
        );
        conns.push((local, tcp));
    }
    // Streamlets report what their streams carried every stats_interval (a
    // second by default): wait for the report, so the table shows it.
    let deadline = Instant::now() + WAIT;
    let streams = loop {
        let streams = client.streams(None).await?;
        if streams.iter().all(|s| s.bytes_in > 0) || Instant::now() > deadline {
            break streams;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("\n   streamletctl streams (byte counts as the streamlets last reported them):");
    print!("{}", indent(&table::streams_table(&streams)));
    println!("   streamletctl workers:");
    print!("{}", indent(&table::workers_table(&client.workers(None).await?)));

    // 4. A streamlet dies.
    let workers = client.workers(None).await?;
    let victim = workers.iter().max_by_key(|w| w.streams).context("no streamlet")?.clone();
    let victims: BTreeSet<StreamId> =
        placed.values().filter(|(_, worker)| *worker == victim.id.0).map(|(stream, _)| *stream).collect();
    println!(
        "\n== 3. SIGKILL streamlet {} (pid {}), which serves streams {}:",
        victim.id,
        victim.pid,
        victims.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
    );
    let killed_at = Instant::now();
    // SAFETY: kill(2) on a pid the daemon reported as its live child.
    if unsafe { libc::kill(victim.pid as i32, libc::SIGKILL) } != 0 {
        bail!("cannot kill streamlet pid {}: {}", victim.pid, std::io::Error::last_os_error());
    }
    let mut ended: Vec<StreamEnded> = Vec::new();
    while ended.len() < victims.len() {
        match tokio::time::timeout(WAIT, events.recv()).await.context("waiting for the streams to end")? {
            Some(GatewayEvent::Ended(e)) => ended.push(e),
            Some(_) => {}
            None => bail!("the gateway stopped"),
        }
    }
    for e in &ended {
        println!("   stream {} ended: {} ({})", e.stream, e.reason, table::human::end_counts(e));
    }
    for (i, (local, tcp)) in conns.iter_mut().enumerate() {
        if victims.contains(&placed[local].0) {
            let mut buf = [0u8; 1];
            let n = tokio::time::timeout(WAIT, tcp.read(&mut buf)).await.context("waiting for the close")??;
            if n != 0 {
                bail!("client {i} should have been closed");
            }
            println!("   client {i}: its connection was closed by streamletd");
        }
    }
    let workers = wait_workers(&mut client, |w| {
        let serving: Vec<_> = w.iter().filter(|w| w.state != WorkerState::Spare).collect();
        serving.len() == 2 && serving.iter().all(|w| w.state == WorkerState::Ready && w.id != victim.id)
    })
    .await?;
    let replacement = workers.iter().find(|w| w.restarts > 0).context("no replacement")?;
    pids.insert(replacement.pid);
    println!(
        "   streamlet {} (pid {}) replaced it, ready {} ms after the kill:",
        replacement.id,
        replacement.pid,
        killed_at.elapsed().as_millis()
    );
    print!("{}", indent(&table::workers_table(&workers)));

    // 5. The others never noticed.
    println!("\n== 4. the other streams never noticed:");
    for (i, (local, tcp)) in conns.iter_mut().enumerate() {
        if victims.contains(&placed[local].0) {
            continue;
        }
        tcp.write_all(b"still here\n").await?;
        let mut buf = [0u8; 11];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut buf)).await.context("waiting for the echo")??;
        println!("   client {i} on stream {}: echoed {:?}", placed[local].0, String::from_utf8_lossy(&buf).trim_end());
    }

    // 6. Shut down.
    println!("\n== 5. SIGTERM streamletd: it ends its streams, stops its streamlets and removes its socket.");
    drop(conns);
    gateway_task.abort();
    drop(client);
    let mut child = daemon.0.take().context("daemon already gone")?;
    // SAFETY: kill(2) on our own child, not yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    if !status.success() {
        bail!("streamletd exited with {status}");
    }
    for pid in &pids {
        wait_gone(*pid).await?;
    }
    if socket.exists() {
        bail!("the socket {} is still there", socket.display());
    }
    let path = scratch.path().to_owned();
    scratch.close().context("removing the scratch directory")?;
    println!("processes: {}", pids.iter().map(|p| p.to_string()).collect::<Vec<_>>().join(" "));
    println!("all of them have exited; {} is removed. Done.", path.display());
    Ok(())
}

fn start_daemon(socket: &Path) -> Result<Child> {
    let exe = std::env::current_exe().context("finding streamletd")?;
    let mut child = Command::new(exe)
        .arg("--socket")
        .arg(socket)
        // The tour's streams are no demand to learn from: its history stays
        // in the scratch directory.
        .env("STATE_DIRECTORY", socket.with_file_name("state"))
        .env("STREAMLET_LOG", std::env::var("STREAMLET_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting streamletd")?;
    let stdout = child.stdout.take().context("daemon stdout")?;
    let mut banner = String::new();
    BufReader::new(stdout).read_line(&mut banner).context("reading the daemon's banner")?;
    if banner.is_empty() {
        let _ = child.kill();
        let _ = child.wait();
        bail!("streamletd exited before it listened");
    }
    Ok(child)
}

async fn connect(socket: &Path) -> Result<Client> {
    Client::connect(socket).await.with_context(|| format!("connecting to {}", socket.display()))
}

async fn wait_workers(client: &mut Client, done: impl Fn(&[WorkerInfo]) -> bool) -> Result<Vec<WorkerInfo>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let workers = client.workers(None).await?;
        if done(&workers) {
            return Ok(workers);
        }
        if Instant::now() > deadline {
            bail!("streamlets not ready after {WAIT:?}:\n{}", table::workers_table(&workers));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_gone(pid: u32) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let gone = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
        };
        if gone {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("process {pid} is still running");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("   {l}\n")).collect()
}
