//! Round robin over the streamlets with room.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use crate::{Labels, Placement, Request, WorkerKey};

/// Takes the streamlets in turn, in the order they were added, skipping the
/// full ones. Only streamlets with room are on the ring, so a full pool is
/// refused at once and each placement is O(log n).
#[derive(Debug, Default)]
pub struct RoundRobin {
    /// The streamlets with room, by their place on the ring.
    ring: BTreeMap<u64, WorkerKey>,
    members: HashMap<WorkerKey, Member>,
    /// The ring position of the last streamlet chosen.
    cursor: u64,
    /// The next ring position to hand out.
    next_position: u64,
}

#[derive(Debug, Clone, Copy)]
struct Member {
    active: u32,
    capacity: u32,
    position: u64,
}

impl RoundRobin {
    fn update(&mut self, worker: WorkerKey, f: impl FnOnce(&mut Member)) {
        let Some(member) = self.members.get_mut(&worker) else { return };
        f(member);
        if member.active < member.capacity {
            self.ring.insert(member.position, worker);
        } else {
            self.ring.remove(&member.position);
        }
    }
}

impl Placement for RoundRobin {
    fn add(&mut self, worker: WorkerKey, capacity: u32, _labels: &Labels) {
        self.remove(worker);
        if capacity == 0 {
            return;
        }
        self.next_position += 1;
        let position = self.next_position;
        self.members.insert(worker, Member { active: 0, capacity, position });
        self.ring.insert(position, worker);
    }

    fn remove(&mut self, worker: WorkerKey) {
        if let Some(member) = self.members.remove(&worker) {
            self.ring.remove(&member.position);
        }
    }

    fn place(&mut self, _request: &Request) -> Option<WorkerKey> {
        let after = (Bound::Excluded(self.cursor), Bound::Unbounded);
        let (&position, &worker) = self.ring.range(after).next().or_else(|| self.ring.first_key_value())?;
        self.cursor = position;
        self.update(worker, |m| m.active += 1);
        Some(worker)
    }

    fn release(&mut self, worker: WorkerKey) {
        self.update(worker, |m| m.active = m.active.saturating_sub(1));
    }

    fn occupy(&mut self, worker: WorkerKey) {
        self.update(worker, |m| m.active = m.active.saturating_add(1));
    }

    fn load(&self, worker: WorkerKey) -> Option<(u32, u32)> {
        self.members.get(&worker).map(|m| (m.active, m.capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_streamlets_in_turn() {
        let mut p = RoundRobin::default();
        for w in 1..=3 {
            p.add(w, 10, &Labels::new());
        }
        let picks: Vec<_> = (0..7).map(|_| p.place(&Request::default()).unwrap()).collect();
        assert_eq!(picks, [1, 2, 3, 1, 2, 3, 1]);
    }

    #[test]
    fn skips_full_streamlets_and_refuses_when_all_are_full() {
        let mut p = RoundRobin::default();
        p.add(1, 1, &Labels::new());
        p.add(2, 3, &Labels::new());
        p.add(3, 1, &Labels::new());
        let any = Request::default();
        let picks: Vec<_> = (0..5).map(|_| p.place(&any)).collect();
        assert_eq!(picks, [Some(1), Some(2), Some(3), Some(2), Some(2)]);
        assert_eq!(p.place(&any), None);
        p.release(1);
        assert_eq!(p.place(&any), Some(1));
        assert_eq!(p.place(&any), None);
    }

    #[test]
    fn a_released_streamlet_keeps_its_turn() {
        let mut p = RoundRobin::default();
        for w in 1..=3 {
            p.add(w, 1, &Labels::new());
        }
        let any = Request::default();
        assert_eq!(p.place(&any), Some(1));
        assert_eq!(p.place(&any), Some(2));
        p.release(1);
        assert_eq!(p.place(&any), Some(3));
        assert_eq!(p.place(&any), Some(1));
    }

    #[test]
    fn removed_streamlets_are_never_chosen() {
        let mut p = RoundRobin::default();
        for w in 1..=3 {
            p.add(w, 2, &Labels::new());
        }
        p.remove(2);
        let picks: Vec<_> = (0..4).map(|_| p.place(&Request::default()).unwrap()).collect();
        assert_eq!(picks, [1, 3, 1, 3]);
        assert_eq!(p.place(&Request::default()), None);
        p.release(2); // unknown: ignored
        assert_eq!(p.load(2), None);
    }
}
