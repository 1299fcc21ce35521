//! Events for the connection that opened a stream.

use streamlet_proto::{Encoding, Event, ServerMessage};
use tokio::sync::mpsc;

/// The outgoing frame queue of one client connection, shared by its reply path
/// and by the streams it opened. Events never wait: when a client does not
/// read and its queue is full, the event is dropped and logged.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: mpsc::Sender<Vec<u8>>,
    encoding: Encoding,
}

impl EventSink {
    pub fn new(tx: mpsc::Sender<Vec<u8>>, encoding: Encoding) -> Self {
        Self { tx, encoding }
    }

    pub fn send(&self, event: Event) {
        let frame = match self.encoding.encode_frame(&ServerMessage::Event(event)) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode an event");
                return;
            }
        };
        if let Err(mpsc::error::TrySendError::Full(_)) = self.tx.try_send(frame) {
            tracing::warn!("a client is not reading its events; one was dropped");
        }
    }
}
