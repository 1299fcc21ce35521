//! The binaries operators and newcomers use: streamletctl, the gateway, the demo.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{wait_gone, wait_timeout, Daemon, GATEWAY, STREAMLETCTL, STREAMLETD, TWO_BY_64};

fn ctl(daemon: &Daemon, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(STREAMLETCTL).arg("--socket").arg(&daemon.socket).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn streamletctl_open_is_netcat_for_streamlet() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut child = Command::new(STREAMLETCTL)
        .arg("--socket")
        .arg(&daemon.socket)
        .args(["open", "--pool", "echo", "--tenant", "ops"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"line one\nline two\n").unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("open exits after stdin ends");
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(status.success(), "{err}");
    assert_eq!(out, "line one\nline two\n");
    assert!(err.contains("stream 1 on streamlet"), "{err}");
}

#[test]
fn streamletctl_tables_and_json() {
    let daemon = Daemon::start(TWO_BY_64);
    let (code, out, err) = ctl(&daemon, &["workers"]);
    assert_eq!(code, 0, "{err}");
    let header = out.lines().next().unwrap();
    for column in ["POOL", "ID", "PID", "STATE", "STREAMS", "UPTIME", "RESTARTS"] {
        assert!(header.contains(column), "{header}");
    }
    assert_eq!(out.lines().count(), 3, "{out}");

    let (code, out, _) = ctl(&daemon, &["--json", "workers"]);
    assert_eq!(code, 0);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2);
    for field in ["pool", "id", "pid", "state", "streams", "uptime", "restarts"] {
        assert!(rows[0].get(field).is_some(), "field {field} in {}", rows[0]);
    }
    assert_eq!(rows[0]["state"], "ready");
    if crate::support::privileged() {
        // With cgroups, each streamlet's accounting, in both forms.
        for column in ["CPU", "THROTTLED", "MEM", "PEAK", "PIDS", "OOM"] {
            assert!(header.contains(column), "{header}");
        }
        let usage = &rows[0]["usage"];
        assert!(usage["memory"].as_u64().unwrap() > 0, "{usage}");
        assert!(usage["pids"].as_u64().unwrap() >= 1, "{usage}");
        assert_eq!(usage["oom_kills"], 0);
    }

    let (code, out, _) = ctl(&daemon, &["--json", "streams"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).unwrap(), serde_json::json!([]));
    let (code, out, _) = ctl(&daemon, &["streams"]);
    assert_eq!(code, 0);
    for column in ["ID", "POOL", "TENANT", "WORKER", "AGE", "BYTES_IN", "BYTES_OUT"] {
        assert!(out.contains(column), "{out}");
    }

    let (code, out, _) = ctl(&daemon, &["--json", "status"]);
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["pools"][0]["pool"], "echo");
    assert_eq!(status["pools"][0]["ready"], 2);
    let (code, out, _) = ctl(&daemon, &["status"]);
    assert_eq!(code, 0);
    assert!(out.contains("streamletd") && out.contains("echo"), "{out}");

    let (code, _, err) = ctl(&daemon, &["workers", "--pool", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown_pool"), "{err}");
}

#[test]
fn streamletctl_without_a_daemon_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let out =
        Command::new(STREAMLETCTL).arg("--socket").arg(dir.path().join("none.sock")).arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("none.sock") && err.contains("running"), "{err}");
}

#[test]
fn the_gateway_hands_tcp_clients_to_streamlets() {
    let daemon = Daemon::start(TWO_BY_64);
    let mut gateway = Command::new(GATEWAY)
        .args(["--listen", "127.0.0.1:0", "--pool", "echo", "--socket"])
        .arg(&daemon.socket)
        .env("STREAMLET_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(gateway.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split_whitespace().find_map(|w| w.trim_end_matches(',').parse::<std::net::SocketAddr>().ok());
    let addr = addr.unwrap_or_else(|| panic!("no address in {line:?}"));
    for i in 0..5 {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let msg = format!("tcp client {i}\n");
        tcp.write_all(msg.as_bytes()).unwrap();
        let mut got = vec![0u8; msg.len()];
        tcp.read_exact(&mut got).unwrap();
        assert_eq!(got, msg.as_bytes());
    }
    let _ = gateway.kill();
    let _ = gateway.wait();
}

/// The README's first command builds `streamletd` alone: the demo runs from
/// a directory with nothing else in it (its streamlets are the daemon's own
/// executable, the built-in worker).
#[test]
fn the_demo_tours_and_leaves_nothing_behind() {
    let alone = tempfile::tempdir().unwrap();
    let streamletd = alone.path().join("streamletd");
    std::fs::copy(STREAMLETD, &streamletd).unwrap();
    let out = Command::new(&streamletd).arg("demo").env("STREAMLET_LOG", "error").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("worker_died"), "shows the streams of the killed streamlet ending: {text}");
    // What the killed streamlet last reported, as a floor, never a made-up 0.
    assert!(text.contains("(at least 20 B in, 20 B out, by the streamlet's last report)"), "{text}");
    assert!(text.contains("replaced"), "{text}");
    // The demo names its scratch directory and its processes; all are gone.
    let dir = text.lines().find_map(|l| l.strip_prefix("scratch directory: ")).expect("names its directory");
    assert!(!std::path::Path::new(dir.trim()).exists(), "{dir} left behind");
    let pids = text.lines().find_map(|l| l.strip_prefix("processes: ")).expect("names its processes");
    for pid in pids.split_whitespace() {
        assert!(wait_gone(pid.parse().unwrap()), "process {pid} left behind");
    }
}

#[test]
fn streamletctl_drains_kills_restarts_and_shows_a_streamlet() {
    let daemon = Daemon::start(TWO_BY_64);
    let (_, out, _) = ctl(&daemon, &["--json", "workers"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let (first, second) = (rows[0]["id"].as_u64().unwrap(), rows[1]["id"].as_u64().unwrap());

    let (code, out, err) = ctl(&daemon, &["kill", &first.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("killed streamlet {first}")), "{out}");
    // Gone, and its slot filled again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, out, _) = ctl(&daemon, &["--json", "workers"]);
        let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
        let rows = rows.as_array().unwrap();
        if rows.iter().all(|r| r["id"] != first) && rows.iter().filter(|r| r["state"] == "ready").count() == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{out}");
        std::thread::sleep(Duration::from_millis(10));
    }
    let (_, out, _) = ctl(&daemon, &["workers"]);
    assert!(out.contains("LAST EXIT") && out.contains("killed by operator"), "{out}");

    let (code, out, err) = ctl(&daemon, &["drain", &second.to_string(), "--timeout", "5s"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("draining"), "{out}");
    daemon.wait_until(|s| s.pools[0].ready == 2 && s.pools[0].workers == 2);

    let (_, out, _) = ctl(&daemon, &["--json", "workers"]);
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    let live = rows[0]["id"].as_u64().unwrap();
    let (code, out, err) = ctl(&daemon, &["worker", &live.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with(&format!("streamlet      {live}\n")), "{out}");
    assert!(out.contains("last deaths in this slot") || out.contains("no deaths in this slot"), "{out}");
    let (code, out, _) = ctl(&daemon, &["--json", "worker", &live.to_string()]);
    assert_eq!(code, 0);
    let detail: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(detail["deaths"].is_array() && detail["stream_ids"].is_array(), "{detail}");

    let (code, out, err) = ctl(&daemon, &["restart", "echo"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("restarting pool echo"), "{out}");
    let (code, _, err) = ctl(&daemon, &["kill", "987654"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown_worker") && err.contains("streamletctl workers"), "{err}");
    let (code, _, err) = ctl(&daemon, &["restart", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown_pool"), "{err}");
}

#[test]
fn streamletctl_prints_completions_and_a_man_page_without_a_daemon() {
    let run = |args: &[&str]| {
        // No daemon anywhere: these must not try to connect.
        let out =
            Command::new(STREAMLETCTL).args(args).env("STREAMLET_SOCKET", "/nonexistent/s.sock").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(bash.contains("_streamletctl()") && bash.contains("complete -F _streamletctl"), "bash");
    for command in ["workers", "streams", "pools", "drain", "simulate", "quota"] {
        assert!(bash.contains(command), "bash completes {command}");
    }
    assert!(run(&["completions", "zsh"]).starts_with("#compdef streamletctl"));
    assert!(run(&["completions", "fish"]).contains("complete -c streamletctl"));
    let man = run(&["man"]);
    assert!(man.contains(".TH streamletctl 1"), "a section 1 page");
    assert!(man.contains("pools") && man.contains("simulate"), "it lists the commands");
    let bad = Command::new(STREAMLETCTL).args(["completions", "tcsh"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("bash"), "the known shells are listed");
}

/// `streamletctl top` in a real terminal (tmux): it draws the daemon's pools,
/// streamlets and events, refreshes, and `q` quits it.
#[test]
fn streamletctl_top_draws_the_daemon_live_and_q_quits() {
    if Command::new("tmux").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_none_or(|v| v != "1"),
            "tmux is missing: install it (apt-get install tmux)"
        );
        eprintln!("skipping: tmux is missing");
        return;
    }
    let daemon = Daemon::start(TWO_BY_64);
    let session = format!("streamlet-top-{}", std::process::id());
    // Its own tmux server, its socket in the test's directory (gone with it).
    let server = daemon.dir.path().join("tmux.sock");
    let tmux = |args: &[&str]| Command::new("tmux").arg("-S").arg(&server).args(args).output().unwrap();
    let command = format!("{STREAMLETCTL} --socket {} top", daemon.socket.display());
    let out = tmux(&["new-session", "-d", "-s", &session, "-x", "120", "-y", "30", &command]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let screen = || String::from_utf8(tmux(&["capture-pane", "-p", "-t", &session]).stdout).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut shown = screen();
    while !(shown.contains("streamlets") && shown.matches(" ready ").count() >= 2) {
        assert!(Instant::now() < deadline, "top never drew the streamlets:\n{shown}");
        std::thread::sleep(Duration::from_millis(100));
        shown = screen();
    }
    assert!(shown.contains("streamletd ") && shown.contains("(q quits)"), "{shown}");
    assert!(shown.contains("echo"), "the pool: {shown}");
    assert!(shown.contains("worker_ready"), "the events: {shown}");
    tmux(&["send-keys", "-t", &session, "q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux(&["has-session", "-t", &session]).status.success() {
        assert!(Instant::now() < deadline, "q did not quit:\n{}", screen());
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = tmux(&["kill-server"]);
}

/// A spare that takes a killed streamlet's slot keeps its own uptime, and
/// the slot's history shows as the slot's, in the listing and in detail.
#[test]
fn a_promoted_spare_shows_its_own_uptime_and_its_slots_history() {
    let daemon = Daemon::start(&TWO_BY_64.replace("spare = false", "spare = true"));
    let workers = || -> Vec<serde_json::Value> {
        let (code, out, err) = ctl(&daemon, &["--json", "workers"]);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str::<serde_json::Value>(&out).unwrap().as_array().unwrap().clone()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let spare = loop {
        if let Some(spare) = workers().into_iter().find(|w| w["state"] == "spare") {
            break spare["id"].as_u64().unwrap();
        }
        assert!(Instant::now() < deadline, "no spare became ready");
        std::thread::sleep(Duration::from_millis(20));
    };
    // Long enough that its uptime cannot pass for a fresh start.
    std::thread::sleep(Duration::from_millis(1500));
    let (_, out, _) = ctl(&daemon, &["workers"]);
    let spare_row = out.lines().find(|l| l.contains(" spare ")).unwrap_or_else(|| panic!("{out}"));
    assert!(spare_row.split_whitespace().nth(6) == Some("-"), "a spare has no slot history: {out}");
    let victim = workers().into_iter().find(|w| w["state"] == "ready").unwrap()["id"].as_u64().unwrap();
    let (code, _, err) = ctl(&daemon, &["kill", &victim.to_string()]);
    assert_eq!(code, 0, "{err}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let promoted = loop {
        let row = workers().into_iter().find(|w| w["id"] == spare && w["state"] == "ready");
        if let Some(row) = row.filter(|r| r["restarts"] == 1) {
            break row;
        }
        assert!(Instant::now() < deadline, "the spare never took the slot: {:?}", workers());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(promoted["uptime"].as_f64().unwrap() >= 1.5, "its process's uptime: {promoted}");
    assert_eq!(promoted["last_exit"], "killed by operator", "{promoted}");

    let (_, out, _) = ctl(&daemon, &["workers"]);
    let header = out.lines().next().unwrap();
    assert!(header.contains("SLOT RESTARTS") && header.contains("SLOT LAST EXIT"), "{out}");
    let row = out.lines().find(|l| l.split_whitespace().nth(1) == Some(&spare.to_string())).unwrap();
    let uptime = row.split_whitespace().nth(5).unwrap();
    assert!(uptime.ends_with('s') && !uptime.ends_with("ms") && uptime != "0s", "not a fresh start: {row}");
    assert!(row.ends_with("killed by operator"), "{row}");

    let (code, out, err) = ctl(&daemon, &["worker", &spare.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("\nuptime         {uptime}")), "{out}");
    assert!(out.contains("\nslot restarts  1 (streamlets that held this slot before it)\n"), "{out}");
    assert!(out.contains("\nslot last exit killed by operator\n"), "{out}");
    assert!(out.contains("last deaths in this slot") && out.contains(&victim.to_string()), "{out}");
}

/// `top` with stdout in a file or a pipe prints one snapshot of what the
/// live view shows, and `--json top` the same as one JSON object.
#[test]
fn streamletctl_top_without_a_terminal_prints_one_snapshot() {
    let daemon = Daemon::start(TWO_BY_64);
    let (code, out, err) = ctl(&daemon, &["top"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let mut lines = out.lines();
    assert!(lines.next().unwrap().starts_with("streamletd "), "the daemon first: {out}");
    assert!(lines.next().unwrap().starts_with("POOL  HANDLER"), "its pools: {out}");
    assert!(out.contains("SLOT RESTARTS"), "its streamlets: {out}");
    assert_eq!(out.lines().filter(|l| l.starts_with("echo ") && l.contains(" ready ")).count(), 2, "{out}");
    let events = out.split("\nlatest events\n").nth(1).unwrap_or_else(|| panic!("no events in {out}"));
    assert_eq!(events.lines().filter(|l| l.contains("worker_ready")).count(), 2, "{out}");
    assert!(!out.contains('\x1b'), "no terminal control in a file: {out:?}");

    let (code, out, err) = ctl(&daemon, &["--json", "top"]);
    assert_eq!(code, 0, "{err}");
    let snapshot: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(snapshot["status"]["pid"], daemon.pid(), "{snapshot}");
    assert_eq!(snapshot["status"]["pools"][0]["pool"], "echo");
    assert_eq!(snapshot["workers"].as_array().unwrap().len(), 2, "{snapshot}");
    let events = snapshot["events"].as_array().unwrap();
    assert!(events.iter().filter(|e| e["event"].get("worker_ready").is_some()).count() == 2, "{snapshot}");
    assert!(events.iter().all(|e| e["seq"].is_u64() && e["at_ms"].is_u64()), "{snapshot}");
}

/// On a terminal it cannot take over (here: no controlling terminal to
/// read keys from), `top` says so instead of panicking.
#[test]
fn streamletctl_top_on_a_terminal_it_cannot_use_says_so() {
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::process::CommandExt;
    let daemon = Daemon::start(TWO_BY_64);
    // SAFETY: posix_openpt, grantpt, unlockpt and ptsname_r on the descriptor
    // opened here, with a buffer of the length given; the descriptor is owned
    // by `_master` from then on.
    let (_master, path) = unsafe {
        let fd = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY);
        assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
        let master = std::fs::File::from_raw_fd(fd);
        assert_eq!(libc::grantpt(fd), 0);
        assert_eq!(libc::unlockpt(fd), 0);
        let mut name = [0 as libc::c_char; 128];
        assert_eq!(libc::ptsname_r(fd, name.as_mut_ptr(), name.len()), 0);
        (master, std::ffi::CStr::from_ptr(name.as_ptr()).to_str().unwrap().to_owned())
    };
    let terminal = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOCTTY).open(path).unwrap();
    let mut command = Command::new(STREAMLETCTL);
    command.arg("--socket").arg(&daemon.socket).arg("top").stdin(Stdio::null()).stdout(terminal).stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; the child leaves this test's
    // session, so it has no controlling terminal (and /dev/tty fails).
    unsafe {
        command.pre_exec(|| {
            libc::setsid();
            Ok(())
        })
    };
    let mut child = command.spawn().unwrap();
    let status = wait_timeout(&mut child, Duration::from_secs(10)).expect("top gave up");
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert_eq!(status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.starts_with("streamletctl: top draws on a terminal, and cannot use this one"), "{err}");
}
