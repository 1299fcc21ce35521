//! The daemon's core: the pools and their streamlets, the monitor that reaps
//! and replaces them, and the control server. Its configuration is
//! [`streamlet_config`], re-exported as [`config`].
//!
//! `streamletd`'s `main` parses its flags, loads a [`Config`] (refusing a bad
//! one before any socket is bound) and calls [`run`]:
//!
//! ```no_run
//! # async fn f() -> Result<(), streamlet_supervisor::DaemonError> {
//! let config = streamlet_supervisor::Config::embedded();
//! let socket = streamlet_proto::socket_path::resolve_socket_path(None, config.daemon.socket.clone());
//! streamlet_supervisor::run(config, socket, |path| println!("listening on {}", path.display())).await
//! # }
//! ```
//!
//! `ARCHITECTURE.md` at the top of the repository names the tasks and who
//! owns which state.

mod conn;
mod context;
pub mod core;
mod daemon;
mod events;
pub mod exe;
mod fairness;
pub mod fds;
mod front;
pub mod instance;
pub mod link;
pub mod listener;
mod logcap;
pub mod metrics;
mod reload;
mod requests;
pub mod restart;
pub mod sandbox;
mod scrape;
mod server;
mod spawn_thread;
mod spawner;
pub mod state;
mod stderr;
pub mod systemd;
pub(crate) mod validate;
mod writer;

/// The configuration is a crate of its own (the simulator reads it too);
/// here it keeps its old path.
pub use streamlet_config as config;
/// A relay's upstream is parsed with the configuration; the daemon connects it.
pub use streamlet_config::upstream;

pub use config::{Config, ConfigError};
pub use daemon::{run, Daemon, DaemonError};
