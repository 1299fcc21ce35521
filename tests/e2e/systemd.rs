//! streamletd under systemd: the units pass systemd's own checks, the
//! daemon's notifications (readiness, status, watchdog, stopping) reach
//! `$NOTIFY_SOCKET`, and it serves a control socket systemd passes it.

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{signal, wait_timeout, Daemon, STREAMLETD, TWO_BY_64};

const UNITS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd");

/// The systemd tool `name`, if this machine has it. Under
/// STREAMLET_REQUIRE_PRIVILEGED=1 (CI, which installs systemd) its absence
/// fails the test instead of skipping it.
fn tool(name: &str) -> Option<PathBuf> {
    let found = ["/usr/bin", "/bin", "/usr/sbin"].iter().map(|d| Path::new(d).join(name)).find(|p| p.exists());
    if found.is_none() {
        assert!(
            std::env::var_os("STREAMLET_REQUIRE_PRIVILEGED").is_none_or(|v| v != "1"),
            "{name} is missing: install systemd (apt-get install systemd)"
        );
        eprintln!("skipping: {name} is missing (install systemd)");
    }
    found
}

#[test]
fn the_units_pass_systemd_analyze_verify() {
    let Some(analyze) = tool("systemd-analyze") else { return };
    let dir = tempfile::tempdir().unwrap();
    // ExecStart must name a binary that exists: this build's.
    let service = std::fs::read_to_string(Path::new(UNITS).join("streamletd.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/streamletd "), "the unit runs the installed binary");
    std::fs::write(dir.path().join("streamletd.service"), service.replace("/usr/bin/streamletd", STREAMLETD)).unwrap();
    std::fs::copy(Path::new(UNITS).join("streamletd.socket"), dir.path().join("streamletd.socket")).unwrap();
    let out = Command::new(analyze)
        .arg("verify")
        .arg(dir.path().join("streamletd.service"))
        .arg(dir.path().join("streamletd.socket"))
        .output()
        .unwrap();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{said}");
    // verify exits 0 on unknown keys and bad values, with a warning that
    // names the file: there must be none about ours.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains("streamletd.")).collect();
    assert!(ours.is_empty(), "systemd-analyze warns about the units:\n{}", ours.join("\n"));

    // A unit with a mistake is caught the same way (the check can fail).
    let broken =
        std::fs::read_to_string(dir.path().join("streamletd.service")).unwrap().replace("KillMode=", "KillMood=");
    std::fs::write(dir.path().join("streamletd.service"), broken).unwrap();
    let out = Command::new(tool("systemd-analyze").unwrap())
        .arg("verify")
        .arg(dir.path().join("streamletd.service"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("KillMood"), "a misspelt key is reported");
}

#[test]
fn sysusers_and_tmpfiles_make_the_group_and_directories() {
    let (Some(sysusers), Some(tmpfiles)) = (tool("systemd-sysusers"), tool("systemd-tmpfiles")) else { return };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    let out = Command::new(sysusers)
        .arg("--root")
        .arg(root.path())
        .arg(Path::new(UNITS).join("streamlet.sysusers.conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let groups = std::fs::read_to_string(root.path().join("etc/group")).unwrap();
    assert!(groups.lines().any(|l| l.starts_with("streamlet:")), "{groups}");
    let out = Command::new(tmpfiles)
        .arg("--root")
        .arg(root.path())
        .arg("--create")
        .arg(Path::new(UNITS).join("streamlet.tmpfiles.conf"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &str| std::fs::metadata(root.path().join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("run/streamlet"), 0o755);
    assert_eq!(mode("var/lib/streamlet"), 0o700);
}

/// Every datagram that arrives within `within`, until `until` says stop.
fn collect(socket: &UnixDatagram, within: Duration, until: impl Fn(&[String]) -> bool) -> Vec<String> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline && !until(&got) {
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        if let Ok(n) = socket.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    got
}

#[test]
fn the_daemon_tells_systemd_it_is_ready_feeds_the_watchdog_and_says_it_stops() {
    let dir = tempfile::tempdir().unwrap();
    let notify = dir.path().join("notify");
    let listener = UnixDatagram::bind(&notify).unwrap();
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, TWO_BY_64).unwrap();
    let socket = dir.path().join("streamletd.sock");
    let mut cmd = Command::new(STREAMLETD);
    cmd.arg("--config")
        .arg(&path)
        .arg("--socket")
        .arg(&socket)
        .env("NOTIFY_SOCKET", &notify)
        // Fed every 100 ms.
        .env("WATCHDOG_USEC", "200000");
    let mut daemon = Daemon::spawn_unready(cmd, dir, socket);

    let got = collect(&listener, Duration::from_secs(10), |got| got.iter().any(|m| m.starts_with("READY=1")));
    let ready = got.iter().position(|m| m.starts_with("READY=1")).unwrap_or_else(|| panic!("no READY=1: {got:?}"));
    assert!(got[..ready].iter().any(|m| m == "STATUS=starting 2 streamlets"), "{got:?}");
    assert_eq!(got[ready], "READY=1\nSTATUS=1 pool, 2 streamlets ready, 0 streams", "ready once both are");
    // Ready means ready: the streamlets serve at once.
    let status = daemon.wait_until(|_| true);
    assert_eq!(status.pools[0].ready, 2);

    let fed = collect(&listener, Duration::from_millis(700), |_| false);
    let feeds = fed.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!((3..=12).contains(&feeds), "fed about every 100 ms: {fed:?}");
    assert!(!fed.iter().any(|m| m.starts_with("READY=1")), "READY=1 goes once");

    signal(daemon.pid(), libc::SIGTERM);
    let got = collect(&listener, Duration::from_secs(10), |got| got.iter().any(|m| m.starts_with("STOPPING=1")));
    assert!(got.iter().any(|m| m == "STOPPING=1\nSTATUS=shutting down: stopping 2 streamlets"), "{got:?}");
    assert!(daemon.terminate().success());
}

#[test]
fn the_daemon_serves_the_control_socket_systemd_passes() {
    let Some(activate) = tool("systemd-socket-activate") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streamletd.toml");
    std::fs::write(&path, TWO_BY_64).unwrap();
    let passed = dir.path().join("activated.sock");
    let mut child = Command::new(activate)
        .arg("--listen")
        .arg(&passed)
        .arg("-E")
        .arg(format!("STATE_DIRECTORY={}", dir.path().join("state").display()))
        .arg("-E")
        .arg("STREAMLET_LOG=warn")
        .arg(STREAMLETD)
        .arg("--config")
        .arg(&path)
        // A configured path it must not use: the passed socket wins.
        .arg("--socket")
        .arg(dir.path().join("configured.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the activator and the daemon say, shown only if the test fails.
    let stderr = child.stderr.take().unwrap();
    let said = std::thread::spawn(move || std::io::read_to_string(stderr).unwrap_or_default());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !passed.exists() {
        assert!(Instant::now() < deadline, "systemd-socket-activate did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    // The first connection starts the daemon, which serves it.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        let mut client = streamlet_client::Client::connect(&passed).await.unwrap();
        client.status().await.unwrap()
    });
    assert_eq!(Path::new(&status.socket), passed, "it listens on the passed socket");
    assert!(!dir.path().join("configured.sock").exists(), "and binds nothing of its own");
    // (A plain connection works too, while it runs.)
    UnixStream::connect(&passed).unwrap();

    signal(child.id(), libc::SIGTERM);
    let exit = wait_timeout(&mut child, Duration::from_secs(10)).expect("the daemon exits on SIGTERM");
    let said = said.join().unwrap();
    assert!(exit.success(), "{exit:?}\n{said}");
    assert!(said.contains("Execing"), "systemd-socket-activate started the daemon on the first connection: {said}");
    assert!(passed.exists(), "the socket is systemd's: the daemon leaves it in place");
}

#[test]
fn the_install_script_honours_destdir_and_keeps_a_config() {
    let destdir = tempfile::tempdir().unwrap();
    let built = Path::new(STREAMLETD).parent().unwrap();
    let install = || {
        let out = Command::new("sh")
            .arg(Path::new(UNITS).join("install.sh"))
            .env("DESTDIR", destdir.path())
            .env("PREFIX", "/usr")
            .env("CARGO_TARGET_DIR", built.parent().unwrap())
            .env("PROFILE", built.file_name().unwrap())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        out
    };
    install();
    let at = |p: &str| destdir.path().join(p.trim_start_matches('/'));
    for bin in ["streamletd", "streamletctl", "streamlet-worker", "streamlet-gateway"] {
        assert!(at(&format!("/usr/bin/{bin}")).is_file(), "{bin}");
    }
    let service = std::fs::read_to_string(at("/usr/lib/systemd/system/streamletd.service")).unwrap();
    assert!(service.contains("ExecStart=/usr/bin/streamletd --config /etc/streamlet/streamletd.toml"));
    assert!(at("/usr/lib/systemd/system/streamletd.socket").is_file());
    assert!(at("/usr/lib/sysusers.d/streamlet.conf").is_file());
    assert!(at("/usr/lib/tmpfiles.d/streamlet.conf").is_file());
    assert!(std::fs::read_to_string(at("/usr/share/man/man1/streamletctl.1")).unwrap().contains(".TH streamletctl"));
    assert!(at("/usr/share/bash-completion/completions/streamletctl").is_file());
    let config = at("/etc/streamlet/streamletd.toml");
    streamlet_config::Config::load(&config).expect("the installed example is a valid config");
    // An operator's config is never overwritten.
    std::fs::write(&config, "# mine\n").unwrap();
    let out = install();
    assert!(String::from_utf8_lossy(&out.stdout).contains("keeping"));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), "# mine\n");
}
