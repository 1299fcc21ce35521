//! The stream table's rows: what the daemon keeps of each stream it counts,
//! and its own copy of the client connection ([`StreamFd`]), which ends the
//! stream for every process when it goes.

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::time::Instant;

use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::{sock, EndReason, WorkerId};

use crate::events::EventSink;

#[derive(Debug)]
pub(super) struct StreamEntry {
    pub(super) pool: String,
    pub(super) tenant: String,
    pub(super) worker: WorkerId,
    /// The daemon's own copy of the client connection.
    pub(super) fd: StreamFd,
    pub(super) opened: Instant,
    pub(super) bytes_in: u64,
    pub(super) bytes_out: u64,
    pub(super) owner: Option<EventSink>,
    /// The daemon ended it (`closed`, `preempted`): reported so, whatever the
    /// streamlet saw first.
    pub(super) closing: Option<EndReason>,
    /// The rate it is paced at (its streamlet and the kernel were told),
    /// bytes per second, when the quota covers it.
    pub(super) rate: Option<u64>,
    /// When its send rate was last measured, and `bytes_out` then.
    pub(super) usage_base: (Instant, u64),
    pub(super) priority: u8,
    /// Whether the quota covers it (and it must be released there).
    pub(super) managed: bool,
    /// Whether the kernel paces its socket (`sock::kernel_paces`, the
    /// streamlet's rule too): then the daemon sets `SO_MAX_PACING_RATE`,
    /// else the streamlet paces it.
    pub(super) kernel_paced: bool,
    /// What the open asked for, to place it again if its streamlet dies.
    pub(super) labels: BTreeMap<String, String>,
    pub(super) ingress: Option<u64>,
    pub(super) region: Option<String>,
    /// Bytes in and out counted by the streamlets it was on before this one.
    pub(super) carried: (u64, u64),
    /// Its send rate when last measured, bytes per second.
    pub(super) sending: Option<u64>,
    /// Time its writes waited for its rate, on this streamlet and before.
    pub(super) stalled_us: u64,
    pub(super) carried_stalled_us: u64,
    /// Corrupt frames its current streamlet reported so far.
    pub(super) corrupt_frames: u64,
}

/// The daemon's copy of a client connection, held while the stream is
/// counted. When it goes, the stream has ended for the daemon, whatever any
/// process still holds: the connection is shut down both ways, so no copy a
/// streamlet (or a command it ran, or one that escaped it) kept can serve a
/// stream the daemon no longer counts. It is then closed where a close
/// cannot hold up the daemon ([`ForeignFd`]: lingering off, on a closer
/// thread).
#[derive(Debug)]
pub(super) struct StreamFd(pub(super) ForeignFd);

impl StreamFd {
    /// Shuts the connection down both ways: the client reads end of file,
    /// the streamlet's reads and writes fail. A connection already gone has
    /// nothing left to shut.
    pub(super) fn shut_down(&self) {
        let _ = sock::shutdown(self.0.as_fd(), std::net::Shutdown::Both);
    }

    /// The kernel paces the socket at `rate` bytes per second, `None` for no
    /// limit (`SO_MAX_PACING_RATE`, which streamlets may not change). For a
    /// socket the kernel paces ([`sock::kernel_paces`]).
    pub(super) fn pace(&self, rate: Option<u64>) {
        if let Err(e) = sock::set_max_pacing_rate(self.0.as_fd(), rate.unwrap_or(u64::MAX)) {
            tracing::debug!(error = %e, "cannot set a stream's pacing rate");
        }
    }
}

impl Drop for StreamFd {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    use super::*;

    #[test]
    fn dropping_the_daemons_copy_ends_the_stream_for_every_holder() {
        let (mut client, theirs) = UnixStream::pair().unwrap();
        // A streamlet's copy (or a command's that escaped it), kept open.
        let mut kept = theirs.try_clone().unwrap();
        let copy = StreamFd(ForeignFd::new(theirs.into()));
        drop(copy);
        let mut buf = [0u8; 4];
        assert_eq!(client.read(&mut buf).unwrap(), 0, "the client reads end of file");
        assert!(kept.write_all(b"late").is_err(), "the kept copy cannot serve it");
        assert_eq!(kept.read(&mut buf).unwrap(), 0);
        streamlet_proto::foreign::wait_idle(std::time::Duration::from_secs(5));
    }

    #[test]
    fn a_connection_already_gone_is_shut_down_quietly() {
        let (client, theirs) = UnixStream::pair().unwrap();
        drop(client);
        let copy = StreamFd(ForeignFd::new(theirs.into()));
        copy.shut_down();
        copy.shut_down();
        copy.pace(Some(1_000));
    }
}
