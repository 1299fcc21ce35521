//! What the core's unit tests share: a core from a configuration, and
//! streamlets that are nothing but the far end of their channel (no
//! process), read by the test to see what the core sent them.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use streamlet_proto::channel::{seqpacket_pair, Channel};
use streamlet_proto::foreign::ForeignFd;
use streamlet_proto::worker::ToWorker;
use streamlet_proto::{Event, WorkerId};
use tokio::sync::mpsc;

use super::coordinator::Core;
use super::fleet::{Fleet, NewWorker};
use super::worker::KillRequest;
use crate::config::Config;
use crate::link::WorkerLink;

/// A configuration of `pools` (TOML), as a file would give it.
pub(super) fn config(toml: &str) -> Config {
    Config::parse(toml, "test").unwrap()
}

/// One pool `echo` of `min` streamlets (at most `max`), `per` streams each.
pub(super) fn pool(min: u32, max: u32, per: u32, extra: &str) -> Config {
    config(&format!(
        "[pools.echo]\nhandler = {{ kind = \"echo\" }}\nworkers = {{ min = {min}, max = {max} }}\nstreams_per_worker = {per}\n{extra}"
    ))
}

/// A streamlet as the core sees it from the far end of its channel.
pub(super) struct Peer {
    pub(super) id: WorkerId,
    channel: Option<Channel>,
    pub(super) kills: mpsc::UnboundedReceiver<KillRequest>,
}

impl Peer {
    /// The next message the core sent, with its descriptor.
    pub(super) async fn next(&self) -> (ToWorker, Option<OwnedFd>) {
        let channel = self.channel.as_ref().expect("open");
        let received = tokio::time::timeout(Duration::from_secs(5), channel.recv::<ToWorker>()).await;
        received.expect("a message within 5 s").expect("a well-formed message").expect("the channel is open")
    }

    /// Whether a message is waiting now.
    pub(super) async fn quiet(&self) -> bool {
        let channel = self.channel.as_ref().expect("open");
        tokio::time::timeout(Duration::from_millis(20), channel.recv::<ToWorker>()).await.is_err()
    }

    /// The streamlet's end closes, as when it dies.
    pub(super) fn close(&mut self) {
        self.channel = None;
    }
}

/// A new streamlet of `pool` in `slot`: its entry, and its far end.
pub(super) fn new_worker(id: WorkerId, pool: &str, slot: usize) -> (NewWorker, Peer) {
    let (ours, theirs) = seqpacket_pair().unwrap();
    let (kill, kills) = mpsc::unbounded_channel();
    let new = NewWorker {
        id,
        pool: pool.to_owned(),
        slot,
        pid: 0,
        link: Arc::new(WorkerLink::new(Channel::new(ours).unwrap())),
        kill,
        confinement: Default::default(),
    };
    (new, Peer { id, channel: Some(Channel::new(theirs).unwrap()), kills })
}

/// A streamlet of `pool` in `slot`, spawned into `fleet` and ready.
pub(super) fn ready_in_fleet(fleet: &mut Fleet, pool: &str, slot: usize) -> Peer {
    let id = fleet.next_worker_id();
    let (new, peer) = new_worker(id, pool, slot);
    fleet.insert(new, false);
    fleet.ready(id).expect("it was starting");
    peer
}

/// A streamlet of `pool` in `slot`, spawned into `core` and ready.
pub(super) fn ready_in_core(core: &mut Core, pool: &str, slot: usize) -> Peer {
    let id = core.alloc_worker_id();
    let (new, peer) = new_worker(id, pool, slot);
    core.insert_worker(new);
    assert!(core.worker_ready(id));
    peer
}

/// A client connection: the client's end, and the one a gateway hands over.
pub(super) fn client() -> (UnixStream, ForeignFd) {
    let (client, handed) = UnixStream::pair().unwrap();
    (client, ForeignFd::new(handed.into()))
}

/// The events the core logged, oldest first.
pub(super) fn events(core: &mut Core) -> Vec<Event> {
    let (sink, _rx) = crate::events::EventSink::new(streamlet_proto::Encoding::Json);
    core.events(None, false, &sink).events.into_iter().map(|e| e.event).collect()
}
