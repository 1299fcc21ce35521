//! Power of two choices: sample two streamlets, take the less loaded.

use std::collections::HashMap;

use super::bookkeeping::{Bookkeeping, Load, Members, Rule};
use crate::{Labels, Request, WorkerKey};

/// Picks two distinct streamlets with room at random and claims a slot on the
/// one with the smaller share of its capacity in use. O(1) expected per
/// placement: the streamlets with room are kept in a vector with an index,
/// and leave it by swap-remove.
///
/// The randomness comes from a seeded generator, so a run is reproducible.
pub type PowerOfTwo = Bookkeeping<TwoChoices>;

impl PowerOfTwo {
    /// A policy whose random choices are drawn from `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_rule(TwoChoices::new(seed))
    }
}

/// The rule of [`PowerOfTwo`].
#[derive(Debug)]
pub struct TwoChoices {
    /// The streamlets with room, in no particular order.
    room: Vec<WorkerKey>,
    /// Where each streamlet of `room` sits in it.
    slots: HashMap<WorkerKey, usize>,
    rng: SplitMix64,
}

impl TwoChoices {
    fn new(seed: u64) -> Self {
        Self { room: Vec::new(), slots: HashMap::new(), rng: SplitMix64(seed) }
    }
}

impl Default for TwoChoices {
    fn default() -> Self {
        Self::new(0x5EED)
    }
}

/// `a` is less loaded than `b`, comparing active/capacity without division.
fn less_loaded(a: &Load, b: &Load) -> bool {
    u64::from(a.active) * u64::from(b.capacity) < u64::from(b.active) * u64::from(a.capacity)
}

impl Rule for TwoChoices {
    type Mark = ();

    fn mark(&mut self, _worker: WorkerKey, _labels: &Labels) {}

    fn relist(&mut self, worker: WorkerKey, (): (), old: Option<Load>, new: Option<Load>) {
        match (old, new) {
            (None, Some(_)) => {
                self.slots.insert(worker, self.room.len());
                self.room.push(worker);
            }
            (Some(_), None) => {
                let Some(slot) = self.slots.remove(&worker) else { return };
                self.room.swap_remove(slot);
                if let Some(&moved) = self.room.get(slot) {
                    self.slots.insert(moved, slot);
                }
            }
            // Still in the room, in the same place.
            _ => {}
        }
    }

    fn choose(&mut self, _request: &Request, members: &Members<()>) -> Option<WorkerKey> {
        let n = self.room.len();
        match n {
            0 => None,
            1 => Some(self.room[0]),
            _ => {
                let i = self.rng.below(n);
                let mut j = self.rng.below(n - 1);
                if j >= i {
                    j += 1;
                }
                let (a, b) = (self.room[i], self.room[j]);
                Some(if less_loaded(&members[&b].load, &members[&a].load) { b } else { a })
            }
        }
    }
}

/// SplitMix64 (Steele, Lea and Flood): small, fast and good enough to sample.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`, by multiply-shift (bias below 2^-32 for any `n` we use).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::Placement;

    fn spread(p: &PowerOfTwo, workers: impl Iterator<Item = WorkerKey>) -> u32 {
        let loads: Vec<u32> = workers.map(|w| p.load(w).unwrap().0).collect();
        loads.iter().max().unwrap() - loads.iter().min().unwrap()
    }

    #[test]
    fn the_same_seed_gives_the_same_choices() {
        let run = |seed| {
            let mut p = PowerOfTwo::new(seed);
            for w in 0..8 {
                p.add(w, 100, &Labels::new());
            }
            (0..50).map(|_| p.place(&Request::default()).unwrap()).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn spreads_better_than_random() {
        let mut p = PowerOfTwo::new(42);
        let mut rng = SplitMix64(42);
        let mut random = [0u32; 20];
        for w in 0..20 {
            p.add(w, 10_000, &Labels::new());
        }
        for _ in 0..20_000 {
            p.place(&Request::default()).unwrap();
            random[rng.below(20)] += 1;
        }
        let p2c = spread(&p, 0..20);
        let uniform = random.iter().max().unwrap() - random.iter().min().unwrap();
        assert!(p2c <= 10, "p2c spread {p2c}");
        assert!(p2c * 4 < uniform, "p2c spread {p2c}, uniform random spread {uniform}");
    }

    #[test]
    fn one_streamlet_with_room_is_chosen_and_none_when_full() {
        let mut p = PowerOfTwo::new(1);
        p.add(1, 1, &Labels::new());
        p.add(2, 3, &Labels::new());
        let any = Request::default();
        let mut counts = [0; 3];
        for _ in 0..4 {
            counts[p.place(&any).unwrap() as usize] += 1;
        }
        assert_eq!(&counts[1..], &[1, 3]);
        assert_eq!(p.place(&any), None);
        p.release(2);
        assert_eq!(p.place(&any), Some(2));
    }

    proptest! {
        /// No streamlet is ever over its capacity, and a placement is refused
        /// only when every streamlet is full.
        #[test]
        fn never_overfills(
            seed in any::<u64>(),
            caps in proptest::collection::vec(1u32..8, 1..6),
            ops in proptest::collection::vec((0u8..3, 0usize..6), 0..200),
        ) {
            let mut p = PowerOfTwo::new(seed);
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
                match p.place(&Request::default()) {
                    Some(k) => {
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
