//! Geo: the load share plus a penalty for the distance to the stream's region.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::bookkeeping::{Bookkeeping, Load, Members, Rule};
use super::share::ByShare;
use crate::{Labels, Request, WorkerKey};

/// The distance between two different regions missing from the table.
pub const UNKNOWN_DISTANCE: u32 = 1000;

/// The label that names a streamlet's region.
pub const REGION_LABEL: &str = "region";

/// Scores each streamlet with room as its load share (active/capacity, 0 to 1)
/// plus `distance(stream's region, streamlet's region) * penalty_per_unit`,
/// and claims a slot on the lowest score; ties go to the least recently
/// assigned, then the lowest id. When the near region is full, the stream
/// falls back to the nearest region with room. A request without a region is
/// placed by load share alone, as least-connections over the whole pool.
///
/// Streamlets are kept per region, ordered by load share, so a placement looks
/// at the best streamlet of each region: O(r + log n) for r regions.
/// Streamlets without a `region` label form a region of their own, at
/// [`UNKNOWN_DISTANCE`] from every named region.
pub type Geo = Bookkeeping<Nearest>;

impl Geo {
    /// A geo policy over a region-distance table, looked up in both directions
    /// (where a pair is given both ways, the smaller distance counts). A
    /// negative or NaN `penalty_per_unit` counts as 0.
    pub fn new(distances: HashMap<(String, String), u32>, penalty_per_unit: f64) -> Self {
        Self::with_rule(Nearest::new(distances, penalty_per_unit))
    }

    /// The distance between two regions: 0 within a region, the table's
    /// entry, or [`UNKNOWN_DISTANCE`].
    pub fn distance(&self, a: &str, b: &str) -> u32 {
        self.rule().distance(a, b)
    }
}

/// The rule of [`Geo`].
#[derive(Debug, Default)]
pub struct Nearest {
    /// Symmetric: both directions of every pair are stored.
    distances: HashMap<String, HashMap<String, u32>>,
    penalty_per_unit: f64,
    /// The regions seen, by number (a streamlet's mark); "" for no region.
    regions: Vec<String>,
    numbers: HashMap<String, u32>,
    /// The streamlets with room, per region, least loaded first. Regions with
    /// no room left are dropped, so placement looks only where there is room.
    room: BTreeMap<u32, BTreeSet<ByShare>>,
}

impl Nearest {
    fn new(distances: HashMap<(String, String), u32>, penalty_per_unit: f64) -> Self {
        let mut table: HashMap<String, HashMap<String, u32>> = HashMap::new();
        for ((a, b), d) in distances {
            for (from, to) in [(&a, &b), (&b, &a)] {
                let slot = table.entry(from.clone()).or_default().entry(to.clone()).or_insert(d);
                *slot = (*slot).min(d);
            }
        }
        Self { distances: table, penalty_per_unit: penalty_per_unit.max(0.0), ..Self::default() }
    }

    fn distance(&self, a: &str, b: &str) -> u32 {
        if a == b {
            return 0;
        }
        self.distances.get(a).and_then(|to| to.get(b)).copied().unwrap_or(UNKNOWN_DISTANCE)
    }

    fn score(&self, near: &str, region: &str, entry: &ByShare) -> f64 {
        let distance = self.distance(near, region);
        let penalty = if distance == 0 { 0.0 } else { f64::from(distance) * self.penalty_per_unit };
        entry.share() + penalty
    }
}

impl Rule for Nearest {
    /// The number of the streamlet's region.
    type Mark = u32;

    fn mark(&mut self, _worker: WorkerKey, labels: &Labels) -> u32 {
        let region = labels.get(REGION_LABEL).map_or("", String::as_str);
        if let Some(&number) = self.numbers.get(region) {
            return number;
        }
        let number = u32::try_from(self.regions.len()).expect("fewer than 2^32 regions");
        self.regions.push(region.to_owned());
        self.numbers.insert(region.to_owned(), number);
        number
    }

    fn relist(&mut self, worker: WorkerKey, region: u32, old: Option<Load>, new: Option<Load>) {
        if let Some(old) = old {
            if let Some(set) = self.room.get_mut(&region) {
                set.remove(&ByShare::new(worker, old));
                if set.is_empty() {
                    self.room.remove(&region);
                }
            }
        }
        if let Some(new) = new {
            self.room.entry(region).or_default().insert(ByShare::new(worker, new));
        }
    }

    fn choose(&mut self, request: &Request, _members: &Members<u32>) -> Option<WorkerKey> {
        let firsts = self.room.iter().filter_map(|(region, set)| Some((*region, set.first()?)));
        let best = match &request.region {
            None => firsts.map(|(_, e)| *e).min()?,
            Some(near) => {
                let mut best: Option<(f64, ByShare)> = None;
                for (region, e) in firsts {
                    let score = self.score(near, &self.regions[region as usize], e);
                    let better = best.is_none_or(|(s, b)| {
                        score.total_cmp(&s).then(e.last.cmp(&b.last)).then(e.worker.cmp(&b.worker)).is_lt()
                    });
                    if better {
                        best = Some((score, *e));
                    }
                }
                best?.1
            }
        };
        Some(best.worker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Placement;

    fn in_region(region: &str) -> Labels {
        Labels::from([(REGION_LABEL.to_string(), region.to_string())])
    }

    fn from(region: &str) -> Request {
        Request { region: Some(region.to_string()) }
    }

    fn table() -> HashMap<(String, String), u32> {
        HashMap::from([
            (("eu-west".into(), "us-east".into()), 80),
            (("us-east".into(), "ap-south".into()), 200),
            (("ap-south".into(), "eu-west".into()), 120),
        ])
    }

    #[test]
    fn distances_are_symmetric_with_a_default() {
        let p = Geo::new(table(), 0.01);
        assert_eq!(p.distance("eu-west", "us-east"), 80);
        assert_eq!(p.distance("us-east", "eu-west"), 80);
        assert_eq!(p.distance("eu-west", "eu-west"), 0);
        assert_eq!(p.distance("eu-west", "mars"), UNKNOWN_DISTANCE);
    }

    #[test]
    fn prefers_the_near_region() {
        let mut p = Geo::new(table(), 0.01);
        p.add(1, 4, &in_region("us-east"));
        p.add(2, 4, &in_region("eu-west"));
        p.add(3, 4, &in_region("ap-south"));
        for _ in 0..4 {
            assert_eq!(p.place(&from("eu-west")), Some(2));
        }
        for _ in 0..4 {
            assert_eq!(p.place(&from("ap-south")), Some(3));
        }
    }

    #[test]
    fn falls_back_to_the_nearest_region_with_room() {
        // A penalty of 0.1 per unit: distance outweighs any load share.
        let mut p = Geo::new(table(), 0.1);
        p.add(1, 2, &in_region("eu-west"));
        p.add(2, 2, &in_region("ap-south"));
        p.add(3, 2, &in_region("us-east"));
        let picks: Vec<_> = (0..7).map(|_| p.place(&from("eu-west"))).collect();
        // eu-west first; then us-east (80) before ap-south (120); then none.
        assert_eq!(picks, [Some(1), Some(1), Some(3), Some(3), Some(2), Some(2), None]);
        p.release(1);
        assert_eq!(p.place(&from("us-east")), Some(1), "the only room left, however far");
    }

    #[test]
    fn a_busy_near_region_loses_to_an_idle_one_when_the_penalty_is_small() {
        let mut p = Geo::new(table(), 0.001);
        p.add(1, 10, &in_region("eu-west"));
        p.add(2, 10, &in_region("us-east"));
        // 0.08 of penalty for us-east: eu-west wins until its share passes it.
        let picks: Vec<_> = (0..3).map(|_| p.place(&from("eu-west")).unwrap()).collect();
        assert_eq!(picks, [1, 2, 1]);
    }

    #[test]
    fn without_a_region_it_is_least_connections() {
        let mut p = Geo::new(table(), 1.0);
        p.add(1, 4, &in_region("eu-west"));
        p.add(2, 2, &in_region("us-east"));
        p.add(3, 4, &Labels::new());
        let picks: Vec<_> = (0..10).map(|_| p.place(&Request::default())).collect();
        assert_eq!(picks, [Some(1), Some(2), Some(3), Some(1), Some(3), Some(2), Some(1), Some(3), Some(1), Some(3)]);
        assert_eq!(p.place(&Request::default()), None);
    }

    #[test]
    fn removed_streamlets_are_never_chosen() {
        let mut p = Geo::new(table(), 0.01);
        p.add(1, 4, &in_region("eu-west"));
        p.add(2, 4, &in_region("us-east"));
        p.remove(1);
        for _ in 0..4 {
            assert_eq!(p.place(&from("eu-west")), Some(2));
        }
        assert_eq!(p.place(&from("eu-west")), None);
        p.release(1); // unknown: ignored
        assert_eq!(p.load(1), None);
    }
}
