//! Length-prefixed frames.
//!
//! ```text
//! +--------+--------+--------+--------+---------------------------+
//! |  payload length, u32 big-endian   |  payload (length bytes)   |
//! +--------+--------+--------+--------+---------------------------+
//! ```
//!
//! A length over the receiver's limit is refused as soon as the four header
//! bytes are in: nothing is allocated for it.

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 4;

/// The largest request a client may send (after the handshake).
pub const MAX_REQUEST_LEN: u32 = 64 * 1024;

/// The largest frame the daemon sends (a `streams` listing of a full host).
pub const MAX_REPLY_LEN: u32 = 16 * 1024 * 1024;

/// The largest handshake frame, either way.
pub const MAX_HANDSHAKE_LEN: u32 = 4 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {len} bytes is over the limit of {max} bytes")]
    TooLarge { len: u32, max: u32 },
    #[error("connection closed inside a frame ({have} of {want} bytes received)")]
    Truncated { have: usize, want: usize },
}

/// An incremental frame decoder over a growable buffer.
#[derive(Debug, Default)]
pub struct FrameBuf {
    buf: Vec<u8>,
    start: usize,
    /// Stream offset of `buf[start]`: bytes already returned as frames.
    consumed: u64,
}

impl FrameBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 64 * 1024 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received since the start of the stream.
    pub fn received(&self) -> u64 {
        self.consumed + self.pending() as u64
    }

    /// Bytes returned as frames (headers included) since the start of the stream.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Bytes received and not yet returned as a frame.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole frame's payload, if one is in; an error as soon as a
    /// header announces more than `max` bytes.
    pub fn next_frame(&mut self, max: u32) -> Result<Option<Vec<u8>>, FrameError> {
        let data = &self.buf[self.start..];
        if data.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        if len > max {
            return Err(FrameError::TooLarge { len, max });
        }
        let end = HEADER_LEN + len as usize;
        if data.len() < end {
            return Ok(None);
        }
        let payload = data[HEADER_LEN..end].to_vec();
        self.start += end;
        self.consumed += end as u64;
        Ok(Some(payload))
    }

    /// At end of input: an error if a frame was begun and not finished.
    pub fn finish(&self) -> Result<(), FrameError> {
        let data = &self.buf[self.start..];
        if data.is_empty() {
            return Ok(());
        }
        let want = if data.len() < HEADER_LEN {
            HEADER_LEN
        } else {
            HEADER_LEN + u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize
        };
        Err(FrameError::Truncated { have: data.len(), want })
    }
}

/// A frame header for a payload of `len` bytes.
pub fn header(len: usize) -> [u8; HEADER_LEN] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn feed(buf: &mut FrameBuf, bytes: &[u8]) {
        buf.extend(bytes);
    }

    #[test]
    fn refuses_a_four_gib_prefix_before_reading_it() {
        let mut buf = FrameBuf::new();
        feed(&mut buf, &[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(buf.next_frame(MAX_REQUEST_LEN), Err(FrameError::TooLarge { len: u32::MAX, max: MAX_REQUEST_LEN }));
    }

    #[test]
    fn accepts_a_frame_exactly_at_the_limit() {
        let mut buf = FrameBuf::new();
        feed(&mut buf, &header(16));
        feed(&mut buf, &[7; 16]);
        assert_eq!(buf.next_frame(16).unwrap(), Some(vec![7; 16]));
        assert_eq!(buf.finish(), Ok(()));
    }

    #[test]
    fn reports_a_truncated_frame() {
        let mut buf = FrameBuf::new();
        feed(&mut buf, &header(10));
        feed(&mut buf, b"abc");
        assert_eq!(buf.next_frame(100).unwrap(), None);
        assert_eq!(buf.finish(), Err(FrameError::Truncated { have: 7, want: 14 }));
    }

    proptest! {
        #[test]
        fn any_split_yields_the_same_frames(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
            cut in 1usize..64,
        ) {
            let mut wire = Vec::new();
            for p in &payloads {
                wire.extend_from_slice(&header(p.len()));
                wire.extend_from_slice(p);
            }
            let mut buf = FrameBuf::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(cut) {
                feed(&mut buf, chunk);
                while let Some(frame) = buf.next_frame(1024).unwrap() {
                    got.push(frame);
                }
            }
            prop_assert_eq!(got, payloads);
            prop_assert_eq!(buf.finish(), Ok(()));
        }
    }
}
