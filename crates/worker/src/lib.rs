//! The streamlet runtime: what runs inside each sandboxed streamlet process.
//!
//! A streamlet reads its control channel (descriptor 3, a `SOCK_SEQPACKET`
//! socket shared with the daemon), learns its pool and handler from the first
//! message, says it is ready, then serves each stream the daemon assigns to it
//! in a task of its own, reporting each stream's end with its byte counts. It
//! exits when the channel reaches end of file: the daemon is gone.
//!
//! A worker binary of your own is a `main` that hands [`run_main`] a factory of
//! [`Handler`]s:
//!
//! ```no_run
//! use std::sync::Arc;
//! use streamlet_worker::{builtin_handler, Handler, HandlerResult, Stream, StreamContext};
//! use tokio::io::AsyncWriteExt;
//!
//! /// Greets each client, then closes.
//! struct Hello;
//!
//! impl Handler for Hello {
//!     fn serve(&self, mut stream: Stream, ctx: StreamContext) -> streamlet_worker::BoxFuture<HandlerResult> {
//!         Box::pin(async move {
//!             stream.write_all(format!("hello, stream {}\n", ctx.stream).as_bytes()).await?;
//!             Ok(())
//!         })
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     streamlet_worker::run_main(|spec| match spec.kind() {
//!         "echo" => builtin_handler(spec),
//!         _ => Ok(Arc::new(Hello)),
//!     })
//! }
//! ```

mod echo;
mod exec;
pub mod framed;
mod handler;
mod pacer;
mod relay;
mod runtime;
mod stream;

pub use echo::Echo;
pub use exec::Exec;
pub use handler::{builtin_handler, BoxFuture, Handler, HandlerError, HandlerFactory, HandlerResult, StreamContext};
pub use relay::Relay;
pub use runtime::{run, run_main, WorkerError};
pub use stream::{Counters, Stream};
