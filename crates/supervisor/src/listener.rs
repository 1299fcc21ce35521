//! The control socket: made safely, removed on the way out.
//!
//! A path that already exists is probed before anything is removed: a live
//! daemon there is an error, a stale socket (connection refused) is replaced,
//! anything that is not a socket is left alone. The socket gets its mode
//! between `bind` and `listen`, so no client can connect before it has it.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use streamlet_proto::socket_path::check_trusted_dir;

/// The socket's mode: owner and group may connect.
pub const SOCKET_MODE: u32 = 0o660;

const BACKLOG: i32 = 1024;

#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error("cannot create the socket directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("refusing the socket directory: {reason}")]
    Untrusted { reason: String },
    #[error("another streamletd is already listening on {path}")]
    InUse { path: PathBuf },
    #[error("{path} exists and is not a socket: move it away or choose another --socket")]
    NotSocket { path: PathBuf },
    #[error("socket path {path} is longer than the 107 bytes a Unix socket allows")]
    TooLong { path: PathBuf },
    #[error("cannot listen on {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
}

/// A listening control socket. Dropping it removes the path, if the path
/// still names this socket.
#[derive(Debug)]
pub struct ControlSocket {
    listener: Option<std::os::unix::net::UnixListener>,
    path: PathBuf,
    /// Device and inode of the socket this made (and removes); `None` for
    /// one systemd made and passed, whose path is systemd's.
    identity: Option<(u64, u64)>,
}

impl ControlSocket {
    pub fn bind(path: &Path) -> Result<Self, BindError> {
        Self::bind_with_group(path, None)
    }

    /// [`bind`](Self::bind), the socket given to `group` (`[access]
    /// socket_group`) before anyone can connect.
    pub fn bind_with_group(path: &Path, group: Option<u32>) -> Result<Self, BindError> {
        let bind_err = |source| BindError::Bind { path: path.to_owned(), source };
        if path.as_os_str().len() > 107 {
            return Err(BindError::TooLong { path: path.to_owned() });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            // Root's socket directory must be traversable by the gateways in
            // the socket's group; a user's is private.
            // SAFETY: geteuid cannot fail and has no side effects.
            let mode = if unsafe { libc::geteuid() } == 0 { 0o755 } else { 0o700 };
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(mode)
                .create(dir)
                .map_err(|source| BindError::Dir { path: dir.to_owned(), source })?;
            check_trusted_dir(dir).map_err(|reason| BindError::Untrusted { reason })?;
        }
        remove_if_stale(path)?;
        let fd = socket().map_err(bind_err)?;
        bind(&fd, path).map_err(bind_err)?;
        let listening = std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(SOCKET_MODE))
            .and_then(|()| std::os::unix::fs::chown(path, None, group))
            .and_then(|()| {
                // SAFETY: listen on a bound socket we own.
                if unsafe { libc::listen(fd.as_raw_fd(), BACKLOG) } < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(())
                }
            });
        if let Err(e) = listening {
            let _ = std::fs::remove_file(path);
            return Err(bind_err(e));
        }
        let meta = std::fs::symlink_metadata(path).map_err(bind_err)?;
        Ok(Self { listener: Some(fd.into()), path: path.to_owned(), identity: Some((meta.dev(), meta.ino())) })
    }

    /// The listening socket systemd made and passed (`streamletd.socket`):
    /// its mode, group and path are the socket unit's, and it stays when the
    /// daemon exits (systemd listens on it meanwhile and starts the daemon
    /// again on the next connection).
    pub fn from_activation(fd: OwnedFd) -> io::Result<Self> {
        let listener = std::os::unix::net::UnixListener::from(fd);
        let path = listener.local_addr()?.as_pathname().map(Path::to_owned).ok_or_else(|| {
            io::Error::other("the socket systemd passed has no path (streamletd.socket: ListenStream=/absolute/path)")
        })?;
        Ok(Self { listener: Some(listener), path, identity: None })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The listener, registered with the current tokio runtime. Once. The
    /// connections it accepts take no descriptors until the daemon lets them
    /// (a connection whose peer may open streams, after its handshake): a
    /// peer that may not cannot hand one over at all.
    pub fn take_listener(&mut self) -> io::Result<tokio::net::UnixListener> {
        let listener = self.listener.take().ok_or_else(|| io::Error::other("listener already taken"))?;
        if !streamlet_proto::sock::set_pass_rights(std::os::fd::AsFd::as_fd(&listener), false)? {
            tracing::warn!(
                "this kernel cannot refuse descriptors on a socket (SO_PASSRIGHTS, Linux 6.16): peers that may not open streams can still send some, which are disposed of as they come"
            );
        }
        tokio::net::UnixListener::from_std(listener)
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let Some(identity) = self.identity else { return };
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if (meta.dev(), meta.ino()) == identity {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn remove_if_stale(path: &Path) -> Result<(), BindError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(BindError::Bind { path: path.to_owned(), source }),
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotSocket { path: path.to_owned() });
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(BindError::InUse { path: path.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale control socket");
            std::fs::remove_file(path).map_err(|source| BindError::Bind { path: path.to_owned(), source })
        }
        Err(source) => Err(BindError::Bind { path: path.to_owned(), source }),
    }
}

fn socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2) call.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socket succeeded; the descriptor is ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn bind(fd: &OwnedFd, path: &Path) -> io::Result<()> {
    // SAFETY: an all-zero sockaddr_un is valid.
    let mut addr: libc::sockaddr_un = unsafe { mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    let len = mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    // SAFETY: addr is a valid sockaddr_un of at least `len` bytes (the path is
    // at most 107 bytes, checked by the caller, and NUL-terminated by zeroing).
    let rc = unsafe { libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_un).cast(), len as libc::socklen_t) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn the_socket_has_its_mode_and_is_removed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/d.sock");
        let socket = ControlSocket::bind(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, SOCKET_MODE);
        drop(socket);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_socket_is_not_taken_over_and_a_stale_one_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let live = ControlSocket::bind(&path).unwrap();
        assert!(matches!(ControlSocket::bind(&path), Err(BindError::InUse { .. })));
        drop(live);
        // A stale one: the file stays, nobody listens.
        let stale = std::os::unix::net::UnixListener::bind(dir.path().join("other.sock")).unwrap();
        drop(stale);
        let again = ControlSocket::bind(&dir.path().join("other.sock"));
        assert!(again.is_ok(), "{again:?}");
    }

    #[test]
    fn a_socket_directory_others_can_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let open = dir.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, PermissionsExt::from_mode(0o777)).unwrap();
        let err = ControlSocket::bind(&open.join("d.sock")).unwrap_err();
        assert!(matches!(err, BindError::Untrusted { .. }), "{err}");
        assert!(!open.join("d.sock").exists());
    }

    #[test]
    fn a_regular_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        std::fs::write(&path, b"precious").unwrap();
        assert!(matches!(ControlSocket::bind(&path), Err(BindError::NotSocket { .. })));
        assert_eq!(std::fs::read(&path).unwrap(), b"precious");
    }

    #[test]
    fn a_passed_socket_keeps_its_path_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("activated.sock");
        let made = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let socket = ControlSocket::from_activation(made.into()).unwrap();
        assert_eq!(socket.path(), path);
        drop(socket);
        assert!(path.exists(), "systemd's socket is systemd's to remove");
    }
}
