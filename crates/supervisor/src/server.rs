//! The accept loop of the control socket.
//!
//! Who may hold a connection is decided at the accept, from the peer's
//! credentials (the kernel's record of the connect): at most
//! [`MAX_CONNECTIONS`] in all, of which the last [`ADMIN_RESERVE`] only for
//! admins (root, the daemon's own user, the `admin` role), and at most
//! [`MAX_PER_UID`] for any one uid that is not an admin. So no peer, with
//! however many idle or half-open connections, can lock the operator out,
//! nor lock another uid out. A connection refused here is told why in the
//! handshake's shape (`overloaded`) and closed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use streamlet_proto::handshake::HelloReply;
use streamlet_proto::{Encoding, ErrorBody, ErrorCode};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinSet;

use crate::conn;
use crate::context::Daemon;
use crate::requests::Role;

/// How long connections get to flush their last frames at shutdown.
const DRAIN: Duration = Duration::from_secs(1);

/// Control connections open at once, at most.
pub const MAX_CONNECTIONS: usize = 1024;

/// Of those, how many only admins may take.
pub const ADMIN_RESERVE: usize = 64;

/// Connections one uid that is not an admin may hold at once.
pub const MAX_PER_UID: usize = 256;

/// Who holds how many connections.
#[derive(Debug, Default)]
struct Holders {
    total: usize,
    per_uid: HashMap<u32, usize>,
}

impl Holders {
    /// Why a new connection of a peer with this uid and role is refused,
    /// if it is.
    fn refusal(&self, uid: u32, role: Role) -> Option<String> {
        if self.total >= MAX_CONNECTIONS {
            return Some(format!("streamletd holds {MAX_CONNECTIONS} control connections, its most; try again later"));
        }
        if role >= Role::Admin {
            return None;
        }
        if self.total >= MAX_CONNECTIONS - ADMIN_RESERVE {
            return Some(format!(
                "streamletd holds {} control connections; the last {ADMIN_RESERVE} are kept for admins",
                self.total
            ));
        }
        let held = self.per_uid.get(&uid).copied().unwrap_or(0);
        if held >= MAX_PER_UID {
            return Some(format!(
                "uid {uid} holds {held} control connections, the most one uid may; close some (a gateway needs few)"
            ));
        }
        None
    }

    fn add(&mut self, uid: u32) {
        self.total += 1;
        *self.per_uid.entry(uid).or_default() += 1;
    }

    fn remove(&mut self, uid: u32) {
        self.total = self.total.saturating_sub(1);
        if let Some(held) = self.per_uid.get_mut(&uid) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.per_uid.remove(&uid);
            }
        }
    }
}

/// Accepts clients until the daemon stops, then waits (briefly) for each
/// connection to send what it has queued. Accept errors (EMFILE, ...) back
/// off instead of spinning.
pub async fn serve(daemon: Arc<Daemon>, listener: UnixListener) {
    let mut stopping = daemon.stopping.subscribe();
    let mut connections = JoinSet::new();
    let mut holders = Holders::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let Some(who) = conn::peer_of(&stream) else {
                        crate::logcap::limiter().warn("peer_cred", "cannot read a client's credentials (SO_PEERCRED); closing it");
                        refuse(stream, None);
                        continue;
                    };
                    let role = who.role(&daemon);
                    // Near the descriptor limit, the reserve is the admins'.
                    let near_limit = || daemon.fds.refuse_stream(daemon.core().live_workers());
                    let refusal = holders.refusal(who.uid, role).or_else(|| (role < Role::Admin).then(near_limit).flatten());
                    if let Some(why) = refusal {
                        crate::logcap::limiter().warn_peer(
                            "connection_refused",
                            who.uid,
                            format_args!("control connection refused: {why}"),
                        );
                        refuse(stream, Some(why));
                        continue;
                    }
                    holders.add(who.uid);
                    let uid = who.uid;
                    let daemon = daemon.clone();
                    daemon.fds.connection_opened();
                    connections.spawn(async move {
                        conn::serve(daemon.clone(), stream, who).await;
                        daemon.fds.connection_closed();
                        uid
                    });
                }
                Err(e) => {
                    crate::logcap::limiter().warn("accept", format_args!("accept failed; pausing 100 ms: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Ok(uid) = done {
                    holders.remove(uid);
                }
            }
            _ = crate::context::stopped(&mut stopping) => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await;
}

/// Tells a refused peer why (in the handshake's shape, if the socket takes it
/// now: never a wait), and closes the connection where its close cannot
/// hold the daemon up (it may have queued descriptors already).
fn refuse(stream: UnixStream, why: Option<String>) {
    if let Some(why) = why {
        let reply = HelloReply::Error(ErrorBody::new(ErrorCode::Overloaded, why));
        if let Ok(frame) = Encoding::Json.encode_frame(&reply) {
            let _ = stream.try_write(&frame);
        }
    }
    match stream.into_std() {
        Ok(stream) => streamlet_proto::foreign::dispose(stream.into()),
        Err(e) => tracing::debug!(error = %e, "cannot take a refused connection off the reactor"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_keep_a_reserve_and_no_uid_takes_more_than_its_share() {
        let mut holders = Holders::default();
        for _ in 0..MAX_PER_UID {
            assert_eq!(holders.refusal(1000, Role::Gateway), None);
            holders.add(1000);
        }
        let refused = holders.refusal(1000, Role::Gateway).unwrap();
        assert!(refused.contains("uid 1000"), "{refused}");
        assert_eq!(holders.refusal(1001, Role::Viewer), None, "another uid has its own share");
        let mut uid = 2000;
        while holders.total < MAX_CONNECTIONS - ADMIN_RESERVE {
            holders.add(uid);
            uid += 1;
        }
        assert!(holders.refusal(99_999, Role::Gateway).unwrap().contains("kept for admins"));
        assert_eq!(holders.refusal(0, Role::Admin), None, "the reserve is the admins'");
        while holders.total < MAX_CONNECTIONS {
            holders.add(0);
        }
        assert!(holders.refusal(0, Role::Admin).is_some(), "and then nobody");
        holders.remove(1000);
        holders.remove(1000);
        assert_eq!(holders.per_uid[&1000], MAX_PER_UID - 2);
    }
}
