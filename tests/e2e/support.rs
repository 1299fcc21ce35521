//! The fixture: a real `streamletd` binary on a temporary socket.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use streamlet_client::Client;
use streamlet_proto::fdpass::send_with_fds;
use streamlet_proto::frame::header;

pub const STREAMLETD: &str = env!("CARGO_BIN_EXE_streamletd");
pub const STREAMLETCTL: &str = env!("CARGO_BIN_EXE_streamletctl");
pub const GATEWAY: &str = env!("CARGO_BIN_EXE_streamlet-gateway");

/// A pool of two streamlets with room for 64 streams each (and no spare:
/// the listings show exactly two).
pub const TWO_BY_64: &str = r#"
[daemon]
shutdown_timeout = "2s"
stats_interval = "50ms"

[pools.echo]
handler = { kind = "echo" }
workers = { min = 2, max = 2 }
streams_per_worker = 64
placement = "least-connections"
spare = false
"#;

/// A running daemon. Dropping it kills it (and so its streamlets).
pub struct Daemon {
    child: Option<Child>,
    /// How it was started, to start it again on the same socket.
    program: std::ffi::OsString,
    args: Vec<std::ffi::OsString>,
    envs: Vec<(std::ffi::OsString, Option<std::ffi::OsString>)>,
    pub socket: PathBuf,
    pub dir: tempfile::TempDir,
    /// What it printed at start.
    pub banner: String,
}

impl Daemon {
    /// Starts the daemon on `config` and waits until every pool's streamlets
    /// are ready.
    pub fn start(config: &str) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("streamletd.toml");
        std::fs::write(&path, config).unwrap();
        let socket = dir.path().join("streamletd.sock");
        let mut cmd = Command::new(STREAMLETD);
        cmd.arg("--config").arg(&path).arg("--socket").arg(&socket);
        Self::spawn(cmd, dir, socket)
    }

    pub fn spawn(cmd: Command, dir: tempfile::TempDir, socket: PathBuf) -> Daemon {
        let daemon = Self::spawn_unready(cmd, dir, socket);
        daemon.wait_until(|s| s.pools.iter().all(|p| p.ready == p.slots && p.slots > 0));
        daemon
    }

    /// Starts the daemon and waits only for its socket.
    pub fn spawn_unready(mut cmd: Command, dir: tempfile::TempDir, socket: PathBuf) -> Daemon {
        // State (the demand history) stays in the test's directory, unless
        // the config names a `state_dir`.
        if !cmd.get_envs().any(|(k, _)| k == "STATE_DIRECTORY") {
            cmd.env("STATE_DIRECTORY", dir.path().join("state"));
        }
        let program = cmd.get_program().to_owned();
        let args = cmd.get_args().map(|a| a.to_owned()).collect();
        let envs = cmd.get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
        let (child, banner) = Self::launch(cmd, &dir.path().join(LOG));
        Daemon { child: Some(child), program, args, envs, socket, dir, banner }
    }

    /// Starts `cmd` with its log going to `log` (appended to: a restart's log
    /// follows the last run's), or to the test's stderr with `E2E_LOG` set.
    fn launch(mut cmd: Command, log: &Path) -> (Child, String) {
        let stderr = match std::env::var("E2E_LOG") {
            Ok(level) => {
                cmd.env("STREAMLET_LOG", level);
                Stdio::inherit()
            }
            Err(_) => {
                cmd.env("STREAMLET_LOG", "warn");
                std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap().into()
            }
        };
        cmd.stdout(Stdio::piped()).stderr(stderr);
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let banner = rx.recv_timeout(Duration::from_secs(10)).expect("streamletd printed its socket path");
        (child, banner)
    }

    /// Starts the daemon again, as it was started, on the same socket (after
    /// the last one died), and waits for its streamlets.
    pub fn restart(&mut self) {
        if let Some(mut old) = self.child.take() {
            let _ = old.kill();
            let _ = old.wait();
        }
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        for (k, v) in &self.envs {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let (child, banner) = Self::launch(cmd, &self.dir.path().join(LOG));
        self.child = Some(child);
        self.banner = banner;
        self.wait_until(|s| s.pools.iter().all(|p| p.ready == p.slots && p.slots > 0));
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub async fn client(&self) -> Client {
        Client::connect(&self.socket).await.unwrap()
    }

    /// Polls `status` (from a thread of its own) until `f` holds, for at most 10 s.
    pub fn wait_until(
        &self,
        f: impl Fn(&streamlet_proto::StatusReport) -> bool + Sync,
    ) -> streamlet_proto::StatusReport {
        let socket = self.socket.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async {
                    loop {
                        if let Ok(mut client) = Client::connect(&socket).await {
                            if let Ok(status) = client.status().await {
                                if f(&status) {
                                    return status;
                                }
                            }
                        }
                        assert!(Instant::now() < deadline, "daemon did not reach the expected state in 10 s");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
            })
            .join()
            .unwrap()
        })
    }

    /// Sends SIGTERM and waits (at most 10 s) for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        signal(child.id(), libc::SIGTERM);
        wait_timeout(&mut child, Duration::from_secs(10)).expect("streamletd exited after SIGTERM")
    }
}

impl Drop for Daemon {
    /// SIGTERM first, so the daemon removes its cgroups (and whatever its
    /// streamlets forked); SIGKILL if it does not go in time. If the test
    /// failed, the daemon's log follows its failure.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            if wait_timeout(&mut child, Duration::from_secs(10)).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // A daemon that shut down removed its cgroups; one a test killed
        // could not: what it left (empty by now) goes with it.
        remove_cgroups_of(&self.socket);
        if std::thread::panicking() {
            let log = self.log();
            if !log.is_empty() {
                eprintln!("--- the log of streamletd on {} ---\n{log}--- end of its log ---", self.socket.display());
            }
        }
    }
}

/// The name a daemon on `socket` gives what it must have of its own (its
/// cgroup subtree, its state directory): `streamlet-` and the FNV-1a hash of
/// the socket's path.
pub fn instance_name(socket: &Path) -> String {
    let hash = socket
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3));
    format!("streamlet-{:08x}", hash as u32)
}

/// Removes the empty cgroups a daemon on `socket` left in the v1 hierarchies
/// (its subtree, under its own cgroup or at the top). A cgroup with a
/// process in it stays: rmdir refuses it.
pub fn remove_cgroups_of(socket: &Path) {
    fn remove_tree(dir: &Path) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_tree(&entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(dir);
    }
    fn find(dir: &Path, name: &str, depth: u32) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if entry.file_name() == name {
                remove_tree(&entry.path());
            } else if depth > 0 {
                find(&entry.path(), name, depth - 1);
            }
        }
    }
    let name = instance_name(socket);
    for controller in ["cpu", "cpuacct", "memory", "pids"] {
        find(&Path::new("/sys/fs/cgroup").join(controller), &name, 3);
    }
}

/// The daemon's log file, in its directory.
const LOG: &str = "streamletd.log";

impl Daemon {
    /// What the daemon (and any run before a [`restart`](Self::restart))
    /// has logged, at `warn` and above unless `E2E_LOG` says otherwise.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join(LOG)).unwrap_or_default()
    }
}

pub fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) with a pid we started and have not reaped.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0, "kill {pid}");
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `pid` is gone (or a zombie nobody reaped yet: it runs no more).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

pub fn wait_gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A hand-driven JSON connection: raw frames, for the tests of bad input.
pub struct Raw {
    pub sock: UnixStream,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let sock = UnixStream::connect(path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Raw { sock }
    }

    /// Connects and completes a JSON handshake.
    pub fn json(path: &Path) -> Raw {
        let mut raw = Raw::connect(path);
        raw.frame(br#"{"version":1,"encoding":"json","client":"e2e"}"#);
        let welcome = raw.read().expect("welcome");
        assert!(welcome.get("welcome").is_some(), "{welcome}");
        raw
    }

    pub fn frame(&mut self, payload: &[u8]) {
        let mut bytes = header(payload.len()).to_vec();
        bytes.extend_from_slice(payload);
        self.sock.write_all(&bytes).unwrap();
    }

    pub fn frame_with_fd(&mut self, payload: &[u8], fd: BorrowedFd<'_>) {
        let mut bytes = header(payload.len()).to_vec();
        bytes.extend_from_slice(payload);
        let sent = send_with_fds(self.sock.as_fd(), &bytes, &[fd]).unwrap();
        self.sock.write_all(&bytes[sent..]).unwrap();
    }

    /// The next frame as JSON; `None` at end of file.
    pub fn read(&mut self) -> Option<serde_json::Value> {
        let mut head = [0u8; 4];
        match self.sock.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return None,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return None,
            Err(e) => panic!("reading a frame: {e}"),
        }
        let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
        self.sock.read_exact(&mut body).unwrap();
        Some(serde_json::from_slice(&body).unwrap())
    }

    /// Reads the rest: true if the daemon closed the connection.
    pub fn closed(&mut self) -> bool {
        let mut rest = Vec::new();
        match self.sock.read_to_end(&mut rest) {
            Ok(_) => rest.is_empty(),
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// The error code of a JSON reply, if it is an error.
pub fn error_code(reply: &serde_json::Value) -> Option<&str> {
    reply.pointer("/reply/body/error/code").and_then(|c| c.as_str())
}

/// Echo check over a connected socket.
pub fn echo_once(sock: &mut UnixStream, payload: &[u8]) {
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    sock.write_all(payload).unwrap();
    let mut got = vec![0u8; payload.len()];
    sock.read_exact(&mut got).unwrap();
    assert_eq!(got, payload);
}

/// Whether this process may run the privileged tests (root, cgroup v1 memory
/// hierarchy); under STREAMLET_REQUIRE_PRIVILEGED=1 (CI) a machine that cannot
/// run them fails the test instead of skipping it.
pub fn privileged() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let cgroups = Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists();
    if root && cgroups {
        return true;
    }
    let why = if root { "no cgroup v1 memory hierarchy" } else { "not root" };
    if std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_some_and(|v| v == "1") {
        panic!("privileged test cannot run ({why}) but STREAMLET_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("skipping a privileged test: {why}");
    false
}

/// The misbehaving streamlet binary built from examples/hostile_worker.rs.
pub fn hostile_worker() -> PathBuf {
    let dir = Path::new(STREAMLETD).parent().unwrap();
    let path = dir.join("examples/hostile_worker");
    assert!(path.exists(), "{} not built (cargo test builds examples)", path.display());
    path
}

/// A daemon whose two streamlets take one stream each, both taken: the
/// streams' client ends are returned, to keep or drop.
pub async fn full_pool() -> (Daemon, Client, Vec<UnixStream>) {
    let daemon = Daemon::start(&TWO_BY_64.replace("streams_per_worker = 64", "streams_per_worker = 1"));
    let mut client = daemon.client().await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let (mine, theirs) = UnixStream::pair().unwrap();
        client.open(streamlet_proto::OpenRequest::new("echo"), theirs.as_fd()).await.unwrap();
        held.push(mine);
    }
    (daemon, client, held)
}

/// Another client of the daemon, watching during an attack: a `status` on
/// its own connection every 10 ms, each answer timed. A fresh connection
/// each time when `fresh` (the attack is on connections themselves).
pub struct Probe {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<Result<Vec<Duration>, String>>>,
}

impl Probe {
    pub fn start(socket: &Path) -> Probe {
        Self::spawn(socket, false)
    }

    pub fn start_fresh(socket: &Path) -> Probe {
        Self::spawn(socket, true)
    }

    fn spawn(socket: &Path, fresh: bool) -> Probe {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (socket, flag) = (socket.to_owned(), stop.clone());
        let (started, up) = std::sync::mpsc::channel();
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async move {
                let mut times = Vec::new();
                let mut client = Client::connect(&socket).await.map_err(|e| e.to_string())?;
                let _ = started.send(());
                // (At least three answers, however short the attack.)
                while !flag.load(std::sync::atomic::Ordering::Acquire) || times.len() < 3 {
                    let began = Instant::now();
                    if fresh {
                        client = match tokio::time::timeout(Duration::from_secs(20), Client::connect(&socket)).await {
                            Ok(Ok(client)) => client,
                            Ok(Err(e)) => return Err(format!("connect: {e}")),
                            Err(_) => return Err("connect took over 20 s".into()),
                        };
                    }
                    match tokio::time::timeout(Duration::from_secs(20), client.status()).await {
                        Ok(Ok(_)) => times.push(began.elapsed()),
                        Ok(Err(e)) => return Err(format!("status: {e}")),
                        Err(_) => return Err("status took over 20 s".into()),
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(times)
            })
        });
        up.recv_timeout(Duration::from_secs(10)).expect("the probe connected");
        Probe { stop, handle: Some(handle) }
    }

    /// Stops, and returns the slowest answer (after checking there were
    /// answers at all, and every one came).
    pub fn finish(mut self) -> Duration {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
        let times = self.handle.take().unwrap().join().unwrap().unwrap_or_else(|e| panic!("the probe failed: {e}"));
        assert!(times.len() >= 3, "the probe got only {} answers", times.len());
        times.into_iter().max().unwrap()
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Release);
    }
}

/// The daemon's resident memory, in bytes.
pub fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// The longest another client may wait for an answer while the daemon is
/// under attack.
pub const PROBE_BOUND: Duration = Duration::from_millis(100);

/// `nobody` and its group, on every Debian-like host.
pub const NOBODY: u32 = 65534;

/// Connects to `path` as `uid` (and gid `gid`): from a thread of its own that
/// changes its own credentials alone (the raw system calls are per thread;
/// libc's would change every thread's), so the daemon's `SO_PEERCRED` sees
/// that peer. Needs root.
pub fn connect_as(path: &Path, uid: u32, gid: u32) -> std::io::Result<UnixStream> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        // SAFETY: raw setresgid/setresuid on this thread only, which ends
        // right after the connect.
        unsafe {
            assert_eq!(libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()), 0);
            assert_eq!(libc::syscall(libc::SYS_setresgid, gid, gid, gid), 0);
            assert_eq!(libc::syscall(libc::SYS_setresuid, uid, uid, uid), 0);
        }
        UnixStream::connect(&path)
    })
    .join()
    .unwrap()
}

/// A daemon whose socket `nobody` may reach (its group, and a directory
/// others may walk), with `default` as the role of those the table does not
/// name.
pub fn daemon_for_nobody(config: &str, default: &str) -> Daemon {
    let config = format!("{config}\n[access]\nsocket_group = {NOBODY}\ndefault = \"{default}\"\n");
    let daemon = Daemon::start(&config);
    std::fs::set_permissions(daemon.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    daemon
}

impl Raw {
    /// [`Raw::json`] as `uid`.
    pub fn json_as(path: &Path, uid: u32, gid: u32) -> Raw {
        let sock = connect_as(path, uid, gid).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut raw = Raw { sock };
        raw.frame(br#"{"version":1,"encoding":"json","client":"e2e"}"#);
        let welcome = raw.read().expect("welcome");
        assert!(welcome.get("welcome").is_some(), "{welcome}");
        raw
    }
}

/// Starts the daemon on `config` with its log (at `level`) in a file of its
/// own rather than the test's stderr; returns the file's path too.
pub fn start_logged(config: &str, level: &str) -> (Daemon, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, config).unwrap();
    let socket = dir.path().join("streamletd.sock");
    let log = dir.path().join("streamletd.log");
    // The fixture sets the level and lets the daemon inherit stderr; a shell
    // that execs it (same pid) sets its own and sends stderr to the file.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(r#"export STREAMLET_LOG="$LEVEL"; exec "$0" "$@" 2>"$LOG_FILE""#)
        .arg(STREAMLETD)
        .arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(&socket)
        .env("LOG_FILE", &log)
        .env("LEVEL", level)
        .env_remove("JOURNAL_STREAM");
    (Daemon::spawn(cmd, dir, socket), log)
}

/// Raises this process's open-file soft limit to its hard limit: tests that
/// hold many connections need more than the usual 1024.
pub fn raise_nofile() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}
