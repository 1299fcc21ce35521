//! The control socket as a client (`streamletctl`, a gateway built on
//! `streamlet-client`) reads it from whatever answers at the socket's path,
//! the daemon or an impostor: a JSON `HelloReply` of at most 4 KiB, then
//! `ServerMessage`s in the encoding the welcome names, as large as the
//! welcome's `max_reply` up to the client's own limit.
//!
//! Checks: the frames account for every byte; every decoded message
//! encodes again to the same value; no decode holds heap its input did not
//! pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamlet_fuzz::frames::next_frame;
use streamlet_fuzz::{heap, round_trips};
use streamlet_proto::frame::{FrameBuf, MAX_HANDSHAKE_LEN, MAX_REPLY_LEN};
use streamlet_proto::handshake::HelloReply;
use streamlet_proto::{Encoding, ServerMessage, PROTOCOL_VERSION};

/// As in `control_request`: nested JSON objects take about 105 bytes per
/// input byte, a list of streamlets with a label each about 55.
const PER_BYTE: usize = 256;
const FIXED: usize = 16 * 1024;

fuzz_target!(|stream: &[u8]| {
    let mut frames = FrameBuf::new();
    frames.extend(stream);
    let Some(first) = next_frame(&mut frames, stream, MAX_HANDSHAKE_LEN) else { return };
    let (reply, peak) = heap::peak_during(|| Encoding::Json.decode::<HelloReply>(&first));
    heap::assert_paid_for("a hello reply", first.len(), peak, PER_BYTE, FIXED);
    let welcome = match reply {
        Ok(reply) => {
            round_trips(Encoding::Json, &reply, &first);
            match reply {
                // The client asked for this encoding; it refuses another.
                HelloReply::Welcome(welcome) if welcome.version == PROTOCOL_VERSION => welcome,
                _ => return,
            }
        }
        Err(_) => return,
    };
    let max = welcome.max_reply.min(MAX_REPLY_LEN);
    while let Some(payload) = next_frame(&mut frames, stream, max) {
        let (message, peak) = heap::peak_during(|| welcome.encoding.decode::<ServerMessage>(&payload));
        heap::assert_paid_for("a server message", payload.len(), peak, PER_BYTE, FIXED);
        match message {
            Ok(message) => round_trips(welcome.encoding, &message, &payload),
            Err(_) => return,
        }
    }
});
