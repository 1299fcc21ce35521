//! The daemon's state directory: what must survive a restart. Today that is
//! the demand history the forecasts learn from (`history.bin`).
//!
//! Nothing here is fatal. A directory that cannot be made, a file that
//! cannot be read or written: the daemon says so and runs on without a
//! memory. A corrupt file is kept aside as `history.bin.corrupt` (for a
//! look) and replaced.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use streamlet_autoscale::history::{self, HistoryFile};

/// The history's file name in the state directory.
pub const HISTORY_FILE: &str = "history.bin";

#[derive(Debug)]
pub struct StateDir {
    /// `None`: the directory could not be made; nothing is kept.
    path: Option<PathBuf>,
    /// One write at a time, and never an older copy over a newer one: the
    /// generation last written.
    writer: Arc<Mutex<u64>>,
    generation: AtomicU64,
    /// A failed write was reported (the next ones are not, until one works).
    failing: Arc<AtomicBool>,
}

/// Where the state of the daemon on `socket` goes when the config names no
/// `daemon.state_dir`: systemd's `$STATE_DIRECTORY` (`StateDirectory=`, one
/// per unit), else a directory of this daemon's own under `/var/lib/streamlet`
/// for root or `$XDG_STATE_HOME/streamlet` (`~/.local/state/streamlet`)
/// otherwise: that directory itself for the system socket, its subdirectory
/// named for the socket for any other, as the cgroup subtree is. Two daemons
/// never share a history, and a restart on the same socket finds its own.
pub fn default_state_dir(socket: &Path) -> PathBuf {
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are configured.
        if let Some(first) = dirs.to_string_lossy().split(':').find(|d| !d.is_empty()) {
            return PathBuf::from(first);
        }
    }
    let base = if nix::unistd::geteuid().is_root() {
        PathBuf::from("/var/lib/streamlet")
    } else {
        match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
            (Some(state), _) if !state.is_empty() => PathBuf::from(state).join("streamlet"),
            (_, Some(home)) => PathBuf::from(home).join(".local/state/streamlet"),
            _ => PathBuf::from("/var/lib/streamlet"),
        }
    };
    match crate::instance::name(socket) {
        name if name == "streamlet" => base,
        name => base.join(name),
    }
}

impl StateDir {
    /// Opens (making it if need be, mode 0700) the state directory.
    pub fn open(path: &Path) -> Self {
        use std::os::unix::fs::DirBuilderExt;
        let made = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .and_then(|()| nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).map_err(std::io::Error::from));
        let path = match made {
            Ok(()) => Some(path.to_owned()),
            Err(e) => {
                tracing::warn!(
                    dir = %path.display(), error = %e,
                    "cannot write to the state directory; demand history will not survive a restart (set daemon.state_dir)"
                );
                None
            }
        };
        Self { path, writer: Arc::default(), generation: AtomicU64::new(1), failing: Arc::default() }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The history kept by the last run: empty if there is none, or if the
    /// file is corrupt (reported, and moved aside).
    pub fn load_history(&self) -> HistoryFile {
        let Some(dir) = &self.path else { return HistoryFile::default() };
        let file = dir.join(HISTORY_FILE);
        let bytes = match read_bounded(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return HistoryFile::default(),
            Err(e) => {
                tracing::error!(file = %file.display(), error = %e, "cannot read the demand history; starting without it");
                return HistoryFile::default();
            }
        };
        match history::decode(&bytes) {
            Ok(history) => {
                tracing::info!(file = %file.display(), pools = history.pools.len(), "demand history loaded");
                history
            }
            Err(e) => {
                let aside = dir.join(format!("{HISTORY_FILE}.corrupt"));
                let moved = std::fs::rename(&file, &aside);
                tracing::error!(
                    file = %file.display(), error = %e, kept_as = %aside.display(), moved = moved.is_ok(),
                    "the demand history is corrupt; starting a new one"
                );
                HistoryFile::default()
            }
        }
    }

    /// Writes the history (on a blocking thread): to a temporary file,
    /// synced, then renamed over the old one, so a crash leaves the old or
    /// the new file, never half of one.
    pub fn save_history(&self, history: HistoryFile) {
        let Some(write) = self.writer_for() else { return };
        tokio::task::spawn_blocking(move || write(&history));
    }

    /// [`save_history`](Self::save_history), on this thread, after any
    /// write in flight.
    pub fn save_history_now(&self, history: &HistoryFile) {
        if let Some(write) = self.writer_for() {
            write(history);
        }
    }

    /// A write of the next generation, to run anywhere.
    fn writer_for(&self) -> Option<impl FnOnce(&HistoryFile) + Send + 'static> {
        let dir = self.path.clone()?;
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let (writer, failing) = (self.writer.clone(), self.failing.clone());
        Some(move |history: &HistoryFile| {
            let mut last = writer.lock().unwrap_or_else(|p| p.into_inner());
            if *last > generation {
                return; // a newer copy is written already
            }
            match write_history(&dir, history) {
                Ok(()) => {
                    *last = generation;
                    if failing.swap(false, Ordering::Relaxed) {
                        tracing::info!(dir = %dir.display(), "the demand history is written again");
                    }
                }
                Err(e) if !failing.swap(true, Ordering::Relaxed) => tracing::warn!(
                    file = %dir.join(HISTORY_FILE).display(), error = %e,
                    "cannot write the demand history (said once until it works again)"
                ),
                Err(_) => {}
            }
        })
    }
}

/// The file's bytes, or an error if it is larger than any history can be.
fn read_bounded(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let limit = history::codec::MAX_FILE_BYTES as u64;
    let mut bytes = Vec::new();
    std::fs::File::open(file)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::other(format!("larger than the largest history ({limit} bytes)")));
    }
    Ok(bytes)
}

/// Writes to a temporary file, syncs it, renames it over the old one and
/// syncs the directory, so a crash leaves the old file or the new one.
fn write_history(dir: &Path, history: &HistoryFile) -> std::io::Result<()> {
    let file = dir.join(HISTORY_FILE);
    let temporary = dir.join(format!(".{HISTORY_FILE}.new"));
    let written = (|| {
        let mut out = std::fs::File::create(&temporary)?;
        out.write_all(&history::encode(history))?;
        out.sync_all()?;
        std::fs::rename(&temporary, &file)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
