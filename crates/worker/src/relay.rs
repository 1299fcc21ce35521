//! `relay`: joins each stream to its upstream, copying both ways.
//!
//! A streamlet has no network of its own: the daemon opens the upstream
//! connection (to an address of the pool's `upstream_allow`) and hands it
//! over with the stream. Bytes to the client go through [`Stream`], so they
//! are counted and, on a socket the kernel does not pace, paced. When either
//! side ends its input, the other side's output is shut down after what is
//! in flight; the stream ends when both directions are done.

use std::os::fd::{AsFd, OwnedFd};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::handler::{BoxFuture, Handler, HandlerError, HandlerResult, StreamContext};
use std::sync::atomic::Ordering;

use streamlet_proto::worker::OnCorrupt;

use crate::framed::{read_frame, write_frame, Frame};
use crate::stream::{Counters, Stream};

#[derive(Debug, Clone, Copy, Default)]
pub struct Relay {
    /// `framing = "crc32c"`: both directions carry frames, each checked, and
    /// a corrupt one ends the stream or is dropped (and counted).
    pub framing: Option<OnCorrupt>,
}

impl Handler for Relay {
    fn serve(&self, client: Stream, ctx: StreamContext) -> BoxFuture<HandlerResult> {
        let self_framing = self.framing;
        Box::pin(async move {
            let upstream = ctx
                .upstream
                .as_ref()
                .ok_or_else(|| HandlerError::Failed("no upstream connection came with the stream".into()))?;
            let upstream: OwnedFd = upstream.as_fd().try_clone_to_owned()?;
            // The upstream is counted apart; only the client's side is the stream's.
            let mut upstream = Stream::new(upstream, Default::default())?;
            wait_connected(&upstream).await.map_err(|e| HandlerError::Failed(format!("upstream: {e}")))?;
            let counters = client.counters().clone();
            let (mut from_client, mut to_client) = tokio::io::split(client);
            let (mut from_upstream, mut to_upstream) = tokio::io::split(&mut upstream);
            let framing = self_framing;
            let up = pipe(&mut from_client, &mut to_upstream, framing, &counters);
            let down = pipe(&mut from_upstream, &mut to_client, framing, &counters);
            // The first failure in either direction ends the stream.
            tokio::try_join!(up, down)?;
            Ok(())
        })
    }
}

/// Copies until end of input (frame by frame when framed), then shuts the
/// writer's side down.
async fn pipe<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    framing: Option<OnCorrupt>,
    counters: &Counters,
) -> Result<(), HandlerError> {
    match framing {
        None => {
            tokio::io::copy(reader, writer).await?;
        }
        Some(on_corrupt) => loop {
            match read_frame(reader).await? {
                Frame::Valid(payload) => write_frame(writer, &payload).await?,
                Frame::End => break,
                Frame::Corrupt { expected, found } => {
                    if on_corrupt == OnCorrupt::End {
                        return Err(HandlerError::Corrupt(format!(
                            "CRC32C {found:08x} where the payload's is {expected:08x}"
                        )));
                    }
                    counters.corrupt_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
        },
    }
    writer.shutdown().await?;
    Ok(())
}

/// A non-blocking connect the daemon started completes, or fails, here.
async fn wait_connected(upstream: &Stream) -> std::io::Result<()> {
    upstream.writable().await?;
    let mut error: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt(SO_ERROR) into a c_int of the length given.
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&upstream.as_fd()),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut error as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if error != 0 {
        return Err(std::io::Error::from_raw_os_error(error));
    }
    Ok(())
}
