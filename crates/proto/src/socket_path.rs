//! Where the control socket is, when nobody says.
//!
//! The daemon and every client resolve it the same way: an explicit path
//! (`--socket`), else `$STREAMLET_SOCKET`, else (the daemon only) its
//! config's `daemon.socket`, else `/run/streamlet/streamletd.sock` for root and
//! `$XDG_RUNTIME_DIR/streamlet/streamletd.sock` for anyone else
//! (`/tmp/streamlet-<uid>/streamletd.sock` without `XDG_RUNTIME_DIR`).

use std::path::PathBuf;

/// The environment variable naming the socket.
pub const SOCKET_ENV: &str = "STREAMLET_SOCKET";

/// The socket path for this user when neither a flag, the environment nor a
/// config names one.
pub fn fallback_socket_path() -> PathBuf {
    // SAFETY: geteuid cannot fail and has no side effects.
    let uid = unsafe { libc::geteuid() };
    if uid == 0 {
        return PathBuf::from("/run/streamlet/streamletd.sock");
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("streamlet/streamletd.sock"),
        _ => PathBuf::from(format!("/tmp/streamlet-{uid}/streamletd.sock")),
    }
}

/// `explicit`, else `$STREAMLET_SOCKET`, else `configured`, else the fallback.
pub fn resolve_socket_path(explicit: Option<PathBuf>, configured: Option<PathBuf>) -> PathBuf {
    explicit
        .or_else(|| std::env::var_os(SOCKET_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .or(configured)
        .unwrap_or_else(fallback_socket_path)
}
