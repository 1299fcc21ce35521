//! The two encodings of the same messages.

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::frame::HEADER_LEN;

/// How frames after the handshake are encoded, chosen by the client in its
/// `Hello`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// UTF-8 JSON, one object per frame. For gateways in any language.
    Json,
    /// postcard 1.x, compact and fast. For Rust clients built on this crate.
    Postcard,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Postcard => "postcard",
        }
    }

    /// The message alone, without a frame header.
    pub fn encode<T: Serialize>(self, message: &T) -> Result<Vec<u8>, CodecError> {
        Ok(match self {
            Self::Json => serde_json::to_vec(message)?,
            Self::Postcard => postcard::to_stdvec(message)?,
        })
    }

    /// A whole frame: the 4-byte big-endian length, then the message, in one
    /// buffer so that it goes out in one write.
    pub fn encode_frame<T: Serialize>(self, message: &T) -> Result<Vec<u8>, CodecError> {
        const FRAME_START: usize = 256;
        // Room for the common message at once: a frame grown from the header
        // up reallocates a few times on the way.
        let mut frame = Vec::with_capacity(FRAME_START);
        frame.extend_from_slice(&[0u8; HEADER_LEN]);
        match self {
            Self::Json => serde_json::to_writer(&mut frame, message)?,
            Self::Postcard => frame = postcard::to_extend(message, frame)?,
        }
        let len = u32::try_from(frame.len() - HEADER_LEN).unwrap_or(u32::MAX);
        frame[..HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        // Queued frames are counted by their length: they hold no more.
        frame.shrink_to_fit();
        Ok(frame)
    }

    /// Decodes one message; trailing bytes are an error in both encodings.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, CodecError> {
        Ok(match self {
            Self::Json => serde_json::from_slice(bytes)?,
            Self::Postcard => {
                let (message, rest) = postcard::take_from_bytes(bytes)?;
                if !rest.is_empty() {
                    return Err(CodecError::Postcard(postcard::Error::DeserializeBadEncoding));
                }
                message
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::message::{Request, ServerMessage};
    use crate::worker::{FromWorker, ToWorker};

    fn round_trip<T>(message: &T)
    where
        T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
    {
        for encoding in [Encoding::Json, Encoding::Postcard] {
            let frame = encoding.encode_frame(message).unwrap();
            let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
            assert_eq!(len, frame.len() - 4, "{encoding:?} header");
            let back: T = encoding.decode(&frame[4..]).unwrap();
            assert_eq!(&back, message, "{encoding:?}");
        }
    }

    /// Checks that every value the derived strategy makes survives both
    /// encodings. The strategies of the larger messages nest deeply enough to
    /// overflow a test thread's 2 MiB stack in a debug build, so they run on a
    /// thread with room to spare.
    fn every_value_round_trips<T>()
    where
        T: Arbitrary + Serialize + DeserializeOwned + PartialEq + std::fmt::Debug + 'static,
    {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| {
                let mut runner = proptest::test_runner::TestRunner::default();
                runner
                    .run(&any::<T>(), |message| {
                        round_trip(&message);
                        Ok(())
                    })
                    .unwrap();
            })
            .unwrap()
            .join()
            .unwrap();
    }

    #[test]
    fn requests_round_trip() {
        every_value_round_trips::<Request>();
    }

    #[test]
    fn server_messages_round_trip() {
        every_value_round_trips::<ServerMessage>();
    }

    #[test]
    fn worker_messages_round_trip() {
        every_value_round_trips::<ToWorker>();
        every_value_round_trips::<FromWorker>();
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes: Vec<u8>) {
            let _ = Encoding::Json.decode::<Request>(&bytes);
            let _ = Encoding::Postcard.decode::<Request>(&bytes);
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let request = Request { id: 1, body: crate::RequestBody::Status(crate::StatusRequest {}) };
        for encoding in [Encoding::Json, Encoding::Postcard] {
            let mut bytes = encoding.encode(&request).unwrap();
            bytes.extend_from_slice(b"xx");
            assert!(encoding.decode::<Request>(&bytes).is_err(), "{encoding:?}");
        }
    }

    #[test]
    fn json_shape_is_the_documented_one() {
        let json = r#"{"id":3,"body":{"open":{"pool":"echo","tenant":"acme"}}}"#;
        let request: Request = Encoding::Json.decode(json.as_bytes()).unwrap();
        assert_eq!(request.id, 3);
        match request.body {
            crate::RequestBody::Open(open) => {
                assert_eq!(open.pool, "echo");
                assert_eq!(open.tenant.as_deref(), Some("acme"));
                assert!(open.labels.is_empty());
            }
            other => panic!("decoded {other:?}"),
        }
        let reply = ServerMessage::Reply(crate::Reply {
            id: 3,
            body: crate::ReplyBody::Error(crate::ErrorBody::new(crate::ErrorCode::NoCapacity, "full")),
        });
        assert_eq!(
            String::from_utf8(Encoding::Json.encode(&reply).unwrap()).unwrap(),
            r#"{"reply":{"id":3,"body":{"error":{"code":"no_capacity","message":"full"}}}}"#
        );
    }
}

/// Every JSON example in PROTOCOL.md is a message this crate reads: the
/// document cannot drift from the code unnoticed.
#[cfg(test)]
mod protocol_md {
    use crate::handshake::{Hello, HelloReply};
    use crate::{EndReason, ErrorBody, Event, ExitCause, Request, ServerMessage};

    fn decodes(line: &str) -> bool {
        serde_json::from_str::<Request>(line).is_ok()
            || serde_json::from_str::<ServerMessage>(line).is_ok()
            || serde_json::from_str::<Hello>(line).is_ok()
            || serde_json::from_str::<HelloReply>(line).is_ok()
            || serde_json::from_str::<Event>(line).is_ok()
            || serde_json::from_str::<EndReason>(line).is_ok()
            || serde_json::from_str::<ExitCause>(line).is_ok()
            || serde_json::from_str::<ErrorBody>(line).is_ok()
    }

    #[test]
    fn every_json_example_decodes() {
        let doc = include_str!("../../../PROTOCOL.md");
        let mut in_json = false;
        let mut checked = 0;
        for line in doc.lines() {
            match line.trim() {
                "```json" => in_json = true,
                "```" => in_json = false,
                l if in_json && l.starts_with('{') => {
                    assert!(decodes(l), "PROTOCOL.md example does not decode: {l}");
                    checked += 1;
                }
                _ => {}
            }
        }
        assert!(checked >= 10, "found only {checked} examples");
    }
}
