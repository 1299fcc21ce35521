//! A minimal TCP gateway: every accepted connection is handed to a streamlet
//! of one pool.
//!
//! One loop owns the listener and one [`Client`]. It waits on both at once:
//! an accepted connection is sent to the daemon with `Open` and then closed
//! here (the daemon and the streamlet hold their own copies); an event is
//! reported. When the daemon connection is lost the gateway connects again
//! with a backoff (50 ms doubling to 2 s), refusing (closing) connections
//! accepted meanwhile. Accept errors such as `EMFILE` pause the loop for
//! 100 ms instead of spinning.

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::Duration;

use streamlet_proto::{Encoding, ErrorBody, ErrorCode, Event, OpenRequest, Opened, StreamEnded};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::{Client, ClientError};

/// The name the gateway gives itself in the handshake.
pub const GATEWAY_NAME: &str = "streamlet-gateway";

/// How long to wait for the daemon to place a connection before giving up on
/// the daemon connection.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

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
}

/// The daemon connection, when there is one, and when to try again when not.
#[derive(Debug)]
struct Link {
    client: Option<Client>,
    backoff: Backoff,
    retry_at: Instant,
    last_error: String,
}

impl Gateway {
    /// A gateway handing connections to `pool` through the daemon at `socket`.
    pub fn new(socket: impl Into<PathBuf>, pool: impl Into<String>) -> Self {
        Self { socket: socket.into(), pool: pool.into(), tenant: None, events: None }
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

    /// Serves `listener` until accepting fails for good (the listener itself
    /// is broken); the daemon going away is not fatal.
    pub async fn run(self, listener: TcpListener) -> Result<(), GatewayError> {
        let addr = listener.local_addr().map_or_else(|_| "the listener".to_owned(), |a| a.to_string());
        let mut link = Link {
            client: None,
            backoff: Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX),
            retry_at: Instant::now(),
            last_error: String::new(),
        };
        loop {
            if link.client.is_none() && Instant::now() >= link.retry_at {
                self.connect(&mut link).await;
            }
            let retry_at = link.retry_at;
            let disconnected = link.client.is_none();
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => self.place(&mut link, stream, peer).await,
                    Err(source) if accept_error_is_fatal(&source) => return Err(GatewayError::Accept { addr, source }),
                    Err(err) => {
                        tracing::warn!(%addr, error = %err, "accepting a connection failed; pausing");
                        tokio::time::sleep(ACCEPT_PAUSE).await;
                    }
                },
                event = next_event(&mut link.client) => match event {
                    Ok(Event::StreamEnded(ended)) => self.emit(GatewayEvent::Ended(ended)),
                    // Lifecycle events come only to connections that subscribe.
                    Ok(other) => tracing::debug!(?other, "ignoring an event"),
                    Err(err @ ClientError::Unexpected { .. }) => tracing::warn!(error = %err, "ignoring a message"),
                    Err(err) => self.lost(&mut link, err),
                },
                () = tokio::time::sleep_until(retry_at), if disconnected => {}
            }
        }
    }

    async fn connect(&self, link: &mut Link) {
        match Client::connect_with(&self.socket, Encoding::Postcard, GATEWAY_NAME).await {
            Ok(mut client) => {
                tracing::info!(socket = %self.socket.display(), server = %client.welcome().server, "connected to streamletd");
                client.set_request_timeout(Some(OPEN_TIMEOUT));
                link.client = Some(client);
                link.backoff.reset();
            }
            Err(err) => self.lost(link, err),
        }
    }

    /// Drops the daemon connection and schedules the next attempt.
    fn lost(&self, link: &mut Link, err: ClientError) {
        link.client = None;
        let delay = link.backoff.next_delay();
        link.retry_at = Instant::now() + delay;
        link.last_error = err.to_string();
        tracing::debug!(retry_in = ?delay, "daemon connection down");
        self.emit(GatewayEvent::Reconnecting { error: link.last_error.clone() });
    }

    /// Hands `stream` to the daemon, then closes our copy of it either way.
    async fn place(&self, link: &mut Link, stream: TcpStream, peer: SocketAddr) {
        let Some(client) = link.client.as_mut() else {
            let message = format!("no connection to streamletd ({})", link.last_error);
            self.emit(GatewayEvent::Refused { peer, error: ErrorBody::new(ErrorCode::Internal, message) });
            return;
        };
        let request = OpenRequest {
            tenant: self.tenant.clone(),
            labels: BTreeMap::from([("peer".to_owned(), peer.to_string())]),
            ..OpenRequest::new(self.pool.clone())
        };
        let result = client.open(request, stream.as_fd()).await;
        drop(stream);
        match result {
            Ok(opened) => self.emit(GatewayEvent::Placed { peer, opened }),
            Err(ClientError::Server(error)) => self.emit(GatewayEvent::Refused { peer, error }),
            Err(err) => {
                let message = format!("handing the connection to streamletd: {err}");
                self.emit(GatewayEvent::Refused { peer, error: ErrorBody::new(ErrorCode::Internal, message) });
                if err.is_connection_lost() || matches!(err, ClientError::Timeout) {
                    self.lost(link, err);
                }
            }
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

/// The next event on the daemon connection; never, while there is none.
async fn next_event(client: &mut Option<Client>) -> Result<Event, ClientError> {
    match client {
        Some(client) => client.next_event().await,
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
        GatewayEvent::Placed { peer, opened } => tracing::info!(
            %peer, stream = %opened.stream, pool = %opened.pool, worker = %opened.worker, "placed a connection"
        ),
        GatewayEvent::Refused { peer, error } => tracing::info!(%peer, %error, "refused a connection"),
        GatewayEvent::Ended(ended) => tracing::info!(
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
