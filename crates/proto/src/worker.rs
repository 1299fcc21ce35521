//! The messages between the daemon and a streamlet, over the streamlet's
//! `SOCK_SEQPACKET` channel: one postcard message per datagram, a stream's
//! descriptor attached to its `Assign`.
//!
//! ```text
//! daemon                                    streamlet
//!   | -- Init (queued before exec) -------->  |
//!   | <------------------------------ Ready   |
//!   | -- Assign + fd ---------------------->  |
//!   | <--------------------- Stats (periodic) |
//!   | <------------------------------ Ended   |
//! ```
//!
//! The streamlet exits when the channel reaches end of file: the daemon is gone.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::message::{EndReason, StreamId, WorkerId};

/// The largest datagram either side sends.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// The most streams in one `Stats` message.
pub const MAX_STATS_PER_MESSAGE: usize = 1024;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum ToWorker {
    /// The first message: who the streamlet is and what it runs.
    Init(Init),
    /// Serve this stream; its descriptor is attached.
    Assign(Assign),
    /// End this stream now.
    Close { stream: StreamId },
    /// The stream's allocated rate changed (bytes per second).
    UpdateRate { stream: StreamId, rate: u64 },
    /// The connection to the stream's upstream (`relay`), opened by the
    /// daemon, is attached; its `Assign` follows.
    Upstream { stream: StreamId },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Init {
    pub worker: WorkerId,
    pub pool: String,
    pub handler: HandlerSpec,
    /// How often to send `Stats` for streams whose counters moved; 0 never.
    pub stats_interval_ms: u32,
    /// Send `Heartbeat` when nothing else was sent for this long; 0 never.
    /// A streamlet silent for its pool's `heartbeat_timeout` is killed as hung.
    pub heartbeat_interval_ms: u32,
}

/// What a pool's streamlets run for each stream. A handler that can be
/// framed (`framing = "crc32c"`) has `framing`: what a corrupt frame does,
/// or `None` for bytes as they come.
///
/// On the channel it keeps the layout PROTOCOL.md gives (a framed echo is a
/// variant of its own, index 2), through a private copy of that layout.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[serde(from = "WireHandler", into = "WireHandler")]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum HandlerSpec {
    /// Writes back every byte it reads; framed, each frame is checked and a
    /// valid one is sent back as a frame.
    Echo { framing: Option<OnCorrupt> },
    /// Runs `command` for each stream, the stream as its stdin and stdout;
    /// `direct`: the socket itself, else through pipes the streamlet copies.
    Exec { command: Vec<String>, direct: bool },
    /// Joins each stream to the upstream connection the daemon hands over
    /// with it, copying both ways; framed, frame by frame, each checked.
    Relay { framing: Option<OnCorrupt> },
}

/// [`HandlerSpec`] as the channel carries it, variant by variant as
/// PROTOCOL.md numbers them, so streamlets built before echo's framing
/// became a field read the same bytes.
#[derive(Serialize, Deserialize)]
enum WireHandler {
    Echo,
    Exec { command: Vec<String>, direct: bool },
    FramedEcho { on_corrupt: OnCorrupt },
    Relay { framing: Option<OnCorrupt> },
}

impl From<HandlerSpec> for WireHandler {
    fn from(spec: HandlerSpec) -> Self {
        match spec {
            HandlerSpec::Echo { framing: None } => Self::Echo,
            HandlerSpec::Echo { framing: Some(on_corrupt) } => Self::FramedEcho { on_corrupt },
            HandlerSpec::Exec { command, direct } => Self::Exec { command, direct },
            HandlerSpec::Relay { framing } => Self::Relay { framing },
        }
    }
}

impl From<WireHandler> for HandlerSpec {
    fn from(wire: WireHandler) -> Self {
        match wire {
            WireHandler::Echo => Self::Echo { framing: None },
            WireHandler::FramedEcho { on_corrupt } => Self::Echo { framing: Some(on_corrupt) },
            WireHandler::Exec { command, direct } => Self::Exec { command, direct },
            WireHandler::Relay { framing } => Self::Relay { framing },
        }
    }
}

/// What a corrupt frame does to its stream.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum OnCorrupt {
    /// The stream ends with `corrupt_frame`.
    End,
    /// The frame is counted and dropped; the stream goes on.
    Drop,
}

impl HandlerSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Echo { .. } => "echo",
            Self::Exec { .. } => "exec",
            Self::Relay { .. } => "relay",
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Assign {
    pub stream: StreamId,
    pub tenant: String,
    pub labels: BTreeMap<String, String>,
    /// The allocated rate, bytes per second; `None`: no quota.
    pub rate: Option<u64>,
    /// Read from the client at most this fast (the stream's max, where the
    /// pool has `ingress_limit = true`), bytes per second; `None`: no limit.
    pub ingress: Option<u64>,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum FromWorker {
    /// Initialised; ready for streams.
    Ready { pid: u32 },
    /// A stream ended; the streamlet has closed its descriptor.
    Ended(Ended),
    /// Counters of streams that moved since the last report.
    Stats { streams: Vec<StreamCounters> },
    /// Still alive, with nothing else to say.
    Heartbeat,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Ended {
    pub stream: StreamId,
    pub reason: EndReason,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct StreamCounters {
    pub stream: StreamId,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Microseconds its writes have waited for its rate (the streamlet's own
    /// pacing; 0 where the kernel paces).
    pub stalled_us: u64,
    /// Frames that failed their check (`framing = "crc32c"`).
    pub corrupt_frames: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes PROTOCOL.md gives each handler (postcard: the variant's
    /// index, then its fields), which a streamlet of any build decodes.
    #[test]
    fn handlers_keep_their_layout_on_the_channel() {
        let cases: [(HandlerSpec, &[u8]); 6] = [
            (HandlerSpec::Echo { framing: None }, &[0]),
            (HandlerSpec::Exec { command: vec!["/bin/cat".into()], direct: true }, b"\x01\x01\x08/bin/cat\x01"),
            (HandlerSpec::Echo { framing: Some(OnCorrupt::End) }, &[2, 0]),
            (HandlerSpec::Echo { framing: Some(OnCorrupt::Drop) }, &[2, 1]),
            (HandlerSpec::Relay { framing: None }, &[3, 0]),
            (HandlerSpec::Relay { framing: Some(OnCorrupt::Drop) }, &[3, 1, 1]),
        ];
        for (spec, bytes) in cases {
            assert_eq!(postcard::to_stdvec(&spec).unwrap(), bytes, "{spec:?}");
            assert_eq!(postcard::from_bytes::<HandlerSpec>(bytes).unwrap(), spec);
        }
    }
}
