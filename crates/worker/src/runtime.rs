//! The streamlet's main loop.

use std::collections::HashMap;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use streamlet_proto::channel::{Channel, ChannelError};
use streamlet_proto::worker::{Assign, Ended, FromWorker, Init, StreamCounters, ToWorker, MAX_STATS_PER_MESSAGE};
use streamlet_proto::{EndReason, StreamId};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::handler::{HandlerFactory, HandlerResult, StreamContext};
use crate::stream::{Counters, Stream};

/// How long a new streamlet waits for its `Init`.
const INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The control channel's descriptor number (see `streamlet_sandbox::CONTROL_FD`).
const CONTROL_FD: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("control channel: {0}")]
    Channel(#[from] ChannelError),
    #[error("control channel: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("handler {kind}: {reason}")]
    Handler { kind: &'static str, reason: String },
}

struct Running {
    abort: AbortHandle,
    counters: Arc<Counters>,
    reported: (u64, u64),
    rate: Arc<AtomicU64>,
}

/// The whole of a streamlet binary's `main`: takes descriptor 3 (or
/// `--control-fd N`), runs a single-threaded runtime, and maps the outcome to an
/// exit code (0 when the daemon went away, 2 on a protocol or handler error).
pub fn run_main<F>(factory: F) -> ExitCode
where
    F: Fn(&streamlet_proto::worker::HandlerSpec) -> Result<Arc<dyn crate::Handler>, String> + Send + Sync + 'static,
{
    let mut fd = CONTROL_FD;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--control-fd", Some(n)) => fd = n,
            _ => {
                eprintln!("streamlet-worker: usage: streamlet-worker [--control-fd N] (started by streamletd)");
                return ExitCode::from(64);
            }
        }
    }
    harden_and_name();
    // SAFETY: fcntl(F_GETFD) only checks that the descriptor is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        eprintln!("streamlet-worker: descriptor {fd} is not open: this program is started by streamletd");
        return ExitCode::from(64);
    }
    // SAFETY: the descriptor is open (checked above) and inherited for us
    // alone; nothing else in this process owns it.
    let control = unsafe { OwnedFd::from_raw_fd(fd) };
    // Inherited without close-on-exec so that this process gets it; set it
    // now, so that no command a handler runs (`exec`) inherits the channel.
    // SAFETY: fcntl(F_SETFD) on a descriptor we own.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        eprintln!("streamlet-worker: cannot set close-on-exec on descriptor {fd}: {}", std::io::Error::last_os_error());
        return ExitCode::from(1);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("streamlet-worker: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(control, &factory)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("streamlet-worker[{}]: {e}", std::process::id());
            ExitCode::from(2)
        }
    }
}

/// Closes the process to its own commands and names it.
///
/// Not dumpable: a command it runs (`exec`) has its uid but can then neither
/// open its `/proc/PID/mem` (nor `environ`, `fd`, ...) nor trace it, so one
/// stream's command cannot read or rewrite the streamlet serving the others.
/// (Commands exec'd later are dumpable again: what they share is said in
/// SECURITY.md.) And its name: exec'd through `/proc/self/fd/N`, it would
/// show in `ps` as `N`; it takes its `argv[0]`'s file name instead.
fn harden_and_name() {
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } < 0 {
        eprintln!("streamlet-worker: cannot make the process non-dumpable: {}", std::io::Error::last_os_error());
    }
    let arg0 = std::env::args_os().next().unwrap_or_default();
    let name = std::path::Path::new(&arg0).file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
    if name.is_empty() {
        return;
    }
    // The kernel keeps 15 bytes and a NUL.
    let mut comm = [0u8; 16];
    let len = name.len().min(15);
    comm[..len].copy_from_slice(&name[..len]);
    // SAFETY: prctl(PR_SET_NAME) reads a NUL-terminated buffer of 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, comm.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// Serves the daemon on `control` until it goes away.
pub async fn run(control: OwnedFd, factory: &HandlerFactory) -> Result<(), WorkerError> {
    // The init of its pid namespace (as the daemon starts it when root):
    // whatever a command leaves behind is reparented to it, to reap.
    let reaper = (std::process::id() == 1).then(|| tokio::spawn(orphans::reap()));
    let result = run_until_done(control, factory).await;
    if let Some(reaper) = reaper {
        reaper.abort();
    }
    result
}

async fn run_until_done(control: OwnedFd, factory: &HandlerFactory) -> Result<(), WorkerError> {
    match serve(control, factory).await {
        // The daemon vanished while we were writing to it: the same as the end
        // of file that a read would have seen.
        Err(WorkerError::Io(e) | WorkerError::Channel(ChannelError::Io(e)))
            if matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn serve(control: OwnedFd, factory: &HandlerFactory) -> Result<(), WorkerError> {
    let channel = Channel::new(control)?;
    let init = match tokio::time::timeout(INIT_TIMEOUT, channel.recv::<ToWorker>()).await {
        Ok(Ok(Some((ToWorker::Init(init), None)))) => init,
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some((other, _)))) => return Err(WorkerError::Protocol(format!("expected Init first, got {other:?}"))),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => return Err(WorkerError::Protocol(format!("no Init within {INIT_TIMEOUT:?}"))),
    };
    let Init { pool, handler: spec, stats_interval_ms, heartbeat_interval_ms, .. } = init;
    let handler = factory(&spec).map_err(|reason| WorkerError::Handler { kind: spec.kind(), reason })?;
    channel.send(&FromWorker::Ready { pid: std::process::id() }, None).await?;

    let pool: Arc<str> = pool.into();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(StreamId, HandlerResult)>();
    let mut streams: HashMap<StreamId, Running> = HashMap::new();
    // Upstream connections (`relay`) that came ahead of their `Assign`.
    let mut upstreams: HashMap<StreamId, OwnedFd> = HashMap::new();
    let period = Duration::from_millis(u64::from(stats_interval_ms.max(1)));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // On the same thread as the handlers: a handler that blocks it stops the
    // heartbeats, and the daemon kills the streamlet as hung.
    let mut pulse = tokio::time::interval(Duration::from_millis(u64::from(heartbeat_interval_ms.max(1))));
    pulse.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        tokio::select! {
            message = channel.recv::<ToWorker>() => match message? {
                None => return Ok(()),
                Some((ToWorker::Upstream { stream }, Some(fd))) => {
                    upstreams.insert(stream, fd);
                }
                Some((ToWorker::Upstream { stream }, None)) => {
                    return Err(WorkerError::Protocol(format!("Upstream of stream {stream} without a descriptor")));
                }
                Some((ToWorker::Assign(assign), Some(fd))) => {
                    let stream = assign.stream;
                    let upstream = upstreams.remove(&stream);
                    match start(&*handler, &pool, assign, fd, upstream, &done_tx) {
                        Ok(running) => {
                            streams.insert(stream, running);
                        }
                        Err(e) => {
                            let ended = Ended { stream, reason: EndReason::IoError { message: e.to_string() }, bytes_in: 0, bytes_out: 0 };
                            channel.send(&FromWorker::Ended(ended), None).await?;
                        }
                    }
                }
                Some((ToWorker::Assign(assign), None)) => {
                    return Err(WorkerError::Protocol(format!("Assign of stream {} without a descriptor", assign.stream)));
                }
                Some((ToWorker::Close { stream }, _)) => {
                    if let Some(running) = streams.remove(&stream) {
                        running.abort.abort();
                        flush_dropped_frames(&channel, stream, &running).await?;
                        channel.send(&FromWorker::Ended(ended(stream, &running, EndReason::Closed)), None).await?;
                    }
                }
                Some((ToWorker::UpdateRate { stream, rate }, _)) => {
                    if let Some(running) = streams.get(&stream) {
                        running.rate.store(rate, Ordering::Relaxed);
                    }
                }
                Some((ToWorker::Init(_), _)) => return Err(WorkerError::Protocol("a second Init".into())),
            },
            Some((stream, result)) = done_rx.recv() => {
                // Absent when a Close already reported it.
                if let Some(running) = streams.remove(&stream) {
                    let reason = match result {
                        Ok(()) => EndReason::Completed,
                        Err(e) => e.end_reason(),
                    };
                    flush_dropped_frames(&channel, stream, &running).await?;
                    channel.send(&FromWorker::Ended(ended(stream, &running, reason)), None).await?;
                }
            }
            _ = tick.tick(), if stats_interval_ms > 0 => report_stats(&channel, &mut streams).await?,
            _ = pulse.tick(), if heartbeat_interval_ms > 0 => channel.send(&FromWorker::Heartbeat, None).await?,
        }
    }
}

fn start(
    handler: &dyn crate::Handler,
    pool: &Arc<str>,
    assign: Assign,
    fd: OwnedFd,
    upstream: Option<OwnedFd>,
    done: &mpsc::UnboundedSender<(StreamId, HandlerResult)>,
) -> std::io::Result<Running> {
    let counters = Arc::new(Counters::default());
    let mut stream = Stream::new(fd, counters.clone())?;
    let rate = Arc::new(AtomicU64::new(assign.rate.unwrap_or(0)));
    stream.pace(rate.clone());
    if let Some(limit) = assign.ingress {
        stream.limit_reads(limit);
    }
    let ctx = StreamContext {
        stream: assign.stream,
        pool: pool.clone(),
        tenant: assign.tenant,
        labels: assign.labels,
        rate: rate.clone(),
        upstream: upstream.map(Arc::new),
    };
    let id = assign.stream;
    let future = handler.serve(stream, ctx);
    let done = done.clone();
    let task = tokio::spawn(async move {
        let result = future.await;
        let _ = done.send((id, result));
    });
    Ok(Running { abort: task.abort_handle(), counters, reported: (0, 0), rate })
}

fn ended(stream: StreamId, running: &Running, reason: EndReason) -> Ended {
    let (bytes_in, bytes_out) = running.counters.snapshot();
    Ended { stream, reason, bytes_in, bytes_out }
}

/// `Ended` carries no frame counts: frames a stream dropped since the last
/// report go in one last `Stats`, so that the pool counts them.
async fn flush_dropped_frames(channel: &Channel, stream: StreamId, running: &Running) -> Result<(), WorkerError> {
    let corrupt_frames = running.counters.corrupt_frames.load(Ordering::Relaxed);
    if corrupt_frames == 0 {
        return Ok(());
    }
    let (bytes_in, bytes_out) = running.counters.snapshot();
    let stalled_us = running.counters.stalled_us.load(Ordering::Relaxed);
    let counters = StreamCounters { stream, bytes_in, bytes_out, stalled_us, corrupt_frames };
    channel.send(&FromWorker::Stats { streams: vec![counters] }, None).await?;
    Ok(())
}

async fn report_stats(channel: &Channel, streams: &mut HashMap<StreamId, Running>) -> Result<(), WorkerError> {
    let mut moved = Vec::new();
    for (id, running) in streams.iter_mut() {
        let now = running.counters.snapshot();
        if now != running.reported {
            running.reported = now;
            let stalled_us = running.counters.stalled_us.load(Ordering::Relaxed);
            let corrupt_frames = running.counters.corrupt_frames.load(Ordering::Relaxed);
            moved.push(StreamCounters { stream: *id, bytes_in: now.0, bytes_out: now.1, stalled_us, corrupt_frames });
        }
    }
    for chunk in moved.chunks(MAX_STATS_PER_MESSAGE) {
        channel.send(&FromWorker::Stats { streams: chunk.to_vec() }, None).await?;
    }
    Ok(())
}

pub(crate) mod orphans;
