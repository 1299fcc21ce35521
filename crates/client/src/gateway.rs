//! A TCP gateway: every accepted connection is handed to a streamlet of one
//! pool.
//!
//! One loop owns the listener and one [`Client`], and pipelines: each
//! accepted connection is sent to the daemon with `Open` at once (and closed
//! here: the daemon and the streamlet hold their own copies), without waiting
//! for the replies of those before it, up to [`DEFAULT_IN_FLIGHT`] at a time
//! ([`Gateway::in_flight`]). Replies are matched to their connections by
//! request id, in whatever order they come. After each accept it takes every
//! connection already waiting (up to [`ACCEPT_BATCH`]) before it waits again,
//! and it reads replies before it accepts more. Nothing is formatted or
//! logged per connection unless asked (`peer` label, debug logs).
//!
//! When the daemon connection is lost, or the oldest open waits longer than
//! [`OPEN_TIMEOUT`], the opens in flight are reported refused and the gateway
//! connects again with a backoff (50 ms doubling to 2 s), refusing (closing)
//! connections accepted meanwhile. Accept errors such as `EMFILE` pause the
//! loop for 100 ms instead of spinning.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use streamlet_proto::{
    Encoding, ErrorBody, ErrorCode, Event, OpenRequest, Opened, ReplyBody, RequestBody, ServerMessage, StreamEnded,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::{Client, ClientError};

/// The name the gateway gives itself in the handshake.
pub const GATEWAY_NAME: &str = "streamlet-gateway";

/// How long an open may wait for its reply before the gateway gives up on
/// the daemon connection, unless told otherwise ([`Gateway::open_timeout`]).
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens in flight at once, unless told otherwise ([`Gateway::in_flight`]).
pub const DEFAULT_IN_FLIGHT: usize = 32;

/// Opens in flight at once, at most: their requests and replies stay well
/// within a socket's buffers, so that the gateway's write of an open never
/// waits on the daemon writing replies the gateway has not read.
pub const MAX_IN_FLIGHT: usize = 1024;

/// Connections taken from the listener's queue per wakeup, at most.
pub const ACCEPT_BATCH: usize = 64;

const RECONNECT_INITIAL: Duration = Duration::from_millis(50);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What the gateway did, for its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A connection went to a streamlet.
    Placed { peer: SocketAddr, opened: Opened },
    /// A connection was closed without being placed: the daemon's error, or
    /// an `internal` one made here when the daemon could not be reached.
    Refused { peer: SocketAddr, error: ErrorBody },
    /// A stream this gateway placed ended.
    Ended(StreamEnded),
    /// The daemon connection failed or was lost; the gateway keeps trying.
    Reconnecting { error: String },
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("accepting connections on {addr}: {source}")]
    Accept { addr: String, source: io::Error },
}

/// A gateway for one pool; see the [module docs](self).
#[derive(Debug)]
pub struct Gateway {
    socket: PathBuf,
    pool: String,
    tenant: Option<String>,
    events: Option<UnboundedSender<GatewayEvent>>,
    in_flight: usize,
    open_timeout: Duration,
    peer_label: bool,
}

/// The daemon connection, when there is one, and when to try again when not.
#[derive(Debug)]
struct Link {
    client: Option<Client>,
    backoff: Backoff,
    retry_at: Instant,
    last_error: String,
    /// The opens sent and not answered, oldest first (ids only grow).
    pending: VecDeque<Pending>,
}

/// An open sent, waiting for its reply.
#[derive(Debug)]
struct Pending {
    id: u64,
    peer: SocketAddr,
    sent: Instant,
}

impl Gateway {
    /// A gateway handing connections to `pool` through the daemon at `socket`.
    pub fn new(socket: impl Into<PathBuf>, pool: impl Into<String>) -> Self {
        Self {
            socket: socket.into(),
            pool: pool.into(),
            tenant: None,
            events: None,
            in_flight: DEFAULT_IN_FLIGHT,
            open_timeout: OPEN_TIMEOUT,
            peer_label: false,
        }
    }

    /// The tenant streams are accounted to; `None` is the tenant `default`.
    pub fn tenant(mut self, tenant: Option<String>) -> Self {
        self.tenant = tenant;
        self
    }

    /// Sends every [`GatewayEvent`] to `tx` instead of logging it.
    pub fn events(mut self, tx: UnboundedSender<GatewayEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    /// Opens in flight at once (1 to [`MAX_IN_FLIGHT`]): past it,
    /// connections wait in the listener's queue until a reply comes.
    pub fn in_flight(mut self, opens: usize) -> Self {
        self.in_flight = opens.clamp(1, MAX_IN_FLIGHT);
        self
    }

    /// How long an open may wait for its reply.
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.open_timeout = timeout;
        self
    }

    /// Labels each stream with `peer`, the client's address (formatted for
    /// every connection; off by default: a streamlet can ask the socket).
    pub fn peer_label(mut self, on: bool) -> Self {
        self.peer_label = on;
        self
    }

    /// Serves `listener` until accepting fails for good (the listener itself
    /// is broken); the daemon going away is not fatal.
    pub async fn run(self, listener: TcpListener) -> Result<(), GatewayError> {
        let addr = listener.local_addr().map_or_else(|_| "the listener".to_owned(), |a| a.to_string());
        let mut link = Link {
            client: None,
            backoff: Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX),
            retry_at: Instant::now(),
            last_error: String::new(),
            pending: VecDeque::new(),
        };
        loop {
            if link.client.is_none() && Instant::now() >= link.retry_at {
                self.connect(&mut link).await;
            }
            let retry_at = link.retry_at;
            let disconnected = link.client.is_none();
            let room = link.pending.len() < self.in_flight;
            let oldest = link.pending.front().map(|p| p.sent + self.open_timeout);
            tokio::select! {
                // Replies first: each one makes room for the next open.
                biased;
                message = next_message(&mut link.client) => self.received(&mut link, message),
                accepted = listener.accept(), if room => match accepted {
                    Ok((stream, peer)) => {
                        self.place(&mut link, stream, peer).await;
                        self.accept_waiting(&listener, &mut link).await;
                    }
                    Err(source) if accept_error_is_fatal(&source) => return Err(GatewayError::Accept { addr, source }),
                    Err(err) => {
                        tracing::warn!(%addr, error = %err, "accepting a connection failed; pausing");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                },
                () = tokio::time::sleep_until(oldest.unwrap_or(retry_at)), if oldest.is_some() => {
                    self.lost(&mut link, ClientError::Timeout);
                }
                () = tokio::time::sleep_until(retry_at), if disconnected => {}
            }
        }
    }

    /// Places the connections already waiting in the listener's queue, up to
    /// [`ACCEPT_BATCH`] and while there is room, without waiting for more.
    async fn accept_waiting(&self, listener: &TcpListener, link: &mut Link) {
        for _ in 1..ACCEPT_BATCH {
            if link.pending.len() >= self.in_flight {
                return;
            }
            // (A transient error is left for the next `accept` to report.)
            let Some(Ok((stream, peer))) = try_accept(listener) else { return };
            self.place(link, stream, peer).await;
        }
    }

    async fn connect(&self, link: &mut Link) {
        match Client::connect_with(&self.socket, Encoding::Postcard, GATEWAY_NAME).await {
            Ok(client) => {
                tracing::info!(socket = %self.socket.display(), server = %client.welcome().server, "connected to streamletd");
                link.client = Some(client);
                link.backoff.reset();
            }
            Err(err) => self.lost(link, err),
        }
    }

    /// Drops the daemon connection and schedules the next attempt; the opens
    /// in flight on it are refused.
    fn lost(&self, link: &mut Link, err: ClientError) {
        link.client = None;
        let delay = link.backoff.next_delay();
        link.retry_at = Instant::now() + delay;
        link.last_error = err.to_string();
        tracing::debug!(retry_in = ?delay, "daemon connection down");
        for pending in std::mem::take(&mut link.pending) {
            let message = format!("the connection to streamletd was lost before its reply ({err})");
            self.emit(GatewayEvent::Refused {
                peer: pending.peer,
                error: ErrorBody::new(ErrorCode::Internal, message),
            });
        }
        self.emit(GatewayEvent::Reconnecting { error: link.last_error.clone() });
    }

    /// Sends `stream` to the daemon with `Open`, then closes our copy of it
    /// either way; its reply comes later.
    async fn place(&self, link: &mut Link, stream: TcpStream, peer: SocketAddr) {
        let Some(client) = link.client.as_mut() else {
            let message = format!("no connection to streamletd ({})", link.last_error);
            self.emit(GatewayEvent::Refused { peer, error: ErrorBody::new(ErrorCode::Internal, message) });
            return;
        };
        let mut request = OpenRequest { tenant: self.tenant.clone(), ..OpenRequest::new(self.pool.clone()) };
        if self.peer_label {
            request.labels.insert("peer".to_owned(), peer.to_string());
        }
        let sent = client.send(RequestBody::Open(request), Some(stream.as_fd())).await;
        drop(stream);
        match sent {
            Ok(id) => link.pending.push_back(Pending { id, peer, sent: Instant::now() }),
            Err(err) => {
                let message = format!("handing the connection to streamletd: {err}");
                self.emit(GatewayEvent::Refused { peer, error: ErrorBody::new(ErrorCode::Internal, message) });
                if err.is_connection_lost() {
                    self.lost(link, err);
                }
            }
        }
    }

    /// A message from the daemon: a reply settles its open, whatever its
    /// place among those in flight.
    fn received(&self, link: &mut Link, message: Result<ServerMessage, ClientError>) {
        match message {
            Ok(ServerMessage::Reply(reply)) => {
                let Some(at) = link.pending.iter().position(|p| p.id == reply.id) else {
                    // (Id 0: a frame the daemon could not decode; it names no open.)
                    tracing::warn!(id = reply.id, reply = reply.body.name(), "a reply to no open in flight");
                    return;
                };
                let pending = link.pending.remove(at).expect("found above");
                match reply.body {
                    ReplyBody::Opened(opened) => self.emit(GatewayEvent::Placed { peer: pending.peer, opened }),
                    ReplyBody::Error(error) => self.emit(GatewayEvent::Refused { peer: pending.peer, error }),
                    other => {
                        let message = format!("streamletd answered an open with a {} reply", other.name());
                        let error = ErrorBody::new(ErrorCode::Internal, message);
                        self.emit(GatewayEvent::Refused { peer: pending.peer, error });
                    }
                }
            }
            Ok(ServerMessage::Event(Event::StreamEnded(ended))) => self.emit(GatewayEvent::Ended(ended)),
            // Lifecycle events come only to connections that subscribe.
            Ok(ServerMessage::Event(other)) => tracing::debug!(?other, "ignoring an event"),
            Err(err @ ClientError::Unexpected { .. }) => tracing::warn!(error = %err, "ignoring a message"),
            Err(err) => self.lost(link, err),
        }
    }

    fn emit(&self, event: GatewayEvent) {
        match &self.events {
            Some(tx) => {
                if let Err(unsent) = tx.send(event) {
                    log(&unsent.0);
                }
            }
            None => log(&event),
        }
    }
}

/// A connection already in the listener's queue, without waiting.
fn try_accept(listener: &TcpListener) -> Option<io::Result<(TcpStream, SocketAddr)>> {
    let mut cx = Context::from_waker(Waker::noop());
    match listener.poll_accept(&mut cx) {
        Poll::Ready(accepted) => Some(accepted),
        Poll::Pending => None,
    }
}

/// The next message on the daemon connection; never, while there is none.
async fn next_message(client: &mut Option<Client>) -> Result<ServerMessage, ClientError> {
    match client {
        Some(client) => client.recv().await,
        None => std::future::pending().await,
    }
}

/// Errors that say the listener itself is unusable, as opposed to a failed
/// connection or a temporary shortage (`EMFILE`, `ENFILE`, `ENOBUFS`, ...).
fn accept_error_is_fatal(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::EBADF | libc::EFAULT | libc::EINVAL | libc::ENOTSOCK | libc::EOPNOTSUPP))
}

fn log(event: &GatewayEvent) {
    match event {
        // Per connection: debug, so that a busy gateway writes nothing per connection.
        GatewayEvent::Placed { peer, opened } => tracing::debug!(
            %peer, stream = %opened.stream, pool = %opened.pool, worker = %opened.worker, "placed a connection"
        ),
        GatewayEvent::Refused { peer, error } => tracing::info!(%peer, %error, "refused a connection"),
        GatewayEvent::Ended(ended) => tracing::debug!(
            stream = %ended.stream,
            pool = %ended.pool,
            worker = %ended.worker,
            reason = %ended.reason,
            bytes_in = ended.bytes_in,
            bytes_out = ended.bytes_out,
            bytes_exact = ended.bytes_exact,
            "stream ended"
        ),
        GatewayEvent::Reconnecting { error } => tracing::info!(%error, "reconnecting to streamletd"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_out_of_descriptors_is_not_fatal() {
        assert!(!accept_error_is_fatal(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!accept_error_is_fatal(&io::Error::from_raw_os_error(libc::ECONNABORTED)));
        assert!(accept_error_is_fatal(&io::Error::from_raw_os_error(libc::EBADF)));
    }
}
