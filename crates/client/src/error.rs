//! What can go wrong talking to `streamletd`.

use std::error::Error;
use std::io;
use std::path::PathBuf;

use streamlet_proto::conn::ReadError;
use streamlet_proto::{CodecError, ErrorBody, ErrorCode};

/// An error from a [`Client`](crate::Client) call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control socket could not be reached.
    #[error("cannot connect to {}: {source}: {}", path.display(), connect_hint(path, source))]
    Connect { path: PathBuf, source: io::Error },
    /// The socket's directory could be controlled by another user.
    #[error("refusing the socket: {reason}")]
    Untrusted { reason: String },
    /// Writing to the control socket failed.
    #[error("writing to streamletd: {0}")]
    Io(#[from] io::Error),
    /// Reading from the control socket failed, or a frame was over the limit.
    #[error("reading from streamletd: {0}")]
    Read(#[from] ReadError),
    /// A message could not be encoded or decoded.
    #[error("control message: {0}")]
    Codec(#[from] CodecError),
    /// The daemon refused the handshake.
    #[error("streamletd refused the handshake: {0}")]
    Handshake(ErrorBody),
    /// The daemon answered a request with an error.
    #[error("{0}")]
    Server(ErrorBody),
    /// A request is larger than the daemon accepts (its `max_request`).
    #[error("request of {len} bytes is over streamletd's limit of {max} bytes")]
    RequestTooLarge { len: usize, max: u32 },
    /// The daemon closed the connection.
    #[error("streamletd closed the connection")]
    Closed,
    /// The daemon sent something other than what the protocol calls for here.
    #[error("expected {expected} from streamletd, received {received}")]
    Unexpected { expected: &'static str, received: String },
    /// The daemon did not answer the handshake or a request in time.
    #[error("timed out waiting for streamletd")]
    Timeout,
}

impl ClientError {
    /// The daemon's error code, for errors the daemon sent.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Handshake(body) | Self::Server(body) => Some(body.code),
            _ => None,
        }
    }

    /// Whether the connection is unusable after this error, so that a caller
    /// that wants to go on must connect again.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            Self::Connect { .. }
                | Self::Untrusted { .. }
                | Self::Io(_)
                | Self::Read(_)
                | Self::Handshake(_)
                | Self::Closed
        )
    }
}

/// What a failed connect most likely means, and what to do about it.
fn connect_hint(path: &std::path::Path, error: &io::Error) -> String {
    use std::os::unix::fs::MetadataExt;
    match error.kind() {
        io::ErrorKind::NotFound => {
            "no socket there: is streamletd running, and on this path? (give --socket or $STREAMLET_SOCKET)".into()
        }
        io::ErrorKind::ConnectionRefused => {
            "nothing listens there: streamletd is not running (the socket is left from an earlier run)".into()
        }
        io::ErrorKind::PermissionDenied => match std::fs::metadata(path) {
            Ok(meta) => {
                let owner = nix::unistd::User::from_uid(meta.uid().into())
                    .ok()
                    .flatten()
                    .map_or_else(|| meta.uid().to_string(), |u| u.name);
                let group = nix::unistd::Group::from_gid(meta.gid().into())
                    .ok()
                    .flatten()
                    .map_or_else(|| meta.gid().to_string(), |g| g.name);
                denied_hint(meta.mode() & 0o777, &owner, &group, meta.gid())
            }
            Err(_) => {
                "a directory on the way to the socket is closed to you: ask for access or run as its owner".into()
            }
        },
        _ => "is streamletd running? (give --socket or $STREAMLET_SOCKET)".into(),
    }
}

/// What to do about a socket whose mode keeps the caller out. Joining its
/// group is the way in, unless that group is gid 0: membership of root's
/// group reaches far past this socket, so the way then is a group of its own
/// for the daemon's clients.
fn denied_hint(mode: u32, owner: &str, group: &str, gid: u32) -> String {
    if gid == 0 {
        format!(
            "the socket is mode {mode:o}, {owner}:{group}, and group {group} is gid 0, not one to join: name a group \
             for streamletd's clients in its configuration ([access] socket_group, or SocketGroup= in its socket \
             unit), restart it and join that group, or run as {owner}"
        )
    } else {
        format!(
            "the socket is mode {mode:o}, {owner}:{group}: join its group (usermod -aG {group} $USER, then log in \
             again) or run as {owner}"
        )
    }
}

/// An error and its causes on one line, `: ` between them, skipping a cause
/// whose text the message before it already shows (as most of these errors'
/// messages do). For the `<program>: <error>` line of a command.
pub fn error_chain(err: &(dyn Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let more = err.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = err.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_error_shows_its_code_first() {
        let err = ClientError::Server(ErrorBody::new(ErrorCode::UnknownPool, "pool \"x\" is not configured"));
        assert_eq!(err.to_string(), "unknown_pool: pool \"x\" is not configured");
        assert_eq!(err.code(), Some(ErrorCode::UnknownPool));
        assert!(!err.is_connection_lost());
    }

    #[test]
    fn a_connect_error_names_the_path_and_the_way_out() {
        let err = ClientError::Connect {
            path: PathBuf::from("/run/x.sock"),
            source: io::Error::from(io::ErrorKind::NotFound),
        };
        let text = err.to_string();
        assert!(text.starts_with("cannot connect to /run/x.sock: "), "{text}");
        assert!(text.contains("$STREAMLET_SOCKET"), "{text}");
        assert_eq!(err.code(), None);
    }

    #[test]
    fn a_connect_error_says_what_is_wrong_by_its_kind() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join("stale.sock");
        drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
        let refused = ClientError::Connect { path: stale.clone(), source: io::ErrorKind::ConnectionRefused.into() };
        assert!(refused.to_string().contains("streamletd is not running"), "{refused}");
        let denied = ClientError::Connect { path: stale, source: io::ErrorKind::PermissionDenied.into() };
        let text = denied.to_string();
        // (Which way in it names depends on the group: `denied_hint`'s test.)
        assert!(text.contains("the socket is mode"), "{text}");
        let hidden = ClientError::Connect {
            path: dir.path().join("no/such.sock"),
            source: io::ErrorKind::PermissionDenied.into(),
        };
        assert!(hidden.to_string().contains("a directory on the way"), "{hidden}");
    }

    #[test]
    fn a_denied_connect_never_advises_joining_gid_0() {
        let root = denied_hint(0o660, "root", "root", 0);
        assert!(!root.contains("usermod"), "{root}");
        assert!(root.contains("mode 660, root:root") && root.contains("[access] socket_group"), "{root}");
        // Whatever gid 0 is called here.
        assert!(!denied_hint(0o660, "root", "wheel", 0).contains("usermod"));
        let group = denied_hint(0o660, "root", "streamlet", 998);
        assert!(group.contains("usermod -aG streamlet $USER"), "{group}");
        assert!(!group.contains("socket_group"), "{group}");
    }

    #[test]
    fn error_chain_shows_each_cause_once() {
        let err = ClientError::Connect { path: PathBuf::from("/x.sock"), source: io::Error::other("refused") };
        let text = error_chain(&err);
        assert_eq!(text.matches("refused").count(), 1, "{text}");

        #[derive(Debug, thiserror::Error)]
        #[error("binding 1.2.3.4:80")]
        struct Binding(#[source] io::Error);
        assert_eq!(error_chain(&Binding(io::Error::other("address in use"))), "binding 1.2.3.4:80: address in use");
    }
}
