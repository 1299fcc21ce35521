//! The accept loop of the control socket.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixListener;
use tokio::task::JoinSet;

use crate::conn;
use crate::daemon::Daemon;

/// How long connections get to flush their last frames at shutdown.
const DRAIN: Duration = Duration::from_secs(1);

/// Control connections open at once, at most; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 1024;

/// Accepts clients until the daemon stops, then waits (briefly) for each
/// connection to send what it has queued. Accept errors (EMFILE, ...) back
/// off instead of spinning.
pub async fn serve(daemon: Arc<Daemon>, listener: UnixListener) {
    let mut stopping = daemon.stopping.subscribe();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) if connections.len() >= MAX_CONNECTIONS => {
                    tracing::warn!(max = MAX_CONNECTIONS, "too many control connections; closing a new one");
                    drop(stream);
                }
                Ok((stream, _)) => {
                    connections.spawn(conn::serve(daemon.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; pausing 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = crate::daemon::stopped(&mut stopping) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
}
