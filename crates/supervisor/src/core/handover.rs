//! One hand-over, for a new stream (`open`) and for a stream whose
//! streamlet died (`migrate`) alike: a place is claimed in the pool's
//! placement, the stream's [`Gate`] is passed (a new stream's admission and
//! upstream; nothing for a moved one), and the connection is sent with its
//! `Assign`. A streamlet whose channel fails or is stuck is evicted (killed,
//! and replaced by its monitor) and the next place is tried; a stream that
//! cannot be sent at all gives its place back.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;

use streamlet_proto::channel::encode;
use streamlet_proto::worker::{Assign, ToWorker};
use streamlet_proto::{ErrorBody, ErrorCode, StreamId, WorkerId};

use super::fleet::Fleet;
use crate::link::SendError;

/// The stream to hand over.
#[derive(Debug)]
pub(super) struct Handing<'a> {
    pub(super) pool: &'a str,
    pub(super) stream: StreamId,
    pub(super) tenant: &'a str,
    pub(super) labels: &'a BTreeMap<String, String>,
    pub(super) region: Option<String>,
    pub(super) ingress: Option<u64>,
    /// The client connection.
    pub(super) fd: BorrowedFd<'a>,
}

/// What must hold before a claimed streamlet is sent the stream.
pub(super) trait Gate {
    type Refused;
    /// Called once a place is claimed, before each attempt to send: the
    /// stream's rate and its upstream connection, if it has one. A refusal
    /// gives the place back and ends the hand-over.
    fn pass(&mut self) -> Result<Passage<'_>, Self::Refused>;
}

/// What the streamlet is sent with the stream.
#[derive(Debug)]
pub(super) struct Passage<'a> {
    /// Its paced rate (`None`: not paced by the streamlet).
    pub(super) rate: Option<u64>,
    /// Its relay upstream, sent first.
    pub(super) upstream: Option<BorrowedFd<'a>>,
}

/// A stream that keeps what it has: a moved stream's rate, no upstream.
#[derive(Debug)]
pub(super) struct Keep(pub(super) Option<u64>);

impl Gate for Keep {
    type Refused = std::convert::Infallible;
    fn pass(&mut self) -> Result<Passage<'_>, Self::Refused> {
        Ok(Passage { rate: self.0, upstream: None })
    }
}

#[derive(Debug)]
pub(super) enum HandOverError<R> {
    /// No streamlet of the pool has room (for this tenant).
    NoRoom,
    /// The gate refused.
    Refused(R),
    /// The stream itself cannot be sent (too large, or the daemon is short
    /// of descriptors or memory): nothing wrong with the streamlet.
    Unsent(ErrorBody),
}

/// Hands `handing` to a streamlet of its pool; the one that took it.
/// `doing` names the hand-over in logs.
pub(super) fn hand_over<G: Gate>(
    fleet: &mut Fleet,
    handing: &Handing<'_>,
    gate: &mut G,
    doing: &str,
) -> Result<WorkerId, HandOverError<G::Refused>> {
    let wanted = streamlet_balance::Request { region: handing.region.clone() };
    loop {
        let Some(id) = fleet.claim(handing.pool, handing.tenant, &wanted) else { return Err(HandOverError::NoRoom) };
        let passage = match gate.pass() {
            Ok(passage) => passage,
            Err(refused) => {
                fleet.unclaim(handing.pool, id);
                return Err(HandOverError::Refused(refused));
            }
        };
        let assign = ToWorker::Assign(Assign {
            stream: handing.stream,
            tenant: handing.tenant.to_owned(),
            labels: handing.labels.clone(),
            rate: passage.rate,
            ingress: handing.ingress,
        });
        let assign = match encode(&assign) {
            Ok(assign) => assign,
            Err(e) => {
                fleet.unclaim(handing.pool, id);
                let message = format!("stream too large to hand over: {e}");
                return Err(HandOverError::Unsent(ErrorBody::new(ErrorCode::BadRequest, message)));
            }
        };
        let link = &fleet.workers.get(&id).expect("claimed streamlets are known").link;
        let sent = match passage.upstream {
            Some(upstream) => link.send(&ToWorker::Upstream { stream: handing.stream }, Some(upstream)),
            None => Ok(()),
        };
        match sent.and_then(|()| link.send_encoded(assign, Some(handing.fd))) {
            Ok(()) => {
                fleet.took(id, handing.stream, handing.tenant);
                return Ok(id);
            }
            Err(e @ (SendError::Resources(_) | SendError::Message(_))) => {
                fleet.unclaim(handing.pool, id);
                crate::logcap::limiter().warn_worker(
                    "handover_failed",
                    id.0,
                    format_args!("cannot hand stream {} to streamlet {id} ({doing}): {e}", handing.stream),
                );
                let code =
                    if matches!(e, SendError::Resources(_)) { ErrorCode::Overloaded } else { ErrorCode::BadRequest };
                return Err(HandOverError::Unsent(ErrorBody::new(code, e.to_string())));
            }
            Err(e @ (SendError::Channel(_) | SendError::Stuck)) => fleet.evict(id, &e, doing),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use streamlet_proto::WorkerState;

    use super::*;
    use crate::core::testkit::{client, pool, ready_in_fleet};

    fn handing<'a>(stream: u64, labels: &'a BTreeMap<String, String>, fd: BorrowedFd<'a>) -> Handing<'a> {
        Handing { pool: "echo", stream: StreamId(stream), tenant: "t", labels, region: None, ingress: Some(7), fd }
    }

    /// Refuses, or passes with a rate, counting its calls.
    struct Counting {
        calls: u32,
        refuse: bool,
    }

    impl Gate for Counting {
        type Refused = &'static str;
        fn pass(&mut self) -> Result<Passage<'_>, &'static str> {
            self.calls += 1;
            if self.refuse {
                return Err("no");
            }
            Ok(Passage { rate: Some(1234), upstream: None })
        }
    }

    #[tokio::test]
    async fn the_streamlet_chosen_gets_the_assign_and_the_connection() {
        let mut fleet = Fleet::new(&pool(1, 1, 2, ""));
        let peer = ready_in_fleet(&mut fleet, "echo", 0);
        let (_client, fd) = client();
        let labels = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
        let mut gate = Counting { calls: 0, refuse: false };
        let to = hand_over(&mut fleet, &handing(5, &labels, fd.as_fd()), &mut gate, "testing").unwrap();
        assert_eq!((to, gate.calls), (peer.id, 1));
        let (message, passed) = peer.next().await;
        let ToWorker::Assign(assign) = message else { panic!("an Assign, not {message:?}") };
        assert_eq!(
            (assign.stream, assign.tenant.as_str(), assign.rate, assign.ingress),
            (StreamId(5), "t", Some(1234), Some(7))
        );
        assert_eq!(assign.labels, labels);
        assert!(passed.is_some(), "the connection travels with it");
        assert!(fleet.workers[&peer.id].streams.contains(&StreamId(5)));
    }

    #[tokio::test]
    async fn a_refusal_gives_the_place_back() {
        let mut fleet = Fleet::new(&pool(1, 1, 1, ""));
        let peer = ready_in_fleet(&mut fleet, "echo", 0);
        let (_client, fd) = client();
        let labels = BTreeMap::new();
        let mut gate = Counting { calls: 0, refuse: true };
        let refused = hand_over(&mut fleet, &handing(1, &labels, fd.as_fd()), &mut gate, "testing");
        assert!(matches!(refused, Err(HandOverError::Refused("no"))));
        assert!(peer.quiet().await, "nothing was sent");
        let mut gate = Counting { calls: 0, refuse: false };
        let to = hand_over(&mut fleet, &handing(2, &labels, fd.as_fd()), &mut gate, "testing");
        assert_eq!(to.ok(), Some(peer.id), "its one place is free again");
        let full = hand_over(&mut fleet, &handing(3, &labels, fd.as_fd()), &mut gate, "testing");
        assert!(matches!(full, Err(HandOverError::NoRoom)));
    }

    #[tokio::test]
    async fn a_streamlet_whose_channel_is_gone_is_evicted_and_the_next_takes_the_stream() {
        let mut fleet = Fleet::new(&pool(2, 2, 4, ""));
        let mut dead = ready_in_fleet(&mut fleet, "echo", 0);
        let alive = ready_in_fleet(&mut fleet, "echo", 1);
        dead.close();
        let (_client, fd) = client();
        let labels = BTreeMap::new();
        // Whichever the placement picks, every stream reaches the live one.
        for stream in 1..=3 {
            let to = hand_over(&mut fleet, &handing(stream, &labels, fd.as_fd()), &mut Keep(None), "testing").unwrap();
            assert_eq!(to, alive.id);
            let (message, _) = alive.next().await;
            assert!(
                matches!(message, ToWorker::Assign(Assign { stream: s, rate: None, .. }) if s.0 == stream),
                "{message:?}"
            );
        }
        assert_eq!(fleet.workers[&dead.id].state, WorkerState::Stopping, "tried, and evicted");
        assert_eq!(dead.kills.try_recv().ok(), Some(None), "killed, its exit recorded as the kernel reports it");
        assert!(dead.kills.try_recv().is_err(), "once: out of placement after");
    }
}
