//! Frames as a reader of the control socket takes them, each checked
//! against the bytes it came from.

use streamlet_proto::frame::{FrameBuf, FrameError, HEADER_LEN};

/// The next frame's payload, checked against the bytes it came from; `None`
/// at the end of the stream or at a refused prefix, checked too.
pub fn next_frame(frames: &mut FrameBuf, stream: &[u8], max: u32) -> Option<Vec<u8>> {
    let start = frames.consumed() as usize;
    assert_eq!(start + frames.pending(), stream.len(), "every byte is consumed or pending");
    match frames.next_frame(max) {
        Ok(Some(payload)) => {
            assert!(payload.len() <= max as usize);
            assert_eq!(frames.consumed() as usize, start + HEADER_LEN + payload.len());
            assert_eq!(stream[start..start + HEADER_LEN], (payload.len() as u32).to_be_bytes());
            assert_eq!(payload, stream[start + HEADER_LEN..start + HEADER_LEN + payload.len()]);
            Some(payload)
        }
        Ok(None) => {
            match frames.finish() {
                Ok(()) => assert_eq!(frames.pending(), 0),
                Err(FrameError::Truncated { have, want }) => {
                    assert_eq!(have, stream.len() - start);
                    assert!(have < want && want <= HEADER_LEN + max as usize, "{have} of {want}");
                }
                Err(e) => panic!("finish: {e}"),
            }
            None
        }
        Err(FrameError::TooLarge { len, max: limit }) => {
            assert!(len > limit && limit == max);
            assert_eq!(stream[start..start + HEADER_LEN], len.to_be_bytes());
            None
        }
        Err(e) => panic!("next_frame: {e}"),
    }
}
