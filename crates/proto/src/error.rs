//! Error codes carried in replies: stable names a gateway can match on.

use serde::{Deserialize, Serialize};

/// A stable error code. The JSON encoding is the snake_case name; codes are
/// only ever added, never renumbered.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame could not be decoded, or the request is malformed.
    BadRequest,
    /// A frame's length prefix is over the limit; the connection is closed.
    FrameTooLarge,
    /// The handshake named a protocol version the daemon does not speak.
    UnsupportedVersion,
    /// The handshake named an encoding the daemon does not know.
    UnsupportedEncoding,
    /// The request named a pool that the configuration does not have.
    UnknownPool,
    /// The request named a stream the daemon does not track (any more).
    UnknownStream,
    /// Every ready streamlet of the pool is full.
    NoCapacity,
    /// An `Open` arrived without a file descriptor attached.
    MissingFd,
    /// The attached file descriptor is not a connected stream socket.
    BadFd,
    /// The daemon is shutting down and takes no new streams.
    ShuttingDown,
    /// A bug or an unexpected failure inside the daemon.
    Internal,
    /// The daemon is out of a resource (file descriptors, memory) for now;
    /// the same request may succeed later.
    Overloaded,
    /// The tenant holds as many streams as its `max_streams` allows.
    TenantLimit,
    /// The stream's minimum rate does not fit in the bandwidth left, even
    /// after any preemption the pool allows.
    Insufficient,
    /// The lease's TTL passed before it was refreshed.
    Expired,
    /// A stream of higher priority took the lease's bandwidth.
    Preempted,
    /// No such lease.
    UnknownLease,
    /// The request named a streamlet the daemon does not have (any more).
    UnknownWorker,
    /// A `relay` stream's upstream could not be connected to.
    UpstreamUnavailable,
    /// The client's role (from its uid and gids) does not allow the request.
    Unauthorized,
    /// A reload found the configuration file invalid; the running
    /// configuration stays.
    BadConfig,
    /// The connection sent nothing for the daemon's `idle_timeout` and
    /// holds nothing (no stream, no waiting open, no subscription): closed.
    Idle,
}

impl ErrorCode {
    /// The code's stable name, as in the JSON encoding.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::FrameTooLarge => "frame_too_large",
            Self::UnsupportedVersion => "unsupported_version",
            Self::UnsupportedEncoding => "unsupported_encoding",
            Self::UnknownPool => "unknown_pool",
            Self::UnknownStream => "unknown_stream",
            Self::NoCapacity => "no_capacity",
            Self::MissingFd => "missing_fd",
            Self::BadFd => "bad_fd",
            Self::ShuttingDown => "shutting_down",
            Self::Overloaded => "overloaded",
            Self::TenantLimit => "tenant_limit",
            Self::Insufficient => "insufficient",
            Self::Expired => "expired",
            Self::Preempted => "preempted",
            Self::UnknownLease => "unknown_lease",
            Self::UnknownWorker => "unknown_worker",
            Self::UpstreamUnavailable => "upstream_unavailable",
            Self::Unauthorized => "unauthorized",
            Self::BadConfig => "bad_config",
            Self::Idle => "idle",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error reply: a stable code and a message for humans.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[error("{code}: {message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}
