//! The streamlet channel as `streamletd` reads it from a streamlet, whose
//! code may be hostile: one postcard `FromWorker` per datagram of at most
//! 64 KiB (a longer one is refused before it is decoded).
//!
//! Checks: a decoded message encodes again, within the channel's limit and
//! in no more bytes than were read, to the same value; no decode holds heap
//! its input did not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamlet_fuzz::heap;
use streamlet_proto::channel;
use streamlet_proto::worker::{FromWorker, MAX_MESSAGE_LEN};

/// A `Stats` of n counters (40 bytes each in memory) costs at least 5n
/// bytes; strings take what they are sent.
const PER_BYTE: usize = 64;
const FIXED: usize = 4096;

fuzz_target!(|datagram: &[u8]| {
    if datagram.len() > MAX_MESSAGE_LEN {
        return;
    }
    let (decoded, peak) = heap::peak_during(|| channel::decode::<FromWorker>(datagram));
    heap::assert_paid_for("a streamlet's message", datagram.len(), peak, PER_BYTE, FIXED);
    if let Ok(message) = decoded {
        let bytes = channel::encode(&message).expect("a decoded message fits the channel again");
        assert!(bytes.len() <= datagram.len(), "{} bytes read re-encode to {}", datagram.len(), bytes.len());
        assert_eq!(channel::decode::<FromWorker>(&bytes).expect("its encoding decodes"), message);
    }
});
