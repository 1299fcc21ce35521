//! Pack: the fullest streamlet that still has room, so the pool fills one
//! streamlet at a time and the autoscaler finds idle ones to retire.

use std::cmp::Reverse;

use super::bookkeeping::{Bookkeeping, Load};
use super::ranked::{Order, Ranked};
use crate::{Labels, WorkerKey};

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
pub type Pack = Bookkeeping<Ranked<Fullest>>;

/// The order of [`Pack`]: the most active streams first, then the oldest
/// (the lowest id).
#[derive(Debug, Default)]
pub struct Fullest;

impl Order for Fullest {
    type Mark = ();
    type Key = (Reverse<u32>, WorkerKey);

    fn mark(&mut self, _worker: WorkerKey, _labels: &Labels) {}

    fn key(&self, worker: WorkerKey, (): (), load: Load) -> Self::Key {
        (Reverse(load.active), worker)
    }

    fn worker(key: &Self::Key) -> WorkerKey {
        key.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Placement, Request};

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
