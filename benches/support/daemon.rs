//! A real `streamletd` for a bench: started on a configuration in a temporary
//! directory, waited for until its first pool has `ready` streamlets, stopped
//! with SIGTERM when dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use streamlet_client::Client;

pub struct Daemon {
    child: Child,
    pub socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// `BENCH_LOG` sets the daemon's log level (default `error`).
    pub fn start(config: &str, ready: u32) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.toml");
        std::fs::write(&path, config).unwrap();
        let socket = dir.path().join("bench.sock");
        let mut child = Command::new(env!("CARGO_BIN_EXE_streamletd"))
            .arg("--config")
            .arg(&path)
            .arg("--socket")
            .arg(&socket)
            .env("STREAMLET_LOG", std::env::var("BENCH_LOG").unwrap_or("error".into()))
            // Its demand history goes with the temporary directory.
            .env("STATE_DIRECTORY", dir.path().join("state"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut banner = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut banner).unwrap();
        assert!(banner.contains("listening"), "{banner}");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut client = Client::connect(&socket).await.unwrap();
            while client.status().await.unwrap().pools[0].ready < ready {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        Daemon { child, socket, _dir: dir }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child, not yet reaped.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}
