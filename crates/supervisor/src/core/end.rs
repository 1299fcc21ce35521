//! Streams end: asked by the daemon (a close, a preemption), reported by
//! their streamlet, or with their streamlet's death; and what a stream's
//! counters report while it runs.

use std::time::Instant;

use streamlet_proto::worker::{Ended, StreamCounters, ToWorker};
use streamlet_proto::{EndReason, ErrorBody, ErrorCode, Event, StreamId, WorkerId};

use super::coordinator::Core;
use super::streams::StreamEntry;

impl Core {
    /// Asks for a stream to end: its connection is shut down and its
    /// streamlet told; the stream leaves the table when the streamlet reports
    /// the end.
    pub fn close(&mut self, stream: StreamId) -> Result<(), ErrorBody> {
        if self.streams.get(&stream).is_none() {
            return Err(ErrorBody::new(ErrorCode::UnknownStream, format!("stream {stream} is not open")));
        }
        self.end_by_daemon(stream, EndReason::Closed);
        Ok(())
    }

    /// Ends a stream for the daemon's own reason (a close, a preemption): its
    /// connection is shut down and its streamlet told; it leaves the table
    /// when the streamlet reports the end, reported with `reason`.
    pub(super) fn end_by_daemon(&mut self, stream: StreamId, reason: EndReason) {
        let Some(entry) = self.streams.get_mut(&stream) else { return };
        if entry.closing.is_some() {
            return;
        }
        entry.closing = Some(reason);
        entry.fd.shut_down();
        if let Some(worker) = self.fleet.workers.get(&entry.worker) {
            if let Err(e) = worker.link.send(&ToWorker::Close { stream }, None) {
                // The shutdown above ends the stream for the streamlet anyway.
                crate::logcap::limiter().warn_worker(
                    "close_unsent",
                    entry.worker.0,
                    format_args!("cannot tell streamlet {} to close stream {stream}: {e}", entry.worker),
                );
            }
        }
    }

    /// A streamlet reported a stream's end. False if the stream was not its.
    pub fn stream_ended(&mut self, worker: WorkerId, ended: Ended) -> bool {
        if self.streams.get(&ended.stream).is_none_or(|e| e.worker != worker) {
            return false;
        }
        let mut entry = self.streams.remove(&ended.stream).expect("checked above");
        self.fleet.free(worker, ended.stream);
        let reason = entry.closing.take().unwrap_or(ended.reason);
        tracing::debug!(stream = %ended.stream, %worker, %reason, "stream ended");
        // (Counts from a streamlet are whatever it says: saturate.)
        let bytes = (entry.carried.0.saturating_add(ended.bytes_in), entry.carried.1.saturating_add(ended.bytes_out));
        let pool = entry.pool.clone();
        self.finish(ended.stream, entry, reason, Some(bytes));
        self.retry_waiting();
        self.drained(worker);
        self.advance_restart(&pool);
        true
    }

    /// A stream out of the table is done with: its tenant's slot and its
    /// bandwidth are given back, its duration and any error counted, and
    /// its end published (`bytes`: the exact totals reported at its end;
    /// `None` for those of its last report).
    pub(super) fn finish(
        &mut self,
        stream: StreamId,
        entry: StreamEntry,
        reason: EndReason,
        bytes: Option<(u64, u64)>,
    ) {
        self.bandwidth.tenants.give_back(&entry.tenant);
        if entry.managed {
            self.bandwidth.release(stream);
        }
        self.record_duration(&entry.pool, entry.opened.elapsed());
        self.count_end(&entry.pool, &reason);
        let ended = entry.ended(stream, reason.clone(), bytes);
        self.publish_except(Event::StreamEnded(ended), entry.owner.as_ref());
        entry.notify_owner(stream, reason, bytes);
    }

    /// Counts a stream's end among its pool's errors, if it is one.
    fn count_end(&mut self, pool: &str, reason: &EndReason) {
        let kind = match reason {
            EndReason::IoError { .. } => "io_error",
            EndReason::HandlerError { .. } => "handler_error",
            EndReason::CommandExited { .. } => "command_exited",
            EndReason::CorruptFrame { .. } => "corrupt_frame",
            EndReason::WorkerDied { .. } => "worker_died",
            _ => return,
        };
        if let Some(p) = self.fleet.pools.get_mut(pool) {
            p.count_error(kind, 1);
        }
    }

    /// A streamlet's counters. Each report also measures the stream's send
    /// rate since the one before, for bursts.
    pub fn stream_stats(&mut self, worker: WorkerId, counters: &[StreamCounters]) {
        for reported in self.streams.report(worker, counters, Instant::now()) {
            if reported.dropped > 0 {
                if let Some(pool) = self.fleet.pools.get_mut(&reported.pool) {
                    pool.count_error("corrupt_frames_dropped", reported.dropped);
                }
            }
            if let Some(used) = reported.used {
                self.bandwidth.record_usage(reported.stream, used);
            }
        }
    }
}
