//! Layered: fill every streamlet to N streams before any gets N + 1.

use std::cmp::Reverse;

use super::bookkeeping::{Bookkeeping, Load};
use super::ranked::{Order, Ranked};
use crate::{Labels, WorkerKey};

/// Places each stream on a streamlet with the fewest active streams, so the
/// pool fills layer by layer, each streamlet up to its own capacity.
///
/// Ties are broken by the number of preferred labels a streamlet carries (more
/// wins, for example `forwarded=true`), then by the least recently assigned,
/// then by worker id. O(log n) per placement.
pub type Layered = Bookkeeping<Ranked<FewestStreams>>;

impl Layered {
    /// A layered policy that breaks ties in favour of streamlets carrying the
    /// `prefer` labels (key, value).
    pub fn new(prefer: Vec<(String, String)>) -> Self {
        Self::with_rule(Ranked::new(FewestStreams { prefer }))
    }
}

/// The order of [`Layered`].
#[derive(Debug, Default)]
pub struct FewestStreams {
    prefer: Vec<(String, String)>,
}

/// Field order is the placement order (the derived `Ord` is lexicographic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    active: u32,
    /// How many of the preferred labels this streamlet carries; more sorts first.
    preferred: Reverse<u32>,
    /// The placement count when this streamlet was last chosen; 0 = never.
    last: u64,
    worker: WorkerKey,
}

impl Order for FewestStreams {
    /// How many of the preferred labels the streamlet carries.
    type Mark = u32;
    type Key = Key;

    fn mark(&mut self, _worker: WorkerKey, labels: &Labels) -> u32 {
        let n = self.prefer.iter().filter(|(k, v)| labels.get(k) == Some(v)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    fn key(&self, worker: WorkerKey, preferred: u32, load: Load) -> Key {
        Key { active: load.active, preferred: Reverse(preferred), last: load.last, worker }
    }

    fn worker(key: &Key) -> WorkerKey {
        key.worker
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Placement, Request};

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
