//! The handler trait: what a pool's streamlets do with each stream.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use streamlet_proto::worker::HandlerSpec;
use streamlet_proto::{EndReason, StreamId};

use crate::echo::Echo;
use crate::stream::Stream;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// How a handler's work on one stream ended.
pub type HandlerResult = Result<(), HandlerError>;

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Reading or writing the client connection failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The handler's own failure.
    #[error("{0}")]
    Failed(String),
    /// The stream's command (`exec`) ended other than with status 0.
    #[error("command {0}")]
    Exited(streamlet_proto::ExitCause),
    /// A frame failed its check (`framing = "crc32c"`).
    #[error("corrupt frame: {0}")]
    Corrupt(String),
}

impl HandlerError {
    /// The end reason reported to the daemon.
    pub fn end_reason(&self) -> EndReason {
        match self {
            Self::Io(e) => EndReason::IoError { message: e.to_string() },
            Self::Failed(message) => EndReason::HandlerError { message: message.clone() },
            Self::Exited(cause) => EndReason::CommandExited { cause: cause.clone() },
            Self::Corrupt(message) => EndReason::CorruptFrame { message: message.clone() },
        }
    }
}

/// What a handler knows about the stream it serves.
#[derive(Debug, Clone)]
pub struct StreamContext {
    pub stream: StreamId,
    pub pool: Arc<str>,
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    /// The stream's allocated rate in bytes per second, kept current as the
    /// daemon re-allocates; 0 when no quota applies.
    pub rate: Arc<std::sync::atomic::AtomicU64>,
    /// For `relay`: the connection to the upstream, opened by the daemon.
    pub upstream: Option<Arc<std::os::fd::OwnedFd>>,
}

/// Serves streams. One value serves every stream of the streamlet, each in a
/// task of its own; a stream ends when its future completes (or when the
/// daemon closes it: the future is then dropped).
pub trait Handler: Send + Sync + 'static {
    fn serve(&self, stream: Stream, ctx: StreamContext) -> BoxFuture<HandlerResult>;
}

/// Builds the handler a pool's `Init` asks for, or says why it cannot.
pub type HandlerFactory = dyn Fn(&HandlerSpec) -> Result<Arc<dyn Handler>, String> + Send + Sync;

/// The handlers that ship with streamlet.
pub fn builtin_handler(spec: &HandlerSpec) -> Result<Arc<dyn Handler>, String> {
    match spec {
        HandlerSpec::Echo { framing: None } => Ok(Arc::new(Echo)),
        HandlerSpec::Echo { framing: Some(on_corrupt) } => {
            Ok(Arc::new(crate::framed::FramedEcho { on_corrupt: *on_corrupt }))
        }
        HandlerSpec::Exec { command, direct } => Ok(Arc::new(crate::exec::Exec::new(command.clone(), *direct)?)),
        HandlerSpec::Relay { framing } => Ok(Arc::new(crate::relay::Relay { framing: *framing })),
    }
}
