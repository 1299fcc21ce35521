//! Round robin over the streamlets with room.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::bookkeeping::{Bookkeeping, Load, Members, Rule};
use crate::{Labels, Request, WorkerKey};

/// Takes the streamlets in turn, in the order they were added, skipping the
/// full ones. Only streamlets with room are on the ring, so a full pool is
/// refused at once and each placement is O(log n).
pub type RoundRobin = Bookkeeping<Ring>;

/// The rule of [`RoundRobin`].
#[derive(Debug, Default)]
pub struct Ring {
    /// The streamlets with room, by their place on the ring.
    ring: BTreeMap<u64, WorkerKey>,
    /// The ring position of the last streamlet chosen.
    cursor: u64,
    /// The last ring position handed out.
    last_position: u64,
}

impl Rule for Ring {
    /// The streamlet's place on the ring.
    type Mark = u64;

    fn mark(&mut self, _worker: WorkerKey, _labels: &Labels) -> u64 {
        self.last_position += 1;
        self.last_position
    }

    fn relist(&mut self, worker: WorkerKey, position: u64, old: Option<Load>, new: Option<Load>) {
        match (old, new) {
            (None, Some(_)) => {
                self.ring.insert(position, worker);
            }
            (Some(_), None) => {
                self.ring.remove(&position);
            }
            // Its turn is its place, which room does not change.
            _ => {}
        }
    }

    fn choose(&mut self, _request: &Request, _members: &Members<u64>) -> Option<WorkerKey> {
        let after = (Bound::Excluded(self.cursor), Bound::Unbounded);
        let (&position, &worker) = self.ring.range(after).next().or_else(|| self.ring.first_key_value())?;
        self.cursor = position;
        Some(worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Placement;

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
