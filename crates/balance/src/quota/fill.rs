//! Weighted max-min fair sharing (water-filling) over two nested levels.
//!
//! Every demand first gets its `min` (the caller guarantees the minimums fit).
//! The residual above the minimums is shared by one water level `λ` for the
//! host: a demand of weight `w` gets `min(max - min, w·λ)` on top of its
//! minimum. A pool whose residual runs out first stops at its own level
//! `λp < λ`, and the rest of the host's residual keeps rising for the other
//! pools. The result is work-conserving: either every demand is at its max,
//! or the host is full, or the demand's pool is full.
//!
//! The levels are found with one sort of the demands by the level at which
//! each saturates, then a sweep: O(n log n).
//!
//! Rounding to whole bytes per second: each share is rounded down, then the
//! bytes left over go one at a time to the demands with the largest fractional
//! part, ties to the oldest (smallest `seq`), as long as the demand is below its
//! max and its pool and the host have room. Capacity 50 shared by four equal
//! demands of max 15 gives 13, 13, 12, 12 in admission order.

/// One holder's demand on the allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Demand {
    /// Index of the pool in the allocator's pool table.
    pub pool: usize,
    pub min: u64,
    pub max: u64,
    pub weight: u32,
    /// Admission order: ties in rounding go to the smallest.
    pub seq: u64,
}

impl AsRef<Demand> for Demand {
    fn as_ref(&self) -> &Demand {
        self
    }
}

impl Demand {
    fn span(&self) -> u64 {
        self.max - self.min
    }

    /// The water level at which this demand reaches its max.
    fn level(&self) -> f64 {
        self.span() as f64 / f64::from(self.weight)
    }
}

/// Allocations for `demands`, in the same order. `pools[p]` is pool `p`'s
/// capacity (`None`: only the host limits it).
pub(crate) fn water_fill<D: AsRef<Demand>>(host: u64, pools: &[Option<u64>], demands: &[D]) -> Vec<u64> {
    let d = |i: usize| demands[i].as_ref();
    let n = demands.len();
    let np = pools.len();

    let mut pool_min = vec![0u64; np];
    let mut pool_span = vec![0u64; np];
    let (mut host_min, mut host_span) = (0u64, 0u64);
    for x in demands.iter().map(AsRef::as_ref) {
        pool_min[x.pool] = pool_min[x.pool].saturating_add(x.min);
        pool_span[x.pool] = pool_span[x.pool].saturating_add(x.span());
        host_min = host_min.saturating_add(x.min);
        host_span = host_span.saturating_add(x.span());
    }
    let pool_res: Vec<u64> =
        pools.iter().zip(&pool_min).map(|(c, m)| c.map_or(u64::MAX, |c| c.saturating_sub(*m))).collect();
    let host_res = host.saturating_sub(host_min);
    let pool_fits: Vec<bool> = (0..np).map(|p| pool_span[p] <= pool_res[p]).collect();
    if host_span <= host_res && pool_fits.iter().all(|f| *f) {
        return (0..n).map(|i| d(i).max).collect();
    }

    let mut order: Vec<usize> = (0..n).filter(|&i| d(i).span() > 0).collect();
    order.sort_unstable_by(|&a, &b| d(a).level().total_cmp(&d(b).level()));

    // Each pool on its own: the level at which its residual runs out.
    let mut pool_level = vec![f64::INFINITY; np];
    let mut pool_weight = vec![0f64; np];
    for &i in &order {
        pool_weight[d(i).pool] += f64::from(d(i).weight);
    }
    let mut fixed = vec![0f64; np];
    let mut active = pool_weight.clone();
    let mut done = pool_fits.clone();
    for &i in &order {
        let x = d(i);
        let p = x.pool;
        if done[p] {
            continue;
        }
        let res = pool_res[p] as f64;
        if fixed[p] + x.level() * active[p] >= res {
            pool_level[p] = (res - fixed[p]) / active[p];
            done[p] = true;
            continue;
        }
        fixed[p] += x.span() as f64;
        active[p] -= f64::from(x.weight);
    }

    // The host: sweep stream and pool saturation events in level order.
    let mut pool_events: Vec<usize> = (0..np).filter(|&p| pool_level[p].is_finite()).collect();
    pool_events.sort_unstable_by(|&a, &b| pool_level[a].total_cmp(&pool_level[b]));
    let mut host_level = f64::INFINITY;
    if host_span > host_res {
        let res = host_res as f64;
        let mut fixed = 0f64;
        let mut active_w: f64 = pool_weight.iter().sum();
        let mut active_p = pool_weight;
        let mut closed = vec![false; np];
        let (mut si, mut pi) = (0, 0);
        loop {
            let stream_next = order.get(si).map(|&i| d(i).level());
            let pool_next = pool_events.get(pi).map(|&p| pool_level[p]);
            let (level, is_pool) = match (stream_next, pool_next) {
                (None, None) => break,
                (Some(s), Some(p)) if p < s => (p, true),
                (Some(s), _) => (s, false),
                (None, Some(p)) => (p, true),
            };
            if is_pool {
                let p = pool_events[pi];
                pi += 1;
                if fixed + level * active_w >= res {
                    host_level = (res - fixed) / active_w;
                    break;
                }
                fixed += level * active_p[p];
                active_w -= active_p[p];
                active_p[p] = 0.0;
                closed[p] = true;
            } else {
                let x = d(order[si]);
                si += 1;
                if closed[x.pool] {
                    continue;
                }
                if fixed + level * active_w >= res {
                    host_level = (res - fixed) / active_w;
                    break;
                }
                fixed += x.span() as f64;
                active_w -= f64::from(x.weight);
                active_p[x.pool] -= f64::from(x.weight);
            }
        }
    }

    let exact: Vec<f64> = (0..n)
        .map(|i| {
            let x = d(i);
            let level = host_level.min(pool_level[x.pool]);
            x.min as f64 + (x.span() as f64).min(f64::from(x.weight) * level)
        })
        .collect();
    round(host, pools, demands, &exact)
}

/// Whole bytes per second from the exact shares; see the module docs.
fn round<D: AsRef<Demand>>(host: u64, pools: &[Option<u64>], demands: &[D], exact: &[f64]) -> Vec<u64> {
    let d = |i: usize| demands[i].as_ref();
    let n = demands.len();
    let mut alloc: Vec<u64> = (0..n).map(|i| (exact[i].floor() as u64).clamp(d(i).min, d(i).max)).collect();
    let frac = |i: usize| exact[i] - exact[i].floor();

    let mut pool_sum = vec![0u64; pools.len()];
    let mut host_sum = 0u64;
    for i in 0..n {
        pool_sum[d(i).pool] = pool_sum[d(i).pool].saturating_add(alloc[i]);
        host_sum = host_sum.saturating_add(alloc[i]);
    }

    // Float error can leave a level a few bytes over: take them back from the
    // shares with the smallest fractional part, never below a minimum.
    let over = |pool_sum: &[u64], host_sum: u64| {
        host_sum > host || pools.iter().zip(pool_sum).any(|(c, s)| c.is_some_and(|c| *s > c))
    };
    if over(&pool_sum, host_sum) {
        let mut by_frac: Vec<usize> = (0..n).collect();
        by_frac.sort_unstable_by(|&a, &b| frac(a).total_cmp(&frac(b)).then(d(b).seq.cmp(&d(a).seq)));
        while over(&pool_sum, host_sum) {
            let mut progress = false;
            for &i in &by_frac {
                let p = d(i).pool;
                let pool_over = pools[p].is_some_and(|c| pool_sum[p] > c);
                if alloc[i] > d(i).min && (pool_over || host_sum > host) {
                    alloc[i] -= 1;
                    pool_sum[p] -= 1;
                    host_sum -= 1;
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
    }

    // Hand out what is left, largest fractional part first.
    let mut host_room = host.saturating_sub(host_sum);
    if host_room == 0 {
        return alloc;
    }
    let mut pool_room: Vec<u64> =
        pools.iter().zip(&pool_sum).map(|(c, s)| c.map_or(u64::MAX, |c| c.saturating_sub(*s))).collect();
    let mut wanting: Vec<usize> = (0..n).filter(|&i| alloc[i] < d(i).max && pool_room[d(i).pool] > 0).collect();
    let by_frac_desc = |a: &usize, b: &usize| frac(*b).total_cmp(&frac(*a)).then(d(*a).seq.cmp(&d(*b).seq));
    // Usually only the first `host_room` of them get a byte: sort just those.
    if let Ok(k) = usize::try_from(host_room) {
        if k < wanting.len() {
            wanting.select_nth_unstable_by(k, by_frac_desc);
            wanting[..k].sort_unstable_by(by_frac_desc);
            wanting[k..].sort_unstable_by(by_frac_desc);
        } else {
            wanting.sort_unstable_by(by_frac_desc);
        }
    }
    loop {
        let mut progress = false;
        for &i in &wanting {
            let p = d(i).pool;
            if host_room == 0 {
                return alloc;
            }
            if alloc[i] < d(i).max && pool_room[p] > 0 {
                alloc[i] += 1;
                host_room -= 1;
                pool_room[p] -= 1;
                progress = true;
            }
        }
        if !progress {
            return alloc;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn demand(pool: usize, min: u64, max: u64, weight: u32, seq: u64) -> Demand {
        Demand { pool, min, max, weight, seq }
    }

    #[test]
    fn everything_fits_gives_every_max() {
        let ds = [demand(0, 1, 10, 1, 0), demand(0, 1, 20, 1, 1)];
        assert_eq!(water_fill(100, &[None], &ds), vec![10, 20]);
    }

    #[test]
    fn the_seed_example() {
        let d = |seq| demand(0, 1, 15, 1, seq);
        assert_eq!(water_fill(50, &[None], &[d(0)]), vec![15]);
        assert_eq!(water_fill(50, &[None], &[d(0), d(1)]), vec![15, 15]);
        assert_eq!(water_fill(50, &[None], &[d(0), d(1), d(2), d(3)]), vec![13, 13, 12, 12]);
    }

    #[test]
    fn weights_share_the_residual() {
        // Residual 90 after the minimums, weights 1 and 2.
        let ds = [demand(0, 5, 1000, 1, 0), demand(0, 5, 1000, 2, 1)];
        assert_eq!(water_fill(100, &[None], &ds), vec![35, 65]);
    }

    #[test]
    fn a_capped_stream_leaves_the_rest_to_others() {
        let ds = [demand(0, 0, 10, 1, 0), demand(0, 0, 1000, 1, 1), demand(0, 0, 1000, 1, 2)];
        assert_eq!(water_fill(100, &[None], &ds), vec![10, 45, 45]);
    }

    #[test]
    fn a_full_pool_leaves_the_rest_to_other_pools() {
        let ds = [demand(0, 0, 1000, 1, 0), demand(0, 0, 1000, 1, 1), demand(1, 0, 1000, 1, 2)];
        assert_eq!(water_fill(100, &[Some(20), None], &ds), vec![10, 10, 80]);
    }
}
