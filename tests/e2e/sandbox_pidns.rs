//! Each streamlet is the init of a pid namespace of its own: what it starts
//! dies with it (even when the daemon is SIGKILLed), and nothing it starts
//! can stop, kill, trace or read it.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use streamlet_proto::OpenRequest;

use crate::support::{privileged, process_gone, signal, wait_gone, Daemon};

fn exec_pool(command: &str, direct: bool) -> String {
    format!(
        "[daemon]\nshutdown_timeout = \"2s\"\n\n[sandbox]\nrequired = true\n\n\
         [pools.run]\nhandler = {{ kind = \"exec\", command = {command}, direct = {direct} }}\n\
         workers = {{ min = 1, max = 1 }}\nstreams_per_worker = 4\nspare = false\nlimits = {{ pids = 32 }}\n"
    )
}

/// Opens a stream on `run`; returns the client's end and the streamlet's pid.
async fn open(daemon: &Daemon) -> (UnixStream, u32) {
    let mut client = daemon.client().await;
    let (mine, theirs) = UnixStream::pair().unwrap();
    let opened = client.open(OpenRequest::new("run"), theirs.as_fd()).await.unwrap();
    mine.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let pid = client.workers(None).await.unwrap().iter().find(|w| w.id == opened.worker).unwrap().pid;
    (mine, pid)
}

/// The host pids of the processes whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(parent) {
            children.push(pid);
        }
    }
    children
}

fn state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// A SIGKILLed daemon's streamlets die of `PR_SET_PDEATHSIG`; the commands
/// they ran used to be reparented to the host's init and serve their clients
/// on, unsupervised. Each streamlet being its pid namespace's init, the
/// kernel now ends them with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_commands_die_with_a_sigkilled_daemon() {
    if !privileged() {
        return;
    }
    let daemon = Daemon::start(&exec_pool(r#"["/bin/cat"]"#, true));
    let (mut conn, worker) = open(&daemon).await;
    conn.write_all(b"served\n").unwrap();
    let mut got = [0u8; 7];
    conn.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"served\n");
    let commands = children_of(worker);
    assert_eq!(commands.len(), 1, "one cat for the stream: {commands:?}");
    signal(daemon.pid(), libc::SIGKILL);
    assert!(wait_gone(worker), "the streamlet dies with the daemon");
    assert!(wait_gone(commands[0]), "the command {} outlived its streamlet", commands[0]);
    // And the client is told: its connection is closed, not served.
    let _ = conn.write_all(b"anyone?\n");
    let mut rest = Vec::new();
    match conn.read_to_end(&mut rest) {
        Ok(_) => assert!(rest.is_empty(), "served after the daemon died: {rest:?}"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// What a command may try against the streamlet that runs it: its memory
/// (`/proc/PID/mem`, the same uid), its environment, and signals. Printed as
/// `what outcome` lines; the errno by name.
const PROBE: &str = r#"
import errno, os, signal
def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
parent = os.getppid()
print("parent", parent)
print("mem-read", attempt(lambda: open("/proc/%d/mem" % parent, "rb").close()))
print("mem-write", attempt(lambda: open("/proc/%d/mem" % parent, "r+b").close()))
print("environ", attempt(lambda: open("/proc/%d/environ" % parent, "rb").read()))
print("stop", attempt(lambda: os.kill(parent, signal.SIGSTOP)))
print("kill", attempt(lambda: os.kill(parent, signal.SIGKILL)))
"#;

/// A command (of any tenant) runs as its streamlet's uid. The streamlet is
/// not dumpable, so the command cannot open its memory; and it is its pid
/// namespace's init, which ignores a stop or kill from inside: every other
/// stream on it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_command_can_neither_touch_nor_stop_its_streamlet() {
    if !privileged() {
        return;
    }
    let command = serde_json::to_string(&["/usr/bin/python3", "-c", PROBE]).unwrap();
    let daemon = Daemon::start(&exec_pool(&command, false));
    let (mut conn, worker) = open(&daemon).await;
    conn.shutdown(std::net::Shutdown::Write).unwrap();
    let mut report = String::new();
    conn.read_to_string(&mut report).unwrap();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(
        lines,
        ["parent 1", "mem-read EACCES", "mem-write EACCES", "environ EACCES", "stop ok", "kill ok"],
        "the kernel takes the signals and drops them: {report}"
    );
    // Neither stopped nor killed, now or a moment later.
    let until = Instant::now() + Duration::from_millis(300);
    while Instant::now() < until {
        assert!(!process_gone(worker), "the streamlet was killed");
        assert_ne!(state(worker), Some('T'), "the streamlet was stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
    let workers = daemon.client().await.workers(None).await.unwrap();
    assert_eq!(workers.iter().map(|w| (w.pid, w.restarts)).collect::<Vec<_>>(), [(worker, 0)]);
    // Exec'd through /proc/self/fd/N, it still goes by its own name in ps.
    let comm = std::fs::read_to_string(format!("/proc/{worker}/comm")).unwrap();
    assert_eq!(comm.trim_end(), "streamlet-worke", "streamlet-worker, cut to the kernel's 15 bytes");
}

/// As its namespace's init, the streamlet inherits what a command leaves
/// behind: it reaps those orphans (their zombies would count against the
/// pool's `pids`), never the command it waits for itself, whose exit
/// status still ends the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streamlet_reaps_orphans_and_keeps_its_commands_exit_status() {
    if !privileged() {
        return;
    }
    // Each run leaves an orphan that exits a moment later, then exits 3.
    let command = r#"["/bin/sh", "-c", "(sleep 0.1 &); sleep 0.3; exit 3"]"#;
    let daemon = Daemon::start(&exec_pool(command, false));
    let mut client = daemon.client().await;
    for _ in 0..3 {
        let (mine, theirs) = UnixStream::pair().unwrap();
        let opened = client.open(OpenRequest::new("run"), theirs.as_fd()).await.unwrap();
        drop(theirs);
        let event = tokio::time::timeout(Duration::from_secs(10), client.next_event()).await.unwrap().unwrap();
        let streamlet_proto::Event::StreamEnded(ended) = event else { panic!("{event:?}") };
        assert_eq!(ended.stream, opened.stream);
        assert_eq!(
            ended.reason,
            streamlet_proto::EndReason::CommandExited { cause: streamlet_proto::ExitCause::Exited { code: 3 } },
            "the command's own status, not taken by the reaper"
        );
        drop(mine);
    }
    let worker = client.workers(None).await.unwrap()[0].pid;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let zombies: Vec<u32> = children_of(worker).into_iter().filter(|p| state(*p) == Some('Z')).collect();
        if zombies.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "zombies left under the streamlet: {zombies:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
