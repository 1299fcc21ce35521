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

/// An `Assign`'s labels: a one-entry map (a B-tree leaf of 536 bytes) costs
/// 3 bytes; an `Exec` command of n empty strings (24 bytes each) n bytes.
const PER_BYTE: usize = 1024;
const FIXED: usize = 4096;

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
