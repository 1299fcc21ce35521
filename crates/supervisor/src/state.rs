//! The daemon's state directory: what must survive a restart. Today that is
//! the demand history the forecasts learn from (`history.bin`).
//!
//! Nothing here is fatal. A directory that cannot be made, a file that
//! cannot be read or written: the daemon says so and runs on without a
//! memory. A corrupt file is kept aside as `history.bin.corrupt` (for a
//! look) and replaced.

use std::io::Write;
use std::path::{Path, PathBuf};

use streamlet_autoscale::history::{self, HistoryFile};

/// The history's file name in the state directory.
pub const HISTORY_FILE: &str = "history.bin";

#[derive(Debug)]
pub struct StateDir {
    /// `None`: the directory could not be made; nothing is kept.
    path: Option<PathBuf>,
}

/// Where state goes when the config names no `daemon.state_dir`: systemd's
/// `$STATE_DIRECTORY` (`StateDirectory=streamlet`), else `/var/lib/streamlet`
/// for root, else `$XDG_STATE_HOME/streamlet` or `~/.local/state/streamlet`.
pub fn default_state_dir() -> PathBuf {
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several are configured.
        if let Some(first) = dirs.to_string_lossy().split(':').find(|d| !d.is_empty()) {
            return PathBuf::from(first);
        }
    }
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/streamlet");
    }
    match (std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
        (Some(state), _) if !state.is_empty() => PathBuf::from(state).join("streamlet"),
        (_, Some(home)) => PathBuf::from(home).join(".local/state/streamlet"),
        _ => PathBuf::from("/var/lib/streamlet"),
    }
}

impl StateDir {
    /// Opens (making it if need be, mode 0700) the state directory.
    pub fn open(path: &Path) -> Self {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path) {
            Ok(()) => Self { path: Some(path.to_owned()) },
            Err(e) => {
                tracing::warn!(
                    dir = %path.display(), error = %e,
                    "cannot make the state directory; demand history will not survive a restart (set daemon.state_dir)"
                );
                Self { path: None }
            }
        }
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
        let Some(dir) = self.path.clone() else { return };
        tokio::task::spawn_blocking(move || write_history(&dir, &history));
    }

    /// [`save_history`](Self::save_history), on this thread.
    pub fn save_history_now(&self, history: &HistoryFile) {
        if let Some(dir) = &self.path {
            write_history(dir, history);
        }
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

fn write_history(dir: &Path, history: &HistoryFile) {
    let file = dir.join(HISTORY_FILE);
    let temporary = dir.join(format!(".{HISTORY_FILE}.new"));
    let written = (|| {
        let mut out = std::fs::File::create(&temporary)?;
        out.write_all(&history::encode(history))?;
        out.sync_all()?;
        std::fs::rename(&temporary, &file)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temporary);
        tracing::warn!(file = %file.display(), error = %e, "cannot write the demand history");
    }
}
