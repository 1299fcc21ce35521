//! A streamlet binary that misbehaves on request, for the sandbox's tests.
//! Never configure it for real traffic.
//!
//! It is also a small example of a worker binary of your own: a `main` that
//! hands `run_main` a factory of handlers. Each stream's `behave` label picks
//! what it does; without one it echoes.
//!
//! | `behave` | what it tries |
//! | --- | --- |
//! | `memory-bomb` | allocates and touches memory until something stops it |
//! | `fork-bomb` | forks until fork fails, then reports `forked N: <error>` |
//! | `spin` | burns CPU for `seconds` (label), then reports `spun` |
//! | `connect` | connects to `127.0.0.1:<port>` (label), reports the outcome |
//! | `privilege` | ptrace, mount, setuid(0), unshare, raising its pacing rate |
//! | `escape` | signals `pids` (label, comma-separated) and opens `path` for writing |
//! | `status` | writes its `/proc/self/status` |
//! | `tmp` | writes a file called `name` (label) in /tmp, /var/tmp and /dev/shm |
//! | `exit` | exits the whole streamlet with `code` (label) |
//! | `segv` | dies of SIGSEGV |
//! | `garbage` | writes bytes that are no message to its control channel (fd 3) |
//! | `block` | blocks its thread (and so its heartbeats) for `seconds` (label) |
//! | `vsock` | makes an `AF_VSOCK` socket and binds `port` (label) on any CID, and holds it |
//! | `ptmx` | opens `/dev/ptmx` up to `count` (label) times and holds what it got |
//! | `dev` | lists `/dev` |
//! | `proc` | its own pid and the number of processes `/proc` shows it |
//! | `create` | creates `path` (label), mode 0600 |

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use streamlet_worker::{BoxFuture, Echo, Handler, HandlerResult, Stream, StreamContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Hostile;

fn outcome(rc: libc::c_long) -> String {
    if rc < 0 {
        let e = io::Error::last_os_error();
        errno_name(e.raw_os_error().unwrap_or(0)).to_owned()
    } else {
        "ok".to_owned()
    }
}

fn errno_name(errno: i32) -> &'static str {
    match errno {
        libc::EPERM => "EPERM",
        libc::EACCES => "EACCES",
        libc::EAGAIN => "EAGAIN",
        libc::ENETUNREACH => "ENETUNREACH",
        libc::ECONNREFUSED => "ECONNREFUSED",
        libc::EROFS => "EROFS",
        libc::ESRCH => "ESRCH",
        libc::ENOENT => "ENOENT",
        libc::EINVAL => "EINVAL",
        libc::ENXIO => "ENXIO",
        libc::ENOTTY => "ENOTTY",
        libc::EAFNOSUPPORT => "EAFNOSUPPORT",
        libc::EADDRINUSE => "EADDRINUSE",
        libc::ENOSPC => "ENOSPC",
        libc::EMFILE => "EMFILE",
        libc::EIO => "EIO",
        _ => "other",
    }
}

fn privilege(stream: &Stream) -> String {
    let mut lines = Vec::new();
    // SAFETY: plain system calls with constant or locally owned arguments;
    // their failure is the point.
    unsafe {
        lines.push(format!("ptrace: {}", outcome(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0))));
        let rc = libc::mount(c"none".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null());
        lines.push(format!("mount: {}", outcome(rc as libc::c_long)));
        lines.push(format!("setuid: {}", outcome(libc::setuid(0) as libc::c_long)));
        lines.push(format!("unshare: {}", outcome(libc::unshare(libc::CLONE_NEWNET) as libc::c_long)));
        let rate: u64 = u64::MAX;
        let rc = libc::setsockopt(
            stream.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MAX_PACING_RATE,
            (&rate as *const u64).cast(),
            std::mem::size_of::<u64>() as libc::socklen_t,
        );
        lines.push(format!("pacing: {}", outcome(rc as libc::c_long)));
        let linger = libc::linger { l_onoff: 1, l_linger: 30 };
        let rc = libc::setsockopt(
            stream.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        lines.push(format!("linger: {}", outcome(rc as libc::c_long)));
        let tty = libc::open(c"/dev/tty".as_ptr(), libc::O_RDWR);
        lines.push(format!("devtty: {}", outcome(tty as libc::c_long)));
        let byte = b'x';
        let rc = libc::ioctl(2, libc::TIOCSTI, &byte as *const u8);
        lines.push(format!("tiocsti: {}", outcome(rc as libc::c_long)));
    }
    let stderr = std::fs::read_link("/proc/self/fd/2").map(|p| p.display().to_string()).unwrap_or_default();
    lines.push(format!("stderr: {stderr}"));
    lines.join("\n") + "\n"
}

fn fork_bomb() -> String {
    let mut forked = 0;
    loop {
        // SAFETY: the child only pauses, an async-signal-safe call, forever.
        let pid = unsafe { libc::fork() };
        match pid {
            0 => loop {
                // SAFETY: pause has no preconditions.
                unsafe { libc::pause() };
            },
            p if p > 0 => forked += 1,
            _ => {
                return format!(
                    "forked {forked}: {}\n",
                    errno_name(io::Error::last_os_error().raw_os_error().unwrap_or(0))
                )
            }
        }
        if forked >= 10_000 {
            return format!("forked {forked}: never stopped\n");
        }
    }
}

fn escape(ctx: &StreamContext) -> String {
    let mut lines = Vec::new();
    for pid in ctx.labels.get("pids").map(String::as_str).unwrap_or("").split(',').filter(|p| !p.is_empty()) {
        let pid: i32 = pid.parse().unwrap_or(0);
        // SAFETY: kill(2); its refusal is what is tested.
        lines.push(format!("kill {pid}: {}", outcome(unsafe { libc::kill(pid, libc::SIGKILL) } as libc::c_long)));
    }
    if let Some(path) = ctx.labels.get("path") {
        let result = std::fs::OpenOptions::new().append(true).open(path);
        lines.push(format!(
            "write {path}: {}",
            match result {
                Ok(_) => "ok",
                Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
            }
        ));
    }
    lines.join("\n") + "\n"
}

/// An `AF_VSOCK` socket bound to `port` on any CID, left open until the
/// streamlet exits.
fn vsock(ctx: &StreamContext) -> String {
    let port: u32 = ctx.labels.get("port").and_then(|p| p.parse().ok()).unwrap_or(0);
    // SAFETY: socket(2) with constant arguments.
    let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return format!("vsock socket: {}\n", outcome(-1));
    }
    // SAFETY: sockaddr_vm is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
    addr.svm_family = libc::AF_VSOCK as libc::sa_family_t;
    addr.svm_cid = libc::VMADDR_CID_ANY;
    addr.svm_port = port;
    // SAFETY: bind(2) of our socket to an address that lives across the call.
    let rc = unsafe {
        libc::bind(
            fd,
            (&addr as *const libc::sockaddr_vm).cast(),
            std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t,
        )
    };
    format!("vsock socket: ok\nvsock bind: {}\n", outcome(rc as libc::c_long))
}

/// Opens `/dev/ptmx` up to `count` times; what it got stays open.
fn ptmx(ctx: &StreamContext) -> String {
    let count: usize = ctx.labels.get("count").and_then(|c| c.parse().ok()).unwrap_or(1);
    let mut opened = 0;
    while opened < count {
        // SAFETY: open(2) of a constant path; the descriptor is kept on purpose.
        if unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) } < 0 {
            return format!("ptmx: opened {opened}: {}\n", outcome(-1));
        }
        opened += 1;
    }
    format!("ptmx: opened {opened}: ok\n")
}

fn dev() -> String {
    let mut names: Vec<String> = std::fs::read_dir("/dev")
        .map(|dir| dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    format!("dev: {}\n", names.join(" "))
}

fn proc_view() -> String {
    let procs = std::fs::read_dir("/proc")
        .map(|dir| dir.flatten().filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()).count())
        .unwrap_or(0);
    format!("pid: {}\nprocs: {procs}\n", std::process::id())
}

fn create(ctx: &StreamContext) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let path = ctx.labels.get("path").cloned().unwrap_or_default();
    let result = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
    let outcome = match result {
        Ok(_) => "ok",
        Err(e) => errno_name(e.raw_os_error().unwrap_or(0)),
    };
    format!("create {path}: {outcome}\n")
}

impl Handler for Hostile {
    fn serve(&self, mut stream: Stream, ctx: StreamContext) -> BoxFuture<HandlerResult> {
        let behave = ctx.labels.get("behave").cloned().unwrap_or_default();
        if behave.is_empty() {
            return Echo.serve(stream, ctx);
        }
        Box::pin(async move {
            let report = match behave.as_str() {
                "memory-bomb" => {
                    let mut hoard: Vec<Vec<u8>> = Vec::new();
                    loop {
                        hoard.push(vec![1u8; 1 << 20]);
                        if hoard.len() % 64 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                }
                "fork-bomb" => fork_bomb(),
                "spin" => {
                    let seconds: u64 = ctx.labels.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(3);
                    let until = Instant::now() + Duration::from_secs(seconds);
                    let mut x = 0u64;
                    while Instant::now() < until {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        std::hint::black_box(x);
                    }
                    "spun\n".to_owned()
                }
                "connect" => {
                    let port = ctx.labels.get("port").cloned().unwrap_or_default();
                    match std::net::TcpStream::connect(format!("127.0.0.1:{port}")) {
                        Ok(_) => "connect: ok\n".to_owned(),
                        Err(e) => format!("connect: {}\n", errno_name(e.raw_os_error().unwrap_or(0))),
                    }
                }
                "privilege" => privilege(&stream),
                "escape" => escape(&ctx),
                "status" => std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
                "vsock" => vsock(&ctx),
                "ptmx" => ptmx(&ctx),
                "dev" => dev(),
                "proc" => proc_view(),
                "create" => create(&ctx),
                "tmp" => {
                    let name = ctx.labels.get("name").cloned().unwrap_or_default();
                    let mut out = String::new();
                    for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
                        let written = std::fs::write(format!("{dir}/{name}"), "left behind").is_ok();
                        out.push_str(&format!("{dir}: {}\n", if written { "written" } else { "refused" }));
                    }
                    out
                }
                "exit" => {
                    let code: i32 = ctx.labels.get("code").and_then(|c| c.parse().ok()).unwrap_or(3);
                    std::process::exit(code);
                }
                "segv" => {
                    // A real fault (a raised SIGSEGV would only reach Rust's
                    // stack-overflow handler, which returns).
                    let null = std::hint::black_box(std::ptr::null_mut::<u8>());
                    // SAFETY: none; the fault is the point, and the process dies of it.
                    unsafe { null.write_volatile(1) };
                    "survived SIGSEGV\n".to_owned()
                }
                "garbage" => {
                    let junk = [0xffu8; 37];
                    // SAFETY: a write of a live buffer to the control channel's descriptor.
                    let rc = unsafe { libc::write(3, junk.as_ptr().cast(), junk.len()) };
                    format!("garbage: {}\n", outcome(rc as libc::c_long))
                }
                "block" => {
                    let seconds: u64 = ctx.labels.get("seconds").and_then(|s| s.parse().ok()).unwrap_or(5);
                    std::thread::sleep(Duration::from_secs(seconds));
                    "unblocked\n".to_owned()
                }
                other => format!("unknown behaviour {other}\n"),
            };
            stream.write_all(report.as_bytes()).await?;
            stream.shutdown().await?;
            // Hold the stream until the client hangs up.
            let mut sink = [0u8; 64];
            while stream.read(&mut sink).await? > 0 {}
            Ok(())
        })
    }
}

fn main() -> std::process::ExitCode {
    streamlet_worker::run_main(|_spec| Ok(Arc::new(Hostile) as Arc<dyn Handler>))
}
