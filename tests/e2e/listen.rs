//! A pool with `listen`: the daemon accepts its TCP clients itself, bound by
//! the daemon or passed by systemd (socket activation, by
//! `FileDescriptorName=`), with no gateway.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{wait_timeout, Daemon, STREAMLETD};

const POOL: &str = r#"
[pools.echo]
handler = { kind = "echo" }
workers = { min = 1, max = 1 }
streams_per_worker = 2
spare = false
listen_tenant = "front"
"#;

/// One line through the connection and back.
fn echoes(tcp: &mut TcpStream, line: &str) -> std::io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.write_all(line.as_bytes())?;
    let mut got = vec![0u8; line.len()];
    tcp.read_exact(&mut got)?;
    assert_eq!(got, line.as_bytes());
    Ok(())
}

/// A port free now on 127.0.0.1.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn listening(daemon: &Daemon) -> SocketAddr {
    let status = daemon.wait_until(|s| s.pools.iter().any(|p| !p.listening.is_empty()));
    status.pools[0].listening[0].parse().unwrap()
}

#[test]
fn a_pool_that_listens_serves_its_tcp_clients_itself_and_keeps_them_waiting_when_full() {
    let daemon = Daemon::start(&format!("{POOL}listen = [\"127.0.0.1:0\"]\n"));
    let addr = listening(&daemon);
    assert_ne!(addr.port(), 0, "status says the port it bound");
    let mut first = TcpStream::connect(addr).unwrap();
    echoes(&mut first, "one\n").unwrap();
    let mut second = TcpStream::connect(addr).unwrap();
    echoes(&mut second, "two\n").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let streams = rt.block_on(async { daemon.client().await.streams(None).await.unwrap() });
    assert_eq!(streams.len(), 2);
    assert!(streams.iter().all(|s| s.pool == "echo" && s.tenant == "front"), "{streams:?}");

    // Full: the third client waits in the kernel's queue, neither served nor closed.
    let mut third = TcpStream::connect(addr).unwrap();
    third.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    third.write_all(b"three\n").unwrap();
    let mut buf = [0u8; 6];
    let waited = third.read(&mut buf).unwrap_err();
    assert!(matches!(waited.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{waited}");
    // A stream ends: the third is taken and served.
    drop(first);
    third.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    third.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"three\n");
}

#[test]
fn listen_addresses_that_cannot_be_bound_stop_the_start_with_their_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamletd.toml");
    std::fs::write(&config, format!("{POOL}listen = [\"{addr}\"]\n")).unwrap();
    let mut daemon = Command::new(STREAMLETD)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(dir.path().join("streamletd.sock"))
        .env("STATE_DIRECTORY", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_timeout(&mut daemon, Duration::from_secs(10)).expect("it exits");
    assert!(!status.success());
    let mut stderr = String::new();
    daemon.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains(&format!("pool echo: cannot listen on {addr}")), "{stderr}");
    assert!(stderr.contains("in use"), "{stderr}");
}

/// `systemd-socket-activate` (systemd's own tool) listens, passes the
/// sockets with their names and starts the daemon at the first client; that
/// client waits in the queue until a streamlet is ready, then is served.
#[test]
fn a_socket_systemd_passes_by_name_serves_the_pool_that_names_it() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamletd.toml");
    std::fs::write(&config, format!("{POOL}listen = [\"fd:echo-tcp\"]\n")).unwrap();
    let socket = dir.path().join("streamletd.sock");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-l")
        .arg(&socket)
        .arg("--fdname=echo-tcp:control")
        .arg(STREAMLETD)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket);
    // The first client starts the daemon: it connects while the daemon is
    // spawned below (which waits for the daemon's first line).
    let client = std::thread::spawn(move || {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut tcp = loop {
            match TcpStream::connect(addr) {
                Ok(tcp) => break tcp,
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        };
        echoes(&mut tcp, "activated\n")
    });
    let daemon = Daemon::spawn(cmd, dir, socket);
    client.join().unwrap().expect("the first client is served");
    assert_eq!(listening(&daemon), format!("127.0.0.1:{port}").parse().unwrap());
    let mut again = TcpStream::connect(("127.0.0.1", port)).unwrap();
    echoes(&mut again, "again\n").unwrap();
}

/// A socket passed with a name no pool listens on would keep its clients
/// waiting for ever: the daemon refuses to start, naming it.
#[test]
fn a_passed_socket_no_pool_names_stops_the_start() {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("streamletd.toml");
    std::fs::write(&config, format!("{POOL}listen = [\"fd:echo-tcp\"]\n")).unwrap();
    let socket = dir.path().join("streamletd.sock");
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-l")
        .arg(&socket)
        .arg("--fdname=stray:control")
        .arg(STREAMLETD)
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(&socket)
        .env("STATE_DIRECTORY", dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let trigger = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(tcp) => break tcp,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let status = wait_timeout(&mut activator, Duration::from_secs(10)).expect("it exits");
    drop(trigger);
    assert!(!status.success());
    let mut stderr = String::new();
    activator.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert!(stderr.contains("systemd passed no socket named echo-tcp (passed: stray)"), "{stderr}");
}
