//! Maps and sets keyed by the daemon's own ids (streamlets, streams). The
//! daemon hands these out in order; no peer chooses the keys that go in, so
//! they need none of SipHash's defence against collisions chosen to hurt,
//! and hash with one multiply. (A streamlet may name any stream id in a
//! report, but only to look one up: what goes in is the daemon's.)

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

/// Fibonacci hashing of one `u64`: its high bits, which the table reads
/// first, mix every bit of the id.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct IdHasher(u64);

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(GOLDEN);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(GOLDEN);
    }
}

pub(super) type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;
pub(super) type IdSet<K> = HashSet<K, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use streamlet_proto::{StreamId, WorkerId};

    use super::*;

    #[test]
    fn ids_in_order_spread_over_the_table() {
        let mut set: IdSet<StreamId> = IdSet::default();
        for n in 1..=10_000 {
            assert!(set.insert(StreamId(n)));
        }
        assert!((1..=10_000).all(|n| set.contains(&StreamId(n))));
        assert!(!set.contains(&StreamId(10_001)));
        // Sequential ids differ in their top bits too (what picks a group).
        let top = |n: u64| {
            let mut h = IdHasher::default();
            h.write_u64(n);
            h.finish() >> 57
        };
        let groups: HashSet<u64> = (1..=128).map(top).collect();
        assert!(groups.len() > 64, "128 ids fell in {} of 128 groups", groups.len());
        let mut map: IdMap<WorkerId, u32> = IdMap::default();
        map.insert(WorkerId(3), 1);
        assert_eq!(map.get(&WorkerId(3)), Some(&1));
    }
}
