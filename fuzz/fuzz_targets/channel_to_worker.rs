//! The streamlet channel as a streamlet (`streamlet-worker`) reads it from
//! its end of the socketpair: one postcard `ToWorker` per datagram of at
//! most 64 KiB.
//!
//! Checks: a decoded message encodes again, within the channel's limit and
//! in no more bytes than were read, to the same value; no decode holds heap
//! its input did not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamlet_fuzz::heap;
use streamlet_proto::channel;
use streamlet_proto::worker::{ToWorker, MAX_MESSAGE_LEN};

/// An `Exec` command of n empty strings takes 24 bytes for each input byte;
/// an `Assign`'s labels about 50 per entry of 2 bytes, and its first B-tree
/// leaf (544 bytes) fits in the fixed part.
const PER_BYTE: usize = 256;
const FIXED: usize = 16 * 1024;

fuzz_target!(|datagram: &[u8]| {
    if datagram.len() > MAX_MESSAGE_LEN {
        return;
    }
    let (decoded, peak) = heap::peak_during(|| channel::decode::<ToWorker>(datagram));
    heap::assert_paid_for("a message to a streamlet", datagram.len(), peak, PER_BYTE, FIXED);
    if let Ok(message) = decoded {
        let bytes = channel::encode(&message).expect("a decoded message fits the channel again");
        assert!(bytes.len() <= datagram.len(), "{} bytes read re-encode to {}", datagram.len(), bytes.len());
        assert_eq!(channel::decode::<ToWorker>(&bytes).expect("its encoding decodes"), message);
    }
});
