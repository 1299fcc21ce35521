//! Pack: the fullest streamlet that still has room, so the pool fills one
//! streamlet at a time and the autoscaler finds idle ones to retire.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::{Labels, Placement, Request, WorkerKey};

/// Places each stream on the streamlet with the most active streams that
/// still has room; ties go to the oldest (the lowest worker id, since ids
/// grow). O(log n) per placement.
///
/// A spreading policy (least-connections, layered) gives the next stream to
/// the emptiest streamlet, so in an autoscaled pool no streamlet stays empty
/// long enough to be retired until demand falls to nearly nothing: the pool
/// only grows. Packing keeps the newest streamlets the emptiest, which is
/// what idle-grace scale-in needs, and makes lookahead ("the streamlet being
/// filled reached `MAX - 1`") provision exactly one streamlet ahead. The
/// price is load concentration: a full streamlet serves `streams_per_worker`
/// streams while others serve none, so its sandbox limits must be sized for
/// a full streamlet (they already must).
#[derive(Debug, Default)]
pub struct Pack {
    /// The streamlets with room, fullest first, then oldest.
    room: BTreeSet<Entry>,
    members: HashMap<WorkerKey, Entry>,
}

/// Field order is the placement order (the derived `Ord` is lexicographic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    active: Reverse<u32>,
    worker: WorkerKey,
    capacity: u32,
}

impl Entry {
    fn has_room(&self) -> bool {
        self.active.0 < self.capacity
    }
}

impl Pack {
    fn update(&mut self, worker: WorkerKey, f: impl FnOnce(&mut Entry)) {
        let Some(entry) = self.members.get_mut(&worker) else { return };
        self.room.remove(entry);
        f(entry);
        if entry.has_room() {
            self.room.insert(*entry);
        }
    }
}

impl Placement for Pack {
    fn add(&mut self, worker: WorkerKey, capacity: u32, _labels: &Labels) {
        self.remove(worker);
        if capacity == 0 {
            return;
        }
        let entry = Entry { active: Reverse(0), worker, capacity };
        self.members.insert(worker, entry);
        self.room.insert(entry);
    }

    fn remove(&mut self, worker: WorkerKey) {
        if let Some(entry) = self.members.remove(&worker) {
            self.room.remove(&entry);
        }
    }

    fn place(&mut self, _request: &Request) -> Option<WorkerKey> {
        let worker = self.room.first()?.worker;
        self.update(worker, |e| e.active.0 += 1);
        Some(worker)
    }

    fn release(&mut self, worker: WorkerKey) {
        self.update(worker, |e| e.active.0 = e.active.0.saturating_sub(1));
    }

    fn occupy(&mut self, worker: WorkerKey) {
        self.update(worker, |e| e.active.0 = e.active.0.saturating_add(1));
    }

    fn load(&self, worker: WorkerKey) -> Option<(u32, u32)> {
        self.members.get(&worker).map(|e| (e.active.0, e.capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_one_streamlet_before_the_next() {
        let mut p = Pack::default();
        for w in 1..=3 {
            p.add(w, 3, &Labels::new());
        }
        let any = Request::default();
        let picks: Vec<_> = (0..9).map(|_| p.place(&any).unwrap()).collect();
        assert_eq!(picks, [1, 1, 1, 2, 2, 2, 3, 3, 3]);
        assert_eq!(p.place(&any), None, "all full");
    }

    #[test]
    fn a_freed_slot_goes_to_the_fullest_and_the_newest_empties_first() {
        let mut p = Pack::default();
        for w in 1..=3 {
            p.add(w, 4, &Labels::new());
        }
        let any = Request::default();
        for _ in 0..6 {
            p.place(&any);
        }
        // 1: 4 (full), 2: 2, 3: 0. A stream on 1 ends: 1 has room and is the
        // fullest with room again.
        p.release(1);
        assert_eq!(p.place(&any), Some(1));
        assert_eq!(p.place(&any), Some(2), "then the fuller of the others");
        assert_eq!(p.load(3), Some((0, 4)), "the newest stays empty, for the autoscaler to retire");
    }

    #[test]
    fn ties_go_to_the_oldest_and_removed_streamlets_are_never_chosen() {
        let mut p = Pack::default();
        p.add(7, 2, &Labels::new());
        p.add(3, 2, &Labels::new());
        assert_eq!(p.place(&Request::default()), Some(3));
        p.remove(3);
        assert_eq!(p.place(&Request::default()), Some(7));
        p.release(3);
        assert_eq!(p.load(3), None);
        assert_eq!(p.place(&Request::default()), Some(7));
        assert_eq!(p.place(&Request::default()), None);
    }
}
