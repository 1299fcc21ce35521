//! The event log and its subscribers: the one owner of what `events` shows
//! and of who hears each lifecycle event as it happens.
//!
//! Two logs of [`EVENT_LOG_LEN`] each, numbered in one sequence: the
//! streams' events (opened, ended, moved) apart from the streamlets' and
//! pools', so that a busy host's stream churn does not push the rarer events
//! out. A subscriber that leaves more than [`SUBSCRIBER_BUDGET`] bytes of
//! events unread is dropped with a notice: the daemon never waits for one.

use std::collections::VecDeque;

use streamlet_proto::{Event, LoggedEvent, SubscriberDropped, EVENT_LOG_LEN};

use crate::events::{EventSink, SUBSCRIBER_BUDGET};

#[derive(Debug)]
pub struct EventLog {
    lifecycle: VecDeque<LoggedEvent>,
    streams: VecDeque<LoggedEvent>,
    /// The last event's number.
    seq: u64,
    subscribers: Vec<EventSink>,
}

impl Default for EventLog {
    fn default() -> Self {
        Self {
            lifecycle: VecDeque::with_capacity(EVENT_LOG_LEN),
            streams: VecDeque::with_capacity(EVENT_LOG_LEN),
            seq: 0,
            subscribers: Vec::new(),
        }
    }
}

impl EventLog {
    /// `sink` hears every event from now on (once, however often it asks).
    pub fn subscribe(&mut self, sink: EventSink) {
        self.prune();
        if !self.subscribers.iter().any(|s| s.same(&sink)) {
            self.subscribers.push(sink);
        }
    }

    /// Forgets subscribers whose connections have closed.
    pub fn prune(&mut self) {
        self.subscribers.retain(|s| !s.is_closed());
    }

    /// Logs `event` (at `at_ms`, milliseconds since the Unix epoch) and sends
    /// it to every subscriber but `except` (a stream's owner, which hears of
    /// its own streams anyway). A subscriber past its budget gets
    /// [`Event::SubscriberDropped`] instead, and is closed and forgotten.
    pub fn publish(&mut self, event: Event, except: Option<&EventSink>, at_ms: u64) {
        self.seq += 1;
        self.send(&event, except);
        let log = match event {
            Event::StreamOpened(_) | Event::StreamEnded(_) | Event::StreamMigrated(_) => &mut self.streams,
            _ => &mut self.lifecycle,
        };
        if log.len() == EVENT_LOG_LEN {
            log.pop_front();
        }
        // (The event itself goes into the log: a copy only for each subscriber.)
        log.push_back(LoggedEvent { seq: self.seq, at_ms, event });
    }

    /// Sends `event` to every subscriber but `except`.
    fn send(&mut self, event: &Event, except: Option<&EventSink>) {
        if self.subscribers.is_empty() {
            return;
        }
        self.subscribers.retain(|sink| {
            if sink.is_closed() {
                return false;
            }
            if sink.events_queued() > SUBSCRIBER_BUDGET {
                let unread = sink.events_queued() as u64;
                crate::logcap::limiter().warn(
                    "subscriber_dropped",
                    format_args!("an event subscriber left {unread} bytes unread; dropping it"),
                );
                // Its last frame says why (past the budget: one small frame).
                sink.send(Event::SubscriberDropped(SubscriberDropped { unread }));
                sink.close();
                return false;
            }
            if except.is_none_or(|o| !o.same(sink)) {
                sink.send(event.clone());
            }
            true
        });
    }

    /// The newest `recent` events of both logs (all of them without
    /// `recent`), oldest first.
    pub fn tail(&self, recent: Option<u32>) -> Vec<LoggedEvent> {
        let mut events: Vec<LoggedEvent> = self.lifecycle.iter().chain(self.streams.iter()).cloned().collect();
        events.sort_unstable_by_key(|e| e.seq);
        let keep = recent.map_or(events.len(), |n| (n as usize).min(events.len()));
        events.drain(..events.len() - keep);
        events
    }
}

#[cfg(test)]
mod tests {
    use streamlet_proto::{Encoding, PoolDegraded, StreamId, StreamOpened, WorkerId};

    use super::*;

    fn opened(n: u64) -> Event {
        Event::StreamOpened(StreamOpened {
            stream: StreamId(n),
            pool: "p".into(),
            worker: WorkerId(1),
            tenant: "t".into(),
        })
    }

    fn degraded() -> Event {
        Event::PoolDegraded(PoolDegraded { pool: "p".into(), deaths: 3, period_ms: 1000, cooldown_ms: 5000 })
    }

    #[test]
    fn stream_churn_never_pushes_the_lifecycle_events_out() {
        let mut log = EventLog::default();
        log.publish(degraded(), None, 7);
        for n in 0..3 * EVENT_LOG_LEN as u64 {
            log.publish(opened(n), None, 8);
        }
        let all = log.tail(None);
        assert_eq!(all.len(), EVENT_LOG_LEN + 1);
        assert_eq!((all[0].seq, all[0].at_ms), (1, 7), "the oldest, and the only lifecycle event, stays");
        assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "one sequence, in order");
        let last = log.tail(Some(2));
        assert_eq!(
            last.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [3 * EVENT_LOG_LEN as u64, 3 * EVENT_LOG_LEN as u64 + 1]
        );
        assert_eq!(log.tail(Some(u32::MAX)).len(), EVENT_LOG_LEN + 1);
    }

    #[test]
    fn subscribers_hear_each_event_once_but_not_of_their_own_streams() {
        let mut log = EventLog::default();
        let (owner, mut owner_rx) = EventSink::new(Encoding::Json);
        let (other, mut other_rx) = EventSink::new(Encoding::Json);
        log.subscribe(owner.clone());
        log.subscribe(owner.clone());
        log.subscribe(other.clone());
        log.publish(opened(1), Some(&owner), 1);
        log.publish(degraded(), None, 2);
        let count =
            |rx: &mut tokio::sync::mpsc::UnboundedReceiver<_>| std::iter::from_fn(|| rx.try_recv().ok()).count();
        assert_eq!(count(&mut owner_rx), 1, "only the pool's event: its own stream's it hears as the owner");
        assert_eq!(count(&mut other_rx), 2);
    }

    #[test]
    fn a_subscriber_that_closed_is_forgotten() {
        let mut log = EventLog::default();
        let (gone, rx) = EventSink::new(Encoding::Json);
        log.subscribe(gone.clone());
        // (Its connection's writer ends.)
        gone.writer_gone(rx);
        log.prune();
        assert!(log.subscribers.is_empty());
        log.publish(degraded(), None, 1);
        assert_eq!(log.tail(None).len(), 1, "logged all the same");
    }
}
