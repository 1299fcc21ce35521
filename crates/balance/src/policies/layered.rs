//! Layered: fill every streamlet to N streams before any gets N + 1.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};

use crate::{Labels, Placement, Request, WorkerKey};

/// Places each stream on a streamlet with the fewest active streams, so the
/// pool fills layer by layer, each streamlet up to its own capacity.
///
/// Ties are broken by the number of preferred labels a streamlet carries (more
/// wins, for example `forwarded=true`), then by the least recently assigned,
/// then by worker id. O(log n) per placement.
#[derive(Debug, Default)]
pub struct Layered {
    prefer: Vec<(String, String)>,
    /// The streamlets with room, best first.
    room: BTreeSet<Entry>,
    members: HashMap<WorkerKey, Entry>,
    clock: u64,
}

/// Field order is the placement order (the derived `Ord` is lexicographic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    active: u32,
    /// How many of the preferred labels this streamlet carries; more sorts first.
    preferred: Reverse<u32>,
    /// The placement counter when this streamlet was last chosen; 0 = never.
    last: u64,
    worker: WorkerKey,
    capacity: u32,
}

impl Entry {
    fn has_room(&self) -> bool {
        self.active < self.capacity
    }
}

impl Layered {
    /// A layered policy that breaks ties in favour of streamlets carrying the
    /// `prefer` labels (key, value).
    pub fn new(prefer: Vec<(String, String)>) -> Self {
        Self { prefer, ..Self::default() }
    }

    fn preferred_matches(&self, labels: &Labels) -> u32 {
        let n = self.prefer.iter().filter(|(k, v)| labels.get(k) == Some(v)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn update(&mut self, worker: WorkerKey, f: impl FnOnce(&mut Entry)) {
        let Some(entry) = self.members.get_mut(&worker) else { return };
        self.room.remove(entry);
        f(entry);
        if entry.has_room() {
            self.room.insert(*entry);
        }
    }
}

impl Placement for Layered {
    fn add(&mut self, worker: WorkerKey, capacity: u32, labels: &Labels) {
        self.remove(worker);
        if capacity == 0 {
            return;
        }
        let preferred = Reverse(self.preferred_matches(labels));
        let entry = Entry { active: 0, preferred, last: 0, worker, capacity };
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
        self.clock += 1;
        let clock = self.clock;
        self.update(worker, |e| {
            e.active += 1;
            e.last = clock;
        });
        Some(worker)
    }

    fn release(&mut self, worker: WorkerKey) {
        self.update(worker, |e| e.active = e.active.saturating_sub(1));
    }

    fn occupy(&mut self, worker: WorkerKey) {
        self.update(worker, |e| e.active = e.active.saturating_add(1));
    }

    fn load(&self, worker: WorkerKey) -> Option<(u32, u32)> {
        self.members.get(&worker).map(|e| (e.active, e.capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// The seed's example: 3 engines with at most 5 streams each.
    #[test]
    fn fills_three_engines_of_five_layer_by_layer() {
        let mut p = Layered::default();
        for w in 1..=3 {
            p.add(w, 5, &Labels::new());
        }
        let any = Request::default();
        let picks: Vec<_> = (0..15).map(|_| p.place(&any).unwrap()).collect();
        assert_eq!(picks, [1, 2, 3].repeat(5));
        for w in 1..=3 {
            assert_eq!(p.load(w), Some((5, 5)));
        }
        assert_eq!(p.place(&any), None, "the 16th stream is refused");
        p.release(2);
        assert_eq!(p.place(&any), Some(2));
        assert_eq!(p.place(&any), None);
    }

    #[test]
    fn a_small_streamlet_drops_out_when_full() {
        let mut p = Layered::default();
        p.add(1, 1, &Labels::new());
        p.add(2, 3, &Labels::new());
        let any = Request::default();
        let picks: Vec<_> = (0..4).map(|_| p.place(&any)).collect();
        assert_eq!(picks, [Some(1), Some(2), Some(2), Some(2)]);
        assert_eq!(p.place(&any), None);
    }

    #[test]
    fn preferred_labels_break_ties_before_recency() {
        let mut p = Layered::new(vec![("forwarded".into(), "true".into())]);
        p.add(1, 5, &labels(&[("forwarded", "false")]));
        p.add(2, 5, &Labels::new());
        p.add(3, 5, &labels(&[("forwarded", "true"), ("region", "eu")]));
        let any = Request::default();
        let picks: Vec<_> = (0..6).map(|_| p.place(&any).unwrap()).collect();
        assert_eq!(picks, [3, 1, 2, 3, 1, 2]);
    }

    #[test]
    fn more_preferred_matches_win() {
        let mut p = Layered::new(vec![("forwarded".into(), "true".into()), ("zone".into(), "a".into())]);
        p.add(1, 5, &labels(&[("forwarded", "true")]));
        p.add(2, 5, &labels(&[("forwarded", "true"), ("zone", "a")]));
        assert_eq!(p.place(&Request::default()), Some(2));
        assert_eq!(p.place(&Request::default()), Some(1));
    }
}
