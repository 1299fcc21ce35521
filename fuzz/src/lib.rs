//! What the fuzz targets share: a meter of the heap a decoder takes
//! ([`heap`]), frames checked against their bytes ([`frames`]), the round
//! trip every decoded message must survive ([`round_trips`]), and (in its tests) the
//! seed inputs of each target.
//!
//! Each target in `fuzz_targets/` feeds libFuzzer's bytes to one decoder
//! exactly as streamlet meets them from outside, and checks more than "no
//! panic": what decodes encodes again to the same value, frames account for
//! every byte, and no decode takes heap that the input does not pay for.

pub mod frames;
pub mod heap;
#[cfg(test)]
mod seeds;

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;
use streamlet_proto::Encoding;

/// A message decoded from `wire` encodes again, and that encoding decodes
/// to the same message. In postcard, which has one encoding of a value
/// (up to overlong varints, which only shrink), the new bytes are never
/// longer than the ones read.
pub fn round_trips<T>(encoding: Encoding, message: &T, wire: &[u8])
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encoding.encode(message).expect("a decoded message encodes again");
    let again: T = encoding.decode(&bytes).expect("a message's own encoding decodes");
    assert_eq!(&again, message, "{} round trip", encoding.as_str());
    if encoding == Encoding::Postcard {
        assert!(bytes.len() <= wire.len(), "{} bytes read re-encode to {}", wire.len(), bytes.len());
    }
}
