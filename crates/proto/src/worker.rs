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

/// What a pool's streamlets run for each stream.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum HandlerSpec {
    /// Writes back every byte it reads.
    Echo,
    /// Runs `command` for each stream, the stream as its stdin and stdout;
    /// `direct`: the socket itself, else through pipes the streamlet copies.
    Exec { command: Vec<String>, direct: bool },
    /// Echo of CRC32C frames (`framing = "crc32c"`): each frame is checked,
    /// and a corrupt one ends the stream or is dropped.
    FramedEcho { on_corrupt: OnCorrupt },
    /// Joins each stream to the upstream connection the daemon hands over
    /// with it, copying both ways; with `framing` (`"crc32c"`), frame by
    /// frame, each checked.
    Relay { framing: Option<OnCorrupt> },
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
            Self::Echo => "echo",
            Self::Exec { .. } => "exec",
            Self::FramedEcho { .. } => "echo",
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
