//! The README's quick start, taken from the README itself and run in bash a
//! line at a time, as a newcomer pastes it: only what a test must change is
//! changed (the binaries' directory, a socket and a port of the test's own,
//! and the text typed into `nc`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{wait_gone, STREAMLETD};

/// The lines of the README's quick start block.
fn quick_start() -> Vec<String> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("## Quick start").nth(1).expect("the README has a quick start");
    let block = section.split("```sh\n").nth(1).and_then(|b| b.split("```").next()).expect("with a sh block");
    block.lines().map(str::to_owned).collect()
}

#[test]
fn the_quick_start_works_pasted_line_by_line() {
    let lines = quick_start();
    assert_eq!(lines.first().map(String::as_str), Some("cargo build --release"), "{lines:?}");
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(STREAMLETD).parent().unwrap();
    let socket = dir.path().join("streamletd.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();

    // Each line as written, but for the build (done: these are the test's
    // binaries) and the paths a test cannot share with another.
    let mut script = String::from("set -e\n");
    let mut typed = false;
    for line in &lines[1..] {
        let mut line = line
            .replace("./target/release/", &format!("{}/", bin.display()))
            .replace("/tmp/streamletd.sock", &socket.display().to_string())
            .replace("127.0.0.1:7000", &format!("127.0.0.1:{port}"))
            .replace("127.0.0.1 7000", &format!("127.0.0.1 {port}"));
        if line.starts_with("nc ") {
            // What the newcomer types, then Ctrl-D (-N: shut the connection
            // down at the end of input, and so end the stream).
            line = format!("printf 'every line comes back\\n' | nc -N {}", line.trim_start_matches("nc "));
            typed = true;
        }
        script.push_str(&line);
        // A newcomer pastes a line and reads what it printed: a moment
        // between lines, no more.
        script.push_str("\nsleep 0.3\n");
    }
    assert!(typed, "the quick start talks to the gateway with nc: {lines:?}");
    script.push_str("kill %1 %2\nwait\n");

    let mut child = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_remove("STREAMLET_SOCKET")
        .env("STATE_DIRECTORY", dir.path().join("state"))
        .env("STREAMLET_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let killer = std::thread::spawn(move || {
        if !wait_gone_within(pid, Duration::from_secs(60)) {
            // SAFETY: kill(2) of our own child, by pid, if it hangs.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
    });
    let out = std::mem::take(&mut child.stdout).unwrap();
    let err = std::mem::take(&mut child.stderr).unwrap();
    let err = std::thread::spawn(move || std::io::read_to_string(err).unwrap());
    let out = std::io::read_to_string(out).unwrap();
    let status = child.wait().unwrap();
    let err = err.join().unwrap();
    killer.join().unwrap();
    let all = format!("script:\n{script}\nstdout:\n{out}\nstderr:\n{err}");
    assert!(status.success(), "{status:?}\n{all}");

    assert!(out.contains("streamletd: listening on"), "{all}");
    assert!(out.contains("streamlet-gateway: listening on"), "{all}");
    assert_eq!(out.matches("every line comes back").count(), 1, "nc got its line back: {all}");
    assert!(out.contains("POOL") && out.contains("echo"), "workers lists the pool: {all}");
    assert!(out.lines().any(|l| l.trim() == "hello"), "open echoed its input: {all}");
    // The daemon stopped cleanly: its socket is gone.
    assert!(!socket.exists(), "{all}");
    let _ = wait_gone(pid);
}

/// Whether `pid` is gone (reaped by [`Command::wait`]) within `limit`.
fn wait_gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if crate::support::process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
