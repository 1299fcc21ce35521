//! The control protocol spoken between `streamletd`, its gateways and operators,
//! and between `streamletd` and its streamlets.
//!
//! Two links use it:
//!
//! * **the control socket** (a `SOCK_STREAM` Unix socket): a JSON handshake
//!   ([`handshake`]), then length-prefixed frames ([`frame`]) carrying
//!   [`Request`]s one way and [`ServerMessage`]s the other, encoded as postcard
//!   or JSON ([`Encoding`]), with client connections attached to `Open` requests
//!   as `SCM_RIGHTS` ([`fdpass`]);
//! * **the streamlet channel** (a `SOCK_SEQPACKET` socketpair inherited by each
//!   streamlet): one postcard message per datagram ([`worker`], [`channel`]).
//!
//! Both ends of both links make their socket system calls through [`sock`],
//! so that the daemon and its streamlets judge a client connection alike.
//!
//! `PROTOCOL.md` at the top of the repository is the reference for gateway
//! authors; this crate is the reference implementation.
//!
//! ```
//! use streamlet_proto::{Encoding, Request, RequestBody, StatusRequest};
//!
//! let request = Request { id: 7, body: RequestBody::Status(StatusRequest {}) };
//! for encoding in [Encoding::Json, Encoding::Postcard] {
//!     let frame = encoding.encode_frame(&request).unwrap();
//!     let decoded: Request = encoding.decode(&frame[4..]).unwrap();
//!     assert_eq!(decoded, request);
//! }
//! ```

pub mod channel;
pub mod codec;
pub mod conn;
pub mod error;
pub mod escape;
pub mod fdpass;
pub mod foreign;
pub mod frame;
mod from_policy;
pub mod handshake;
pub mod message;
pub mod sock;
pub mod socket_path;
pub mod units;
pub mod worker;

pub use codec::{CodecError, Encoding};
pub use error::{ErrorBody, ErrorCode};
pub use message::*;

/// The protocol version this crate speaks. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;
