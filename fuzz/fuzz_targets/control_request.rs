//! The control socket as `streamletd` reads it from a peer: frames with a
//! length prefix, first a JSON `Hello` of at most 4 KiB, then requests of at
//! most 64 KiB in the encoding the hello chose, each decoded as a `Request`
//! (and, when that fails in JSON, as any JSON value, for its id).
//!
//! Checks: the frames account for every byte; a frame over its limit is
//! refused on its prefix; a decoded hello or request encodes again to the
//! same value; no decode holds heap its input did not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamlet_fuzz::frames::next_frame;
use streamlet_fuzz::{heap, round_trips};
use streamlet_proto::error::ErrorCode;
use streamlet_proto::frame::{FrameBuf, MAX_HANDSHAKE_LEN, MAX_REQUEST_LEN};
use streamlet_proto::handshake::{accept_hello, Hello};
use streamlet_proto::{Encoding, Request};

/// Heap a decode may hold per input byte. The densest inputs measured are
/// nested JSON objects, about 105 bytes of B-tree nodes per input byte; a
/// single small map (a 544-byte leaf for 3 postcard bytes) and the error
/// messages fit in the fixed part. A reservation for an announced length
/// that the bytes do not back is far over.
const PER_BYTE: usize = 256;
const FIXED: usize = 16 * 1024;

fuzz_target!(|stream: &[u8]| {
    let mut frames = FrameBuf::new();
    frames.extend(stream);
    let Some(hello) = next_frame(&mut frames, stream, MAX_HANDSHAKE_LEN) else { return };
    let (accepted, peak) = heap::peak_during(|| accept_hello(&hello));
    heap::assert_paid_for("a hello", hello.len(), peak, PER_BYTE, FIXED);
    let encoding = match accepted {
        Ok((hello, encoding)) => {
            assert_eq!(hello.encoding, encoding.as_str());
            let again: Hello = Encoding::Json.decode(&Encoding::Json.encode(&hello).unwrap()).unwrap();
            assert_eq!(again, hello);
            encoding
        }
        Err(refusal) => {
            let expected = [ErrorCode::BadRequest, ErrorCode::UnsupportedVersion, ErrorCode::UnsupportedEncoding];
            assert!(expected.contains(&refusal.code), "{refusal:?}");
            return;
        }
    };
    while let Some(payload) = next_frame(&mut frames, stream, MAX_REQUEST_LEN) {
        let (decoded, peak) = heap::peak_during(|| encoding.decode::<Request>(&payload));
        heap::assert_paid_for("a request", payload.len(), peak, PER_BYTE, FIXED);
        match decoded {
            Ok(request) => round_trips(encoding, &request, &payload),
            // The daemon answers a JSON frame that has an id and closes on
            // anything else.
            Err(_) if encoding == Encoding::Json => {
                let (value, peak) = heap::peak_during(|| serde_json::from_slice::<serde_json::Value>(&payload));
                heap::assert_paid_for("a JSON value", payload.len(), peak, PER_BYTE, FIXED);
                let id = value.ok().and_then(|v| v.get("id")?.as_u64());
                if id.is_none_or(|id| id == 0) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
});
