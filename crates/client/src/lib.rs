//! The async client of `streamletd`'s control socket, used by gateways,
//! `streamletctl`, the demo and the tests.
//!
//! * [`Client`]: one connection past the handshake, with a method per request
//!   (`open` passes the client connection's descriptor along), pipelining
//!   ([`Client::send`], [`Client::recv`]) and the stream events the daemon
//!   sends to the connection that opened a stream;
//! * [`gateway`]: a TCP gateway that hands every accepted connection to a pool;
//! * [`table`]: the listings as aligned text tables and as JSON.
//!
//! The wire format is [`proto`]'s; see `PROTOCOL.md` for gateways in other
//! languages.
//!
//! ```no_run
//! use std::os::fd::AsFd;
//!
//! use streamlet_client::proto::OpenRequest;
//! use streamlet_client::{table, Client};
//!
//! # async fn demo(connection: std::net::TcpStream) -> Result<(), streamlet_client::ClientError> {
//! let mut client = Client::connect("/run/streamlet/streamletd.sock").await?;
//! print!("{}", table::status_table(&client.status().await?));
//!
//! let request = OpenRequest::new("echo");
//! let opened = client.open(request, connection.as_fd()).await?;
//! drop(connection); // the streamlet has its own copy now
//! println!("stream {} on streamlet {}", opened.stream, opened.worker);
//! let ended = client.next_event().await?;
//! println!("{ended:?}");
//! # Ok(())
//! # }
//! ```

mod backoff;
mod client;
mod error;
pub mod gateway;
mod handshake;
pub mod table;

pub use client::{Client, CLIENT_NAME, DEFAULT_REQUEST_TIMEOUT};
pub use error::{error_chain, ClientError};
pub use streamlet_proto as proto;
