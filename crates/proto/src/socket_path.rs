//! Where the control socket is, when nobody says.
//!
//! The daemon and every client resolve it the same way: an explicit path
//! (`--socket`), else `$STREAMLET_SOCKET`, else (the daemon only) its
//! config's `daemon.socket`, else the fallback:
//!
//! | who | fallback |
//! | --- | --- |
//! | root | `/run/streamlet/streamletd.sock` |
//! | anyone else, `XDG_RUNTIME_DIR` set and not empty | `$XDG_RUNTIME_DIR/streamlet/streamletd.sock` |
//! | anyone else, `XDG_RUNTIME_DIR` unset or empty | `/tmp/streamlet-<uid>/streamletd.sock` |
//!
//! The last is in a directory anyone could have made first: the daemon
//! makes it mode 0700, and it and the clients ([`check_fallback`]) refuse
//! one that another user owns or can write.

use std::path::{Path, PathBuf};

/// The environment variable naming the socket.
pub const SOCKET_ENV: &str = "STREAMLET_SOCKET";

/// The socket path for this user when neither a flag, the environment nor a
/// config names one (the table above).
pub fn fallback_socket_path() -> PathBuf {
    // SAFETY: geteuid cannot fail and has no side effects.
    let uid = unsafe { libc::geteuid() };
    fallback_for(uid, std::env::var_os("XDG_RUNTIME_DIR"))
}

/// The fallback for `uid` with this `XDG_RUNTIME_DIR`.
fn fallback_for(uid: u32, runtime_dir: Option<std::ffi::OsString>) -> PathBuf {
    if uid == 0 {
        return PathBuf::from("/run/streamlet/streamletd.sock");
    }
    match runtime_dir {
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

/// Checks that `dir` is a directory that only its owner (this user or root)
/// can change: not writable by group or others, unless sticky like `/tmp`.
/// A socket in a directory someone else controls can be swapped for theirs,
/// and a gateway would then hand its clients' connections to them.
pub fn check_trusted_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    // SAFETY: geteuid cannot fail and has no side effects.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid && meta.uid() != 0 {
        return Err(format!(
            "{} belongs to uid {}, not to this user ({uid}) or root: someone else could replace the socket in it",
            dir.display(),
            meta.uid()
        ));
    }
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.mode() & 0o022 != 0 && !sticky {
        return Err(format!(
            "{} is writable by group or others (mode {:o}): someone else could replace the socket in it",
            dir.display(),
            meta.mode() & 0o7777
        ));
    }
    Ok(())
}

/// For clients: checks the directory of the fallback socket path under
/// `/tmp`, the one place another user could have made it first.
pub fn check_fallback(path: &Path) -> Result<(), String> {
    if path != fallback_socket_path() || !path.starts_with("/tmp") {
        return Ok(());
    }
    match path.parent() {
        Some(dir) if dir.exists() => check_trusted_dir(dir),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    /// The documented fallbacks, the one without `XDG_RUNTIME_DIR` included.
    #[test]
    fn the_fallback_is_the_documented_one() {
        assert_eq!(fallback_for(0, Some("/run/user/0".into())), Path::new("/run/streamlet/streamletd.sock"));
        assert_eq!(
            fallback_for(1000, Some("/run/user/1000".into())),
            Path::new("/run/user/1000/streamlet/streamletd.sock")
        );
        assert_eq!(fallback_for(1000, None), Path::new("/tmp/streamlet-1000/streamletd.sock"));
        assert_eq!(fallback_for(1000, Some("".into())), Path::new("/tmp/streamlet-1000/streamletd.sock"));
    }

    #[test]
    fn group_or_world_writable_directories_are_refused_unless_sticky() {
        let dir = std::env::temp_dir().join(format!("streamlet-trust-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(check_trusted_dir(&dir), Ok(()));
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_trusted_dir(&dir).unwrap_err();
        assert!(err.contains("writable by group or others"), "{err}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(check_trusted_dir(&dir), Ok(()), "sticky, like /tmp");
        std::fs::remove_dir(&dir).unwrap();
    }
}
