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

/// The writer task's state; what its `Drop` settles.
pub struct Writer {
    end: WriteEnd,
    rx: Option<UnboundedReceiver<Outgoing>>,
    sink: EventSink,
    /// A frame taken from the queue and not yet all written: its length,
    /// and whether it is an event's.
    in_flight: Option<(usize, bool)>,
}

impl Writer {
    pub fn new(writer: FrameWriter, copy: SocketCopy, rx: UnboundedReceiver<Outgoing>, sink: EventSink) -> Self {
        Self { end: WriteEnd { writer, _copy: copy }, rx: Some(rx), sink, in_flight: None }
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
            let (frame, event) = match item {
                Some(Outgoing::Frame(frame)) => (frame, false),
                Some(Outgoing::Event(frame)) => (frame, true),
                Some(Outgoing::Close) | None => break false,
            };
            self.in_flight = Some((frame.len(), event));
            // An abort (the client left too much unread) stops a write that
            // the client never lets finish.
            let wrote = tokio::select! {
                wrote = self.end.writer.write_frame(&frame) => wrote.is_ok(),
                () = self.sink.aborted() => false,
            };
            self.settle_in_flight();
            if !wrote {
                break false;
            }
        };
        self.settle_queue();
        if !aborted {
            let _ = self.end.writer.shutdown().await;
        }
    }

    fn settle_in_flight(&mut self) {
        match self.in_flight.take() {
            Some((len, true)) => self.sink.written_event(len),
            Some((len, false)) => self.sink.written(len),
            None => {}
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
