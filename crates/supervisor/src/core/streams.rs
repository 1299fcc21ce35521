//! The stream table's rows: what the daemon keeps of each stream it counts,
//! and its own copy of the client connection ([`StreamFd`]), which ends the
//! stream for every process when it goes.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::worker::StreamCounters;
use streamlet_proto::{sock, EndReason, StreamEnded, StreamId, WorkerId};

use crate::events::EventSink;

/// The streams the daemon counts, by id (so that listings page through
/// them), and the next id to give.
#[derive(Debug)]
pub(super) struct Streams {
    table: BTreeMap<StreamId, StreamEntry>,
    next: u64,
}

impl Default for Streams {
    fn default() -> Self {
        Streams { table: BTreeMap::new(), next: 1 }
    }
}

impl Streams {
    /// A new stream's id, never given before (a failed open uses one up, so
    /// that nothing it left behind is taken for the next).
    pub(super) fn next_id(&mut self) -> StreamId {
        let id = StreamId(self.next);
        self.next += 1;
        id
    }

    pub(super) fn insert(&mut self, id: StreamId, entry: StreamEntry) {
        self.table.insert(id, entry);
    }

    pub(super) fn get(&self, id: &StreamId) -> Option<&StreamEntry> {
        self.table.get(id)
    }

    pub(super) fn get_mut(&mut self, id: &StreamId) -> Option<&mut StreamEntry> {
        self.table.get_mut(id)
    }

    pub(super) fn remove(&mut self, id: &StreamId) -> Option<StreamEntry> {
        self.table.remove(id)
    }

    pub(super) fn len(&self) -> usize {
        self.table.len()
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&StreamId, &StreamEntry)> {
        self.table.iter()
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &StreamEntry> {
        self.table.values()
    }

    /// Every stream, leaving the table empty (the daemon is shutting down).
    pub(super) fn take_all(&mut self) -> BTreeMap<StreamId, StreamEntry> {
        std::mem::take(&mut self.table)
    }

    /// The streams with ids above `after` (of `pool`, if given), by id: at
    /// most `limit`, and whether more remain.
    pub(super) fn page(
        &self,
        pool: Option<&str>,
        after: Option<StreamId>,
        limit: usize,
    ) -> (Vec<(StreamId, &StreamEntry)>, bool) {
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut listed = self.table.range((from, Bound::Unbounded)).filter(|(_, s)| pool.is_none_or(|p| s.pool == p));
        let page: Vec<(StreamId, &StreamEntry)> = listed.by_ref().take(limit).map(|(id, s)| (*id, s)).collect();
        let more = listed.next().is_some();
        (page, more)
    }

    /// Applies a streamlet's counters to its streams (those of other
    /// streamlets are ignored): what each report says for the quota and
    /// the pools' error counts.
    pub(super) fn report(&mut self, worker: WorkerId, counters: &[StreamCounters], now: Instant) -> Vec<Reported> {
        counters
            .iter()
            .filter_map(|c| {
                let entry = self.table.get_mut(&c.stream).filter(|e| e.worker == worker)?;
                Some(entry.report(c, now))
            })
            .collect()
    }

    /// Streams that reported nothing for `silent` send nothing: their
    /// measure restarts at 0 from `now`. The managed ones, for the quota.
    pub(super) fn mark_silent(&mut self, silent: Duration, now: Instant) -> Vec<StreamId> {
        let mut quiet = Vec::new();
        for (id, s) in &mut self.table {
            if now.saturating_duration_since(s.usage_base.0) >= silent {
                s.usage_base = (now, s.bytes_out);
                s.sending = Some(0);
                if s.managed {
                    quiet.push(*id);
                }
            }
        }
        quiet
    }
}

/// What one counter report of a stream means beyond its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reported {
    pub(super) stream: StreamId,
    pub(super) pool: String,
    /// Corrupt frames dropped since the last report.
    pub(super) dropped: u64,
    /// Its send rate, measured, for a stream under the quota.
    pub(super) used: Option<u64>,
}

/// Send rates are measured over at least this long: shorter spans between
/// reports are added to the next.
const MIN_USAGE_SPAN: Duration = Duration::from_millis(10);

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

impl StreamEntry {
    /// A new stream of `tenant` on `worker`, holding the daemon's copy of
    /// its connection; what else it asked for is filled in by the caller.
    pub(super) fn new(pool: String, tenant: String, worker: WorkerId, fd: StreamFd) -> Self {
        let now = Instant::now();
        StreamEntry {
            pool,
            tenant,
            worker,
            fd,
            opened: now,
            bytes_in: 0,
            bytes_out: 0,
            owner: None,
            closing: None,
            rate: None,
            usage_base: (now, 0),
            priority: 0,
            managed: false,
            kernel_paced: false,
            labels: BTreeMap::new(),
            ingress: None,
            region: None,
            carried: (0, 0),
            sending: None,
            stalled_us: 0,
            carried_stalled_us: 0,
            corrupt_frames: 0,
        }
    }

    /// A streamlet's counters. Each report also measures the send rate
    /// since the one before (over at least [`MIN_USAGE_SPAN`]).
    fn report(&mut self, c: &StreamCounters, now: Instant) -> Reported {
        // Whatever the streamlet says, no counter wraps.
        self.bytes_in = self.carried.0.saturating_add(c.bytes_in);
        self.bytes_out = self.carried.1.saturating_add(c.bytes_out);
        self.stalled_us = self.carried_stalled_us.saturating_add(c.stalled_us);
        let dropped = c.corrupt_frames.saturating_sub(self.corrupt_frames);
        self.corrupt_frames = c.corrupt_frames;
        let mut used = None;
        let (at, base) = self.usage_base;
        let span = now.saturating_duration_since(at);
        if span >= MIN_USAGE_SPAN {
            let rate = u128::from(self.bytes_out.saturating_sub(base)) * 1000 / span.as_millis();
            let rate = u64::try_from(rate).unwrap_or(u64::MAX);
            self.sending = Some(rate);
            self.usage_base = (now, self.bytes_out);
            used = self.managed.then_some(rate);
        }
        Reported { stream: c.stream, pool: self.pool.clone(), dropped, used }
    }

    /// It moved to streamlet `to`, whose counters start from zero: what the
    /// streamlets before counted is carried.
    pub(super) fn moved_to(&mut self, to: WorkerId) {
        self.worker = to;
        self.carried = (self.bytes_in, self.bytes_out);
        self.carried_stalled_us = self.stalled_us;
        self.corrupt_frames = 0;
        self.usage_base = (Instant::now(), self.bytes_out);
    }

    /// Its end as subscribers hear it. `bytes`: the exact totals the
    /// streamlet reported at the end; `None` for those of its last report.
    pub(super) fn ended(&self, stream: StreamId, reason: EndReason, bytes: Option<(u64, u64)>) -> StreamEnded {
        let ((bytes_in, bytes_out), bytes_exact) = match bytes {
            Some(exact) => (exact, true),
            None => ((self.bytes_in, self.bytes_out), false),
        };
        StreamEnded { stream, pool: self.pool.clone(), worker: self.worker, reason, bytes_in, bytes_out, bytes_exact }
    }
}

impl StreamEntry {
    /// Tells its owner (the gateway connection that opened it) of its end;
    /// subscribers hear it from the event log.
    pub(super) fn notify_owner(self, stream: StreamId, reason: EndReason, bytes: Option<(u64, u64)>) {
        let Some(owner) = &self.owner else { return };
        owner.send(streamlet_proto::Event::StreamEnded(self.ended(stream, reason, bytes)));
    }
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

    fn entry(pool: &str, worker: u64, managed: bool) -> StreamEntry {
        let fd = ForeignFd::new(std::fs::File::open("/dev/null").unwrap().into());
        let mut entry = StreamEntry::new(pool.into(), "t".into(), WorkerId(worker), StreamFd(fd));
        entry.managed = managed;
        entry
    }

    fn counters(stream: u64, bytes_out: u64, corrupt_frames: u64) -> StreamCounters {
        StreamCounters { stream: StreamId(stream), bytes_in: 1, bytes_out, stalled_us: 5, corrupt_frames }
    }

    #[test]
    fn ids_are_never_given_twice_and_pages_go_by_id() {
        let mut streams = Streams::default();
        for n in 0..5 {
            let id = streams.next_id();
            assert_eq!(id, StreamId(n + 1));
            streams.insert(id, entry(if n % 2 == 0 { "a" } else { "b" }, 1, false));
        }
        let ids = |page: Vec<(StreamId, &StreamEntry)>| page.into_iter().map(|(id, _)| id.0).collect::<Vec<_>>();
        let (page, more) = streams.page(None, None, 2);
        assert_eq!((ids(page), more), (vec![1, 2], true));
        let (page, more) = streams.page(Some("a"), Some(StreamId(1)), 5);
        assert_eq!((ids(page), more), (vec![3, 5], false));
        streams.remove(&StreamId(5));
        assert_eq!(streams.next_id(), StreamId(6), "an id is not given again once its stream is gone");
        quiesce();
    }

    #[test]
    fn counters_count_only_for_their_streamlet_and_carry_across_a_move() {
        let mut streams = Streams::default();
        streams.insert(StreamId(1), entry("a", 1, true));
        let later = Instant::now() + Duration::from_millis(100);
        assert!(streams.report(WorkerId(2), &[counters(1, 1_000, 0)], later).is_empty(), "not its streamlet's");
        let reported = streams.report(WorkerId(1), &[counters(1, 1_000, 2)], later);
        assert_eq!(reported.len(), 1);
        assert_eq!((reported[0].dropped, reported[0].pool.as_str()), (2, "a"));
        let used = reported[0].used.expect("a managed stream's rate is measured");
        assert!((9_000..=10_000).contains(&used), "1000 bytes in about 100 ms: {used}");
        let again = streams.report(WorkerId(1), &[counters(1, 1_000, 2)], later + Duration::from_millis(1));
        assert_eq!((again[0].dropped, again[0].used), (0, None), "too soon to measure, nothing new dropped");
        let entry = streams.get_mut(&StreamId(1)).unwrap();
        entry.moved_to(WorkerId(2));
        let moved = streams.report(WorkerId(2), &[counters(1, u64::MAX, 0)], later + Duration::from_secs(1));
        assert_eq!(moved[0].dropped, 0, "a new streamlet's count starts over");
        let entry = streams.get(&StreamId(1)).unwrap();
        assert_eq!(
            (entry.bytes_out, entry.bytes_in, entry.stalled_us),
            (u64::MAX, 2, 10),
            "carried, and never wrapped"
        );
        quiesce();
    }

    #[test]
    fn silent_streams_are_taken_as_sending_nothing() {
        let mut streams = Streams::default();
        streams.insert(StreamId(1), entry("a", 1, true));
        streams.insert(StreamId(2), entry("a", 1, false));
        let now = Instant::now();
        assert!(streams.mark_silent(Duration::from_secs(1), now).is_empty(), "not silent long enough");
        let later = now + Duration::from_secs(2);
        assert_eq!(streams.mark_silent(Duration::from_secs(1), later), [StreamId(1)], "the quota hears of the managed");
        assert_eq!(streams.get(&StreamId(2)).unwrap().sending, Some(0));
        quiesce();
    }

    /// Waits for the closer threads, so no test leaves a descriptor open.
    fn quiesce() {
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
