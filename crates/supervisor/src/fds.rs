//! The daemon's descriptor budget.
//!
//! Every stream holds one descriptor in the daemon (its copy of the client's
//! connection), every control connection two, every streamlet a few; the
//! kernel refuses the next one at `RLIMIT_NOFILE`. At the limit it would
//! drop a descriptor passed with an `open` (`MSG_CTRUNC`), refuse the
//! accept of a gateway reconnecting (`EMFILE`), and fail the spawn of a
//! streamlet. So the daemon keeps a reserve ([`FdBudget::reserve`]): once
//! what it holds comes within the reserve of the limit, opens are refused
//! as `overloaded`, and the reserve is left for what keeps the daemon
//! running (accepts, spawns, the metrics listener, the demand history, the
//! descriptors a `recvmsg` installs before they are judged).
//!
//! What it holds is counted, not listed (a walk of `/proc/self/fd` costs
//! time in proportion to the count): the descriptors open when the daemon
//! began serving, plus those received from outside and not yet closed
//! ([`streamlet_proto::foreign::held`]: streams, descriptors waiting for
//! their frames, closes in progress), plus two per control connection and
//! [`PER_STREAMLET`] per streamlet.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Descriptors one streamlet costs the daemon, at most: its channel, its
/// stderr pipe, its pidfd, its cgroup's pre-opened files.
pub const PER_STREAMLET: usize = 8;

/// Descriptors one control connection costs: the socket and the copy its
/// last close goes through.
pub const PER_CONNECTION: usize = 2;

/// What the daemon may hold, and what it holds besides streams.
#[derive(Debug)]
pub struct FdBudget {
    limit: usize,
    base: usize,
    connections: AtomicUsize,
}

impl FdBudget {
    /// The budget for `limit` (the soft `RLIMIT_NOFILE`) when `base`
    /// descriptors are open already.
    pub fn new(limit: usize, base: usize) -> Self {
        Self { limit, base, connections: AtomicUsize::new(0) }
    }

    /// This process's: its soft limit now, and what it has open now (read
    /// once, at start).
    pub fn of_this_process() -> Self {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit writes one rlimit.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
        let open = std::fs::read_dir("/proc/self/fd").map_or(64, |dir| dir.count());
        Self::new(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX), open)
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Descriptors kept for what keeps the daemon running: an eighth of the
    /// limit, at least 64 and at most 1024.
    pub fn reserve(&self) -> usize {
        (self.limit / 8).clamp(64, 1024)
    }

    /// What the daemon holds now, with `streamlets` streamlets and `foreign`
    /// descriptors from outside.
    fn in_use(&self, foreign: usize, streamlets: usize) -> usize {
        self.base + foreign + self.connections.load(Ordering::Acquire) * PER_CONNECTION + streamlets * PER_STREAMLET
    }

    /// Why a new stream may not be taken now, if it may not.
    pub fn refuse_stream(&self, streamlets: usize) -> Option<String> {
        self.refuse_stream_with(streamlet_proto::foreign::held(), streamlets)
    }

    fn refuse_stream_with(&self, foreign: usize, streamlets: usize) -> Option<String> {
        let in_use = self.in_use(foreign, streamlets);
        (in_use + self.reserve() >= self.limit).then(|| {
            format!(
                "streamletd holds about {in_use} of its {} descriptors and keeps {} in reserve: \
                 no new stream until some end (raise its RLIMIT_NOFILE, LimitNOFILE= under systemd, for more)",
                self.limit,
                self.reserve()
            )
        })
    }

    /// About how many streams fit beside `streamlets` streamlets and
    /// `connections` control connections.
    pub fn streams_that_fit(&self, streamlets: usize, connections: usize) -> usize {
        self.limit
            .saturating_sub(self.base + self.reserve() + streamlets * PER_STREAMLET + connections * PER_CONNECTION)
    }

    pub fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::AcqRel);
    }

    pub fn connection_closed(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_refused_before_the_reserve_is_touched() {
        let budget = FdBudget::new(1000, 50);
        assert_eq!(budget.reserve(), 125);
        // 50 + 10 streamlets (80) + 2 connections (4) = 134, far from 875.
        budget.connection_opened();
        budget.connection_opened();
        assert!(budget.refuse_stream_with(0, 10).is_none());
        let fit = budget.streams_that_fit(10, 2);
        assert_eq!(fit, 1000 - 50 - 125 - 80 - 4);
        assert!(budget.refuse_stream_with(fit - 1, 10).is_none(), "the last stream that fits");
        let why = budget.refuse_stream_with(fit, 10).expect("refused at the reserve");
        assert!(why.contains("of its 1000 descriptors") && why.contains("RLIMIT_NOFILE"), "{why}");
        budget.connection_closed();
        budget.connection_closed();
    }

    #[test]
    fn the_reserve_is_bounded_both_ways() {
        assert_eq!(FdBudget::new(256, 0).reserve(), 64);
        assert_eq!(FdBudget::new(1 << 20, 0).reserve(), 1024);
    }
}
