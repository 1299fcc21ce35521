//! Least connections, weighted by capacity, ties broken round-robin.

use super::bookkeeping::{Bookkeeping, Load};
use super::ranked::{Order, Ranked};
use super::share::ByShare;
use crate::{Labels, WorkerKey};

/// Picks the streamlet with the smallest share of its capacity in use; among
/// equals, the one least recently chosen. O(log n) per placement.
pub type LeastConnections = Bookkeeping<Ranked<LeastShare>>;

/// The order of [`LeastConnections`]: [`ByShare`].
#[derive(Debug, Default)]
pub struct LeastShare;

impl Order for LeastShare {
    type Mark = ();
    type Key = ByShare;

    fn mark(&mut self, _worker: WorkerKey, _labels: &Labels) {}

    fn key(&self, worker: WorkerKey, (): (), load: Load) -> ByShare {
        ByShare::new(worker, load)
    }

    fn worker(key: &ByShare) -> WorkerKey {
        key.worker
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;
    use crate::{Placement, Request};

    #[test]
    fn spreads_evenly_and_round_robins_ties() {
        let mut p = LeastConnections::default();
        for w in 1..=3 {
            p.add(w, 10, &Labels::new());
        }
        let picks: Vec<_> = (0..6).map(|_| p.place(&Request::default()).unwrap()).collect();
        assert_eq!(picks, vec![1, 2, 3, 1, 2, 3]);
    }

    #[test]
    fn weights_by_capacity() {
        let mut p = LeastConnections::default();
        p.add(1, 4, &Labels::new());
        p.add(2, 1, &Labels::new());
        let mut counts = [0; 3];
        for _ in 0..5 {
            counts[p.place(&Request::default()).unwrap() as usize] += 1;
        }
        assert_eq!(&counts[1..], &[4, 1]);
        assert_eq!(p.place(&Request::default()), None);
    }

    #[test]
    fn removed_streamlets_are_never_chosen() {
        let mut p = LeastConnections::default();
        p.add(1, 4, &Labels::new());
        p.add(2, 4, &Labels::new());
        p.remove(1);
        for _ in 0..4 {
            assert_eq!(p.place(&Request::default()), Some(2));
        }
        assert_eq!(p.place(&Request::default()), None);
        p.release(1); // unknown: ignored
        assert_eq!(p.load(1), None);
    }

    proptest! {
        /// Whatever the sequence of operations, no streamlet is ever over its
        /// capacity, a placement is refused only when every streamlet is full,
        /// and the choice is always a least-loaded one.
        #[test]
        fn never_overfills_and_always_picks_a_least_loaded(
            caps in proptest::collection::vec(1u32..8, 1..6),
            ops in proptest::collection::vec((0u8..3, 0usize..6), 0..200),
        ) {
            let mut p = LeastConnections::default();
            let mut active: HashMap<WorkerKey, u32> = HashMap::new();
            for (i, c) in caps.iter().enumerate() {
                p.add(i as u64, *c, &Labels::new());
                active.insert(i as u64, 0);
            }
            for (op, w) in ops {
                let w = (w % caps.len()) as u64;
                if op == 0 && active[&w] > 0 {
                    p.release(w);
                    *active.get_mut(&w).unwrap() -= 1;
                    continue;
                }
                let best = active.iter().map(|(k, a)| *a as f64 / caps[*k as usize] as f64).fold(f64::MAX, f64::min);
                match p.place(&Request::default()) {
                    Some(k) => {
                        let share = active[&k] as f64 / caps[k as usize] as f64;
                        prop_assert!((share - best).abs() < 1e-9);
                        *active.get_mut(&k).unwrap() += 1;
                        prop_assert!(active[&k] <= caps[k as usize]);
                    }
                    None => prop_assert!(active.iter().all(|(k, a)| *a == caps[*k as usize])),
                }
                for (k, a) in &active {
                    prop_assert_eq!(p.load(*k), Some((*a, caps[*k as usize])));
                }
            }
        }
    }
}
