//! The handshake: the first frame each way, always JSON.
//!
//! ```text
//! client                                   daemon
//!   | -- {"version":1,"encoding":"json"} -->  |
//!   | <-- {"welcome":{"version":1,...}} ----  |   or {"error":{...}} and close
//!   | == frames in the chosen encoding ====>  |
//! ```
//!
//! The client must send its `Hello` within [`HANDSHAKE_TIMEOUT`], in a frame
//! of at most [`MAX_HANDSHAKE_LEN`](crate::frame::MAX_HANDSHAKE_LEN) bytes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::Encoding;
use crate::error::{ErrorBody, ErrorCode};
use crate::PROTOCOL_VERSION;

/// How long the daemon waits for a `Hello` before it closes the connection.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's first frame.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the client speaks.
    pub version: u32,
    /// `"json"` or `"postcard"`: the encoding of every later frame, both ways.
    pub encoding: String,
    /// Free text naming the client, for the daemon's log.
    #[serde(default)]
    pub client: Option<String>,
}

impl Hello {
    pub fn new(encoding: Encoding, client: &str) -> Self {
        Self { version: PROTOCOL_VERSION, encoding: encoding.as_str().to_owned(), client: Some(client.to_owned()) }
    }
}

/// The daemon's answer to a `Hello`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum HelloReply {
    Welcome(Welcome),
    /// The handshake failed; the daemon closes the connection after this.
    Error(ErrorBody),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    pub version: u32,
    pub encoding: Encoding,
    /// `streamletd <version>`.
    pub server: String,
    /// The largest request frame the daemon accepts.
    pub max_request: u32,
    /// The largest frame the daemon sends.
    pub max_reply: u32,
}

/// Checks a client's `Hello` frame: the encoding to use, or the error to send
/// before closing.
pub fn accept_hello(frame: &[u8]) -> Result<(Hello, Encoding), ErrorBody> {
    let hello: Hello = serde_json::from_slice(frame).map_err(|e| {
        ErrorBody::new(
            ErrorCode::BadRequest,
            format!("the first frame must be a JSON hello like {{\"version\":{PROTOCOL_VERSION},\"encoding\":\"json\"}}: {e}"),
        )
    })?;
    if hello.version != PROTOCOL_VERSION {
        return Err(ErrorBody::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this daemon speaks version {PROTOCOL_VERSION}",
                hello.version
            ),
        ));
    }
    let encoding = match hello.encoding.as_str() {
        "json" => Encoding::Json,
        "postcard" => Encoding::Postcard,
        other => {
            return Err(ErrorBody::new(
                ErrorCode::UnsupportedEncoding,
                format!("encoding {other:?} is not supported; use \"json\" or \"postcard\""),
            ))
        }
    };
    Ok((hello, encoding))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_version_is_named_in_the_error() {
        let err = accept_hello(br#"{"version":99,"encoding":"json"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedVersion);
        assert!(err.message.contains("99"), "{}", err.message);
    }

    #[test]
    fn unknown_encoding_is_named_in_the_error() {
        let err = accept_hello(br#"{"version":1,"encoding":"cbor"}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::UnsupportedEncoding);
        assert!(err.message.contains("cbor"));
    }

    #[test]
    fn garbage_is_a_bad_request() {
        assert_eq!(accept_hello(b"\x00\x01garbage").unwrap_err().code, ErrorCode::BadRequest);
    }

    #[test]
    fn both_encodings_are_accepted() {
        assert_eq!(accept_hello(br#"{"version":1,"encoding":"json"}"#).unwrap().1, Encoding::Json);
        assert_eq!(accept_hello(br#"{"version":1,"encoding":"postcard","client":"x"}"#).unwrap().1, Encoding::Postcard);
    }
}
