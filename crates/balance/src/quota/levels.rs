//! Weighted max-min fair sharing (water-filling), kept up to date one demand
//! at a time instead of recomputed from scratch.
//!
//! Every demand gets its `min`; the caller guarantees the minimums fit. The
//! residual above the minimums rises like water: at level `λ` a demand of
//! weight `w` holds `min(max - min, ⌊w·λ⌋)` above its minimum. Each level is
//! the largest `λ` whose holdings fit its residual, so it is an exact rational
//! `num / den` (see [`Water`]) and every share is rounded down: the levels
//! never hand out a byte they do not have, and leave idle less than one byte
//! per second for each demand below its max.
//!
//! The demands live in [`LevelIndex`], sorted by the level at which each
//! reaches its max (`(max - min) / w`), in blocks of at most [`BLOCK`] with
//! per-pool sums of spans and weights. Adding or removing a demand is a binary
//! search plus a shift within one block; finding a level walks the block sums
//! and then one block: O(n / BLOCK + BLOCK) with no sort and no allocation. A
//! holder's rate is then O(1) from its pool's level (see
//! [`Allocator`](super::Allocator)).

use std::cmp::Ordering;

/// The most demands in one block before it splits in two.
pub(crate) const BLOCK: usize = 512;

/// A water level: the share above its minimum of a demand of weight `w` is
/// `⌊w · num / den⌋`, at most its span. `Full`: every demand at its max.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Water {
    At { num: u128, den: u128 },
    Full,
}

impl Water {
    /// A demand's rate above its minimum at this level.
    pub fn share(self, span: u64, weight: u32) -> u64 {
        match self {
            Water::Full => span,
            Water::At { num, den } => {
                let share = u128::from(weight) * num / den;
                u64::try_from(share).map_or(span, |s| s.min(span))
            }
        }
    }

    /// The lower of two levels.
    pub fn min(self, other: Water) -> Water {
        if self.below(other) {
            self
        } else {
            other
        }
    }

    /// Whether this level is strictly below `other`.
    pub fn below(self, other: Water) -> bool {
        match (self, other) {
            (Water::Full, _) => false,
            (Water::At { .. }, Water::Full) => true,
            // num <= 2^64 and den <= 2^8 · 2^32 demands: the products fit.
            (Water::At { num: a, den: b }, Water::At { num: c, den: d }) => a * d < c * b,
        }
    }
}

/// One demand as the index sees it: its span above the minimum, its weight,
/// its pool and its admission order (which makes every key distinct).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Item {
    pub span: u64,
    pub weight: u32,
    pub pool: u32,
    pub seq: u64,
}

impl Item {
    /// Ordered by saturation level `span / weight` (compared exactly), then by `seq`.
    fn key_cmp(&self, other: &Item) -> Ordering {
        let a = u128::from(self.span) * u128::from(other.weight);
        let b = u128::from(other.span) * u128::from(self.weight);
        a.cmp(&b).then(self.seq.cmp(&other.seq))
    }
}

/// Sums of spans and weights.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sum {
    span: u128,
    weight: u128,
}

impl Sum {
    fn add(&mut self, item: &Item) {
        self.span += u128::from(item.span);
        self.weight += u128::from(item.weight);
    }

    fn sub(&mut self, item: &Item) {
        self.span -= u128::from(item.span);
        self.weight -= u128::from(item.weight);
    }

    fn minus(self, other: Sum) -> Sum {
        Sum { span: self.span - other.span, weight: self.weight - other.weight }
    }
}

#[derive(Debug, Clone, Default)]
struct Block {
    items: Vec<Item>,
    /// Per pool, and over all pools.
    pools: Vec<Sum>,
    all: Sum,
}

impl Block {
    fn with(items: Vec<Item>, npools: usize) -> Block {
        let mut block = Block { items: Vec::new(), pools: vec![Sum::default(); npools], all: Sum::default() };
        for item in &items {
            block.count(item);
        }
        block.items = items;
        block
    }

    fn count(&mut self, item: &Item) {
        self.pools[item.pool as usize].add(item);
        self.all.add(item);
    }

    fn uncount(&mut self, item: &Item) {
        self.pools[item.pool as usize].sub(item);
        self.all.sub(item);
    }

    fn last(&self) -> &Item {
        self.items.last().expect("blocks are never empty")
    }
}

/// Which demands a level is found for: one pool's, or those of every pool not
/// yet closed at its own (lower) level.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope<'a> {
    Pool(usize),
    Open { closed: &'a [bool] },
}

impl Scope<'_> {
    fn holds(&self, item: &Item) -> bool {
        match *self {
            Scope::Pool(p) => item.pool as usize == p,
            Scope::Open { closed } => !closed[item.pool as usize],
        }
    }

    fn sum(&self, pools: &[Sum], all: Sum) -> Sum {
        match *self {
            Scope::Pool(p) => pools[p],
            Scope::Open { closed } => {
                pools.iter().zip(closed).filter(|(_, c)| **c).fold(all, |acc, (s, _)| acc.minus(*s))
            }
        }
    }
}

/// The demands, sorted by saturation level, in blocks with running sums.
#[derive(Debug, Clone, Default)]
pub(crate) struct LevelIndex {
    blocks: Vec<Block>,
    pools: Vec<Sum>,
    all: Sum,
}

impl LevelIndex {
    /// Makes room for one more pool (pools are numbered from 0, never removed).
    pub fn add_pool(&mut self) {
        self.pools.push(Sum::default());
        for block in &mut self.blocks {
            block.pools.push(Sum::default());
        }
    }

    pub fn insert(&mut self, item: Item) {
        let npools = self.pools.len();
        self.pools[item.pool as usize].add(&item);
        self.all.add(&item);
        if self.blocks.is_empty() {
            self.blocks.push(Block::with(vec![item], npools));
            return;
        }
        let b = self.block_of(&item).min(self.blocks.len() - 1);
        let block = &mut self.blocks[b];
        let at = block.items.partition_point(|x| x.key_cmp(&item) == Ordering::Less);
        block.items.insert(at, item);
        block.count(&item);
        if block.items.len() > BLOCK {
            let upper = block.items.split_off(BLOCK / 2);
            let lower = std::mem::take(&mut block.items);
            self.blocks[b] = Block::with(lower, npools);
            self.blocks.insert(b + 1, Block::with(upper, npools));
        }
    }

    /// Removes a demand inserted before; false if it is not there.
    pub fn remove(&mut self, item: &Item) -> bool {
        let b = self.block_of(item);
        let Some(block) = self.blocks.get_mut(b) else { return false };
        let at = block.items.partition_point(|x| x.key_cmp(item) == Ordering::Less);
        if block.items.get(at) != Some(item) {
            return false;
        }
        block.items.remove(at);
        block.uncount(item);
        if block.items.is_empty() {
            self.blocks.remove(b);
        }
        self.pools[item.pool as usize].sub(item);
        self.all.sub(item);
        true
    }

    /// The first block whose last key is not below `item`'s.
    fn block_of(&self, item: &Item) -> usize {
        self.blocks.partition_point(|b| b.last().key_cmp(item) == Ordering::Less)
    }

    /// The highest level at which the demands in `scope` hold at most
    /// `residual` above their minimums.
    ///
    /// At level `λ` they hold `U(λ) = Σ_{saturated} span + λ · Σ_{others} w`,
    /// which rises with `λ`. The walk finds the first demand `i` (in level
    /// order) with `U(level_i) >= residual`: every demand before it is
    /// saturated, and `λ = (residual - their spans) / (the weights from i on)`.
    pub fn solve(&self, residual: u64, scope: Scope<'_>) -> Water {
        let total = scope.sum(&self.pools, self.all);
        let r = u128::from(residual);
        if total.span <= r {
            return Water::Full;
        }
        // Spans of the saturated demands so far; weights of the rest.
        let (mut s, mut rest) = (0u128, total.weight);
        for block in &self.blocks {
            let sum = scope.sum(&block.pools, block.all);
            if sum.weight == 0 {
                continue;
            }
            // U at this block's last level: everything in scope up to here saturated.
            let last = block.last();
            let lw = u128::from(last.weight);
            if (s + sum.span) * lw + u128::from(last.span) * (rest - sum.weight) < r * lw {
                s += sum.span;
                rest -= sum.weight;
                continue;
            }
            for item in block.items.iter().filter(|i| scope.holds(i)) {
                let w = u128::from(item.weight);
                if s * w + u128::from(item.span) * rest >= r * w {
                    break;
                }
                s += u128::from(item.span);
                rest -= w;
            }
            return if rest == 0 { Water::Full } else { Water::At { num: r - s, den: rest } };
        }
        Water::Full
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn item(pool: u32, span: u64, weight: u32, seq: u64) -> Item {
        Item { span, weight, pool, seq }
    }

    fn index(items: &[Item], npools: usize) -> LevelIndex {
        let mut index = LevelIndex::default();
        for _ in 0..npools {
            index.add_pool();
        }
        for i in items {
            index.insert(*i);
        }
        index
    }

    /// Shares at a level, summed.
    fn held(items: &[Item], water: Water) -> u128 {
        items.iter().map(|i| u128::from(water.share(i.span, i.weight))).sum()
    }

    #[test]
    fn the_seed_example_rounds_down() {
        // Capacity 50, minimum 1 and max 15 each: 46 above the minimums over
        // four equal demands is 11.5 each.
        let items: Vec<Item> = (0..4).map(|k| item(0, 14, 1, k)).collect();
        let water = index(&items, 1).solve(46, Scope::Pool(0));
        assert_eq!(water, Water::At { num: 46, den: 4 });
        assert_eq!(water.share(14, 1), 11);
    }

    #[test]
    fn weights_share_the_residual_and_caps_leave_the_rest() {
        let items = [item(0, 995, 1, 0), item(0, 995, 2, 1)];
        let water = index(&items, 1).solve(90, Scope::Pool(0));
        assert_eq!((water.share(995, 1), water.share(995, 2)), (30, 60));
        let items = [item(0, 10, 1, 0), item(0, 1000, 1, 1), item(0, 1000, 1, 2)];
        let water = index(&items, 1).solve(100, Scope::Pool(0));
        assert_eq!([10, 1000, 1000].map(|s| water.share(s, 1)), [10, 45, 45]);
    }

    #[test]
    fn a_closed_pool_is_left_out() {
        let items = [item(0, 1000, 1, 0), item(0, 1000, 1, 1), item(1, 1000, 1, 2)];
        let index = index(&items, 2);
        let water = index.solve(80, Scope::Open { closed: &[true, false] });
        assert_eq!(water.share(1000, 1), 80);
    }

    proptest! {
        /// Against the definition: the level found holds at most the
        /// residual, and one unit of level more would hold more than it.
        #[test]
        fn the_level_is_the_highest_that_fits(
            spans in proptest::collection::vec((0..3u32, 0..5_000u64, 1..5u32), 0..2_000),
            removed in proptest::collection::vec(any::<prop::sample::Index>(), 0..300),
            residual in 0..400_000u64,
            pool in 0..3usize,
        ) {
            let mut items: Vec<Item> =
                spans.iter().enumerate().map(|(k, (p, s, w))| item(*p, *s, *w, k as u64)).collect();
            let mut index = index(&items, 3);
            for r in removed {
                if items.is_empty() {
                    break;
                }
                let gone = items.swap_remove(r.index(items.len()));
                prop_assert!(index.remove(&gone));
                prop_assert!(!index.remove(&gone), "removed twice");
            }
            let closed = [pool == 0, false, pool == 2];
            for (scope, in_scope) in [
                (Scope::Pool(pool), items.iter().filter(|i| i.pool as usize == pool).copied().collect::<Vec<_>>()),
                (Scope::Open { closed: &closed }, items.iter().filter(|i| !closed[i.pool as usize]).copied().collect()),
            ] {
                let water = index.solve(residual, scope);
                let total: u128 = in_scope.iter().map(|i| u128::from(i.span)).sum();
                match water {
                    Water::Full => prop_assert!(total <= u128::from(residual)),
                    Water::At { num, den } => {
                        // The exact holdings at λ equal the residual; rounded down, at most it.
                        let exact: u128 = in_scope
                            .iter()
                            .map(|i| (u128::from(i.span) * den).min(u128::from(i.weight) * num))
                            .sum();
                        prop_assert_eq!(exact, u128::from(residual) * den);
                        let held = held(&in_scope, water);
                        prop_assert!(held <= u128::from(residual));
                        let below_max = in_scope.iter().filter(|i| water.share(i.span, i.weight) < i.span).count();
                        prop_assert!(u128::from(residual) - held <= below_max as u128, "idle beyond rounding");
                    }
                }
            }
        }
    }
}
