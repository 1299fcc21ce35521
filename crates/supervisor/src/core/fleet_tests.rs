//! The fleet on its own: placement in step with each streamlet's state.

use streamlet_balance::Request;
use streamlet_proto::{ExitCause, StreamId, WorkerState};

use super::*;
use crate::core::pool::{DeathRecord, Slot, DEATHS_KEPT};
use crate::core::testkit::{new_worker, pool, ready_in_fleet};

fn anywhere() -> Request {
    Request { region: None }
}

#[tokio::test]
async fn a_streamlet_takes_streams_only_once_ready_and_up_to_its_capacity() {
    let mut fleet = Fleet::new(&pool(1, 1, 2, ""));
    let id = fleet.next_worker_id();
    let (new, _peer) = new_worker(id, "echo", 0);
    assert_eq!(fleet.insert(new, false), 0, "a new slot has no restarts");
    assert_eq!(fleet.pools["echo"].slots[0].worker, Some(id));
    assert_eq!(fleet.claim("echo", "t", &anywhere()), None, "starting: out of placement");
    assert!(!fleet.at_min());
    assert!(matches!(fleet.ready(id), Some(Readied::Serving { .. })));
    assert_eq!(fleet.ready(id), None, "ready once");
    assert!(fleet.at_min());
    for n in 0..2 {
        assert_eq!(fleet.claim("echo", "t", &anywhere()), Some(id));
        fleet.took(id, StreamId(n), "t");
    }
    assert_eq!(fleet.claim("echo", "t", &anywhere()), None, "full at streams_per_worker");
    assert_eq!(fleet.workers[&id].idle_since, None);
    fleet.free(id, StreamId(0));
    assert_eq!(fleet.claim("echo", "t", &anywhere()), Some(id), "a freed place is taken again");
    fleet.unclaim("echo", id);
    fleet.free(id, StreamId(1));
    assert!(fleet.workers[&id].idle_since.is_some(), "empty: idle from now");
}

#[tokio::test]
async fn a_draining_or_evicted_streamlet_is_out_of_placement() {
    let mut fleet = Fleet::new(&pool(2, 2, 4, ""));
    let a = ready_in_fleet(&mut fleet, "echo", 0);
    let mut b = ready_in_fleet(&mut fleet, "echo", 1);
    fleet.took(a.id, StreamId(1), "t");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    assert_eq!(fleet.drain(a.id, deadline).unwrap(), DrainOutcome::Draining, "it has a stream");
    assert_eq!(fleet.workers[&a.id].state, WorkerState::Draining);
    let sooner = deadline - std::time::Duration::from_secs(30);
    fleet.drain(a.id, sooner).unwrap();
    fleet.drain(a.id, deadline).unwrap();
    assert_eq!(fleet.workers[&a.id].drain_deadline, Some(sooner), "a second drain never pushes it away");
    for _ in 0..4 {
        assert_eq!(fleet.claim("echo", "t", &anywhere()), Some(b.id), "only the other takes streams");
    }
    fleet.evict(b.id, &SendError::Stuck, "testing");
    assert_eq!(fleet.claim("echo", "t", &anywhere()), None, "evicted: out of placement");
    assert_eq!(fleet.workers[&b.id].state, WorkerState::Stopping);
    let cause = b.kills.try_recv().expect("its monitor is asked to kill it");
    assert!(matches!(cause, Some(ExitCause::ProtocolError { .. })), "a stuck channel is a protocol error: {cause:?}");
    assert!(fleet.drain(b.id, deadline).is_err(), "a stopping streamlet cannot drain");
    assert!(fleet.drain(WorkerId(99), deadline).is_err(), "nor an unknown one");
}

#[tokio::test]
async fn a_ready_spare_takes_a_slot_with_its_labels_and_enters_placement() {
    let mut fleet = Fleet::new(&pool(1, 1, 4, "spare = true\nworker_labels = [{ zone = \"a\" }]\n"));
    let spare = ready_in_fleet(&mut fleet, "echo", SPARE_SLOT);
    assert_eq!(fleet.workers[&spare.id].state, WorkerState::Spare);
    assert_eq!(fleet.pools["echo"].spare, Some(spare.id));
    assert_eq!(fleet.claim("echo", "t", &anywhere()), None, "a spare serves nothing");
    assert_eq!(fleet.promote_spare("echo", 0), Some(spare.id));
    assert_eq!(fleet.promote_spare("echo", 0), None, "there is one spare");
    let worker = &fleet.workers[&spare.id];
    assert_eq!((worker.state, worker.slot), (WorkerState::Ready, 0));
    assert_eq!(worker.labels.get("zone").map(String::as_str), Some("a"));
    assert_eq!(fleet.pools["echo"].slots[0].worker, Some(spare.id));
    assert_eq!(fleet.claim("echo", "t", &anywhere()), Some(spare.id));
}

#[tokio::test]
async fn with_tenant_isolation_a_streamlet_serves_one_tenant_at_a_time() {
    let mut fleet = Fleet::new(&pool(2, 2, 4, "tenant_isolation = true\n"));
    let a = ready_in_fleet(&mut fleet, "echo", 0);
    let b = ready_in_fleet(&mut fleet, "echo", 1);
    let first = fleet.claim("echo", "red", &anywhere()).unwrap();
    fleet.took(first, StreamId(1), "red");
    let other = if first == a.id { b.id } else { a.id };
    let blue = fleet.claim("echo", "blue", &anywhere()).unwrap();
    assert_eq!(blue, other, "blue goes to the empty streamlet");
    fleet.took(blue, StreamId(2), "blue");
    assert_eq!(fleet.claim("echo", "green", &anywhere()), None, "no streamlet is free of others' streams");
    let red = fleet.claim("echo", "red", &anywhere()).unwrap();
    assert_eq!(red, first, "red stays with red");
    fleet.unclaim("echo", red);
    fleet.free(first, StreamId(1));
    assert_eq!(fleet.claim("echo", "green", &anywhere()), Some(first), "empty again: anyone's");
}

#[tokio::test]
async fn a_slot_remembers_its_last_deaths_only() {
    let mut slot = Slot { worker: Some(WorkerId(1)), ..Slot::default() };
    for n in 0..DEATHS_KEPT as u64 + 3 {
        slot.record_death(DeathRecord {
            worker: WorkerId(n + 1),
            cause: ExitCause::Signaled { signal: 9, core_dumped: false },
            uptime: std::time::Duration::ZERO,
            at: std::time::Instant::now(),
            streams: 0,
        });
    }
    assert_eq!(slot.worker, None, "its streamlet died");
    assert_eq!(slot.restarts, DEATHS_KEPT as u32 + 3);
    assert_eq!(slot.history.len(), DEATHS_KEPT);
    assert_eq!(slot.history.front().map(|d| d.worker), Some(WorkerId(4)), "the oldest went first");
}
