//! CRC32C framing, and `echo` over it.
//!
//! A frame is a 4-byte big-endian payload length, the payload, then the
//! payload's CRC32C (Castagnoli), 4 bytes big-endian. A frame whose CRC does
//! not match is corrupt: it is counted, then ends the stream (`corrupt_frame`)
//! or is dropped, as the pool's `on_corrupt` says. The length has no check of
//! its own: dropping recovers from a corrupt payload or CRC, not from a
//! corrupt length, which shifts every later frame (it then shows as corrupt
//! frames, a length over [`MAX_FRAME`] that ends the stream, or a frame
//! waiting for bytes that never come).

use std::sync::atomic::Ordering;

use streamlet_proto::worker::OnCorrupt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::handler::{BoxFuture, Handler, HandlerError, HandlerResult, StreamContext};
use crate::stream::Stream;

/// The longest payload a frame may carry: small, because a streamlet holds
/// one frame per stream in memory (a hundred streams: 6.4 MiB at most).
pub const MAX_FRAME: usize = 64 * 1024;

/// One frame read: its payload, or why it is not one.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    Valid(Vec<u8>),
    /// The CRC did not match (the payload is dropped).
    Corrupt {
        expected: u32,
        found: u32,
    },
    /// The peer closed its side at a frame boundary.
    End,
}

/// Reads one frame. A length over [`MAX_FRAME`] and a connection that ends
/// inside a frame are errors.
pub async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> Result<Frame, HandlerError> {
    let mut header = [0u8; 4];
    match reader.read(&mut header[..1]).await? {
        0 => return Ok(Frame::End),
        _ => reader.read_exact(&mut header[1..]).await?,
    };
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(HandlerError::Corrupt(format!("frame length {len} is over {MAX_FRAME}")));
    }
    let mut payload = vec![0u8; len + 4];
    reader.read_exact(&mut payload).await?;
    let found = u32::from_be_bytes(payload[len..].try_into().expect("4 bytes"));
    payload.truncate(len);
    let expected = crc32c::crc32c(&payload);
    if expected != found {
        return Ok(Frame::Corrupt { expected, found });
    }
    Ok(Frame::Valid(payload))
}

/// Writes `payload` as one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(writer: &mut W, payload: &[u8]) -> std::io::Result<()> {
    writer.write_all(&(payload.len() as u32).to_be_bytes()).await?;
    writer.write_all(payload).await?;
    writer.write_all(&crc32c::crc32c(payload).to_be_bytes()).await
}

/// `echo` of frames: each valid frame comes back as a frame.
#[derive(Debug, Clone, Copy)]
pub struct FramedEcho {
    pub on_corrupt: OnCorrupt,
}

impl Handler for FramedEcho {
    fn serve(&self, mut stream: Stream, _ctx: StreamContext) -> BoxFuture<HandlerResult> {
        let on_corrupt = self.on_corrupt;
        Box::pin(async move {
            loop {
                match read_frame(&mut stream).await? {
                    Frame::Valid(payload) => write_frame(&mut stream, &payload).await?,
                    Frame::End => {
                        stream.shutdown().await?;
                        return Ok(());
                    }
                    Frame::Corrupt { expected, found } => {
                        if on_corrupt == OnCorrupt::End {
                            // Counted once, by the end reason.
                            return Err(HandlerError::Corrupt(format!(
                                "CRC32C {found:08x} where the payload's is {expected:08x}"
                            )));
                        }
                        stream.counters().corrupt_frames.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_a_flipped_bit_is_caught() {
        let mut wire = Vec::new();
        write_frame(&mut wire, b"hello").await.unwrap();
        write_frame(&mut wire, b"").await.unwrap();
        assert_eq!(wire.len(), 4 + 5 + 4 + 8);
        let mut reader = &wire[..];
        assert_eq!(read_frame(&mut reader).await.unwrap(), Frame::Valid(b"hello".to_vec()));
        assert_eq!(read_frame(&mut reader).await.unwrap(), Frame::Valid(Vec::new()));
        assert_eq!(read_frame(&mut reader).await.unwrap(), Frame::End);

        wire[6] ^= 0x01;
        let mut reader = &wire[..];
        assert!(matches!(read_frame(&mut reader).await.unwrap(), Frame::Corrupt { .. }));
        assert_eq!(read_frame(&mut reader).await.unwrap(), Frame::Valid(Vec::new()), "resynchronised");
    }

    #[tokio::test]
    async fn an_oversized_length_or_a_cut_frame_is_an_error() {
        let mut reader = &[0xffu8, 0xff, 0xff, 0xff][..];
        assert!(matches!(read_frame(&mut reader).await, Err(HandlerError::Corrupt(_))));
        let mut reader = &[0u8, 0, 0, 9, 1, 2][..];
        assert!(matches!(read_frame(&mut reader).await, Err(HandlerError::Io(_))));
    }
}
