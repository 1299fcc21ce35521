//! The writing side of one control connection: its task drains the
//! connection's queue ([`crate::events`]) into the socket.
//!
//! Two things hold whatever way the task ends (its queue's close marker, a
//! failed write, an abort for what the client left unread, or the runtime
//! dropping the task after the connection gave up waiting for it):
//!
//! - every byte still counted as queued (what is left in the queue, and a
//!   frame cut off mid-write) is given back to the daemon's backlog, so the
//!   count of unread bytes never drifts from what is really held;
//! - the socket's last close happens on a closer thread: the write half is
//!   dropped before this side's copy of the socket ([`SocketCopy`]), so
//!   whatever the peer left queued in the socket is never closed on the
//!   daemon's thread, even when the runtime drops the task there.

use std::sync::Arc;

use streamlet_proto::conn::FrameWriter;
use streamlet_proto::foreign::ForeignFd;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::events::{EventSink, Outgoing};

/// A copy of a control connection's socket, taken at the accept and shared
/// by its reader and its writer: whichever lets go last closes the socket
/// through it, on a closer thread.
pub type SocketCopy = Arc<ForeignFd>;

/// The write half and a copy of the socket, dropped in that order (fields
/// drop in the order they are declared).
struct WriteEnd {
    writer: FrameWriter,
    _copy: SocketCopy,
}

/// Bytes of frames already queued that one write takes together, at most:
/// a wakeup of the writer writes whatever is queued by then in one call.
pub const WRITE_BATCH: usize = 64 * 1024;

/// The writer task's state; what its `Drop` settles.
pub struct Writer {
    end: WriteEnd,
    rx: Option<UnboundedReceiver<Outgoing>>,
    sink: EventSink,
    /// Frames taken from the queue and not yet all written: the bytes of
    /// replies and the bytes of events among them.
    in_flight: Option<InFlight>,
    /// Where queued frames are put together for one write.
    batch: Vec<u8>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct InFlight {
    replies: usize,
    events: usize,
}

impl InFlight {
    fn add(&mut self, item: &Outgoing) {
        match item {
            Outgoing::Frame(frame) => self.replies += frame.len(),
            Outgoing::Event(frame) => self.events += frame.len(),
            Outgoing::Close => {}
        }
    }
}

impl Writer {
    pub fn new(writer: FrameWriter, copy: SocketCopy, rx: UnboundedReceiver<Outgoing>, sink: EventSink) -> Self {
        Self { end: WriteEnd { writer, _copy: copy }, rx: Some(rx), sink, in_flight: None, batch: Vec::new() }
    }

    /// Writes what is queued until the close marker, a failed write or an
    /// abort; then shuts the socket down for writing.
    pub async fn run(mut self) {
        let aborted = loop {
            let Some(rx) = self.rx.as_mut() else { break false };
            let item = tokio::select! {
                item = rx.recv() => item,
                () = self.sink.aborted() => break true,
            };
            let first = match item {
                Some(item @ (Outgoing::Frame(_) | Outgoing::Event(_))) => item,
                Some(Outgoing::Close) | None => break false,
            };
            // Whatever else is queued by now goes in the same write.
            let mut in_flight = InFlight::default();
            in_flight.add(&first);
            let mut closing = false;
            let mut single = Some(first);
            while in_flight.replies + in_flight.events < WRITE_BATCH {
                let Ok(next) = rx.try_recv() else { break };
                if matches!(next, Outgoing::Close) {
                    closing = true;
                    break;
                }
                if let Some(Outgoing::Frame(frame) | Outgoing::Event(frame)) = single.take() {
                    self.batch.clear();
                    self.batch.extend_from_slice(&frame);
                }
                in_flight.add(&next);
                if let Outgoing::Frame(frame) | Outgoing::Event(frame) = next {
                    self.batch.extend_from_slice(&frame);
                }
            }
            self.in_flight = Some(in_flight);
            let bytes: &[u8] = match &single {
                Some(Outgoing::Frame(frame) | Outgoing::Event(frame)) => frame,
                _ => &self.batch,
            };
            // An abort (the client left too much unread) stops a write that
            // the client never lets finish.
            let wrote = tokio::select! {
                wrote = self.end.writer.write_frame(bytes) => wrote.is_ok(),
                () = self.sink.aborted() => false,
            };
            self.settle_in_flight();
            if self.batch.capacity() > 4 * WRITE_BATCH {
                self.batch = Vec::new();
            }
            if !wrote || closing {
                break false;
            }
        };
        self.settle_queue();
        if !aborted {
            let _ = self.end.writer.shutdown().await;
        }
    }

    fn settle_in_flight(&mut self) {
        if let Some(InFlight { replies, events }) = self.in_flight.take() {
            if events > 0 {
                self.sink.written_event(events);
            }
            if replies > 0 {
                self.sink.written(replies);
            }
        }
    }

    /// Gives back what is left queued, and marks the writer gone.
    fn settle_queue(&mut self) {
        if let Some(rx) = self.rx.take() {
            self.sink.writer_gone(rx);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // (Dropped mid-write by the runtime: settle what `run` could not.)
        self.settle_in_flight();
        self.settle_queue();
    }
}

#[cfg(test)]
mod tests {
    /// What is queued before the writer wakes goes out in one write, in
    /// order, and every byte is settled once.
    #[tokio::test]
    async fn what_is_queued_together_is_written_together_in_order() {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let copy: SocketCopy = Arc::new(ForeignFd::new(std::os::fd::AsFd::as_fd(&ours).try_clone_to_owned().unwrap()));
        let (_read, write) = ours.into_split();
        let backlog = Arc::new(Backlog::default());
        let (sink, rx) = EventSink::in_backlog(Encoding::Json, backlog.clone());
        let event = streamlet_proto::Event::PoolRecovered(streamlet_proto::PoolRecovered { pool: "echo".into() });
        let event_frame = Encoding::Json.encode_frame(&streamlet_proto::ServerMessage::Event(event.clone())).unwrap();
        sink.push(b"reply-1;".to_vec());
        sink.send(event);
        sink.push(b"reply-2;".to_vec());
        sink.close();
        sink.push(b"after the close".to_vec());
        let writer = Writer::new(FrameWriter::new(write), copy, rx, sink.clone());
        writer.run().await;
        let mut got = Vec::new();
        let mut theirs = theirs.into_std().unwrap();
        theirs.set_nonblocking(false).unwrap();
        std::io::Read::read_to_end(&mut theirs, &mut got).unwrap();
        let expected = [&b"reply-1;"[..], &event_frame, b"reply-2;"].concat();
        assert_eq!(got, expected, "in order, and nothing after the close marker");
        assert_eq!((backlog.total(), sink.events_queued()), (0, 0), "every byte settled once");
    }

    use std::sync::Arc;

    use streamlet_proto::Encoding;

    use super::*;
    use crate::events::Backlog;

    /// A writer dropped while it waits on a client that reads nothing (the
    /// connection gave up on it) gives every queued byte back.
    #[tokio::test]
    async fn a_writer_dropped_mid_write_gives_back_every_queued_byte() {
        let (ours, theirs) = tokio::net::UnixStream::pair().unwrap();
        let copy: SocketCopy = Arc::new(ForeignFd::new(std::os::fd::AsFd::as_fd(&ours).try_clone_to_owned().unwrap()));
        let (_read, write) = ours.into_split();
        let backlog = Arc::new(Backlog::default());
        let (sink, rx) = EventSink::in_backlog(Encoding::Json, backlog.clone());
        for _ in 0..64 {
            sink.push(vec![0u8; 64 * 1024]);
        }
        assert_eq!(backlog.total(), 64 * 64 * 1024);
        let task = tokio::spawn(Writer::new(FrameWriter::new(write), copy, rx, sink.clone()).run());
        // The socket fills (nobody reads `theirs`) and the write waits.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert!(backlog.total() > 0 && !task.is_finished());
        task.abort();
        let _ = task.await;
        assert_eq!(backlog.total(), 0, "everything queued or in flight is given back");
        assert!(sink.is_closed());
        drop(theirs);
    }
}
