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
    #[error("cannot connect to {}: {source} (is streamletd running? set --socket or $STREAMLET_SOCKET)", path.display())]
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
