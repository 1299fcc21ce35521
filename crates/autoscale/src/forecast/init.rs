//! A model's starting state: the level and the profiles from bucket means
//! of the start of the history.

use super::{interpolate, observation, Model, Params, Seasons, DAILY_BUCKET, DAY, WEEK, WEEKLY_BUCKET};

/// Observed (not missing) minutes in `history`.
pub(super) fn observed(history: &[u32]) -> u64 {
    history.iter().filter(|&&n| observation(n).is_some()).count() as u64
}

/// The model before it has run over `history`: the level is the mean of the
/// first two weeks (one week, or all of it, when there is less); the daily
/// profile the mean per daily bucket of what the level leaves, the weekly
/// profile the mean per weekly bucket of what the level and the daily
/// profile leave. Both profiles are centred on zero; a bucket with no
/// observation starts at zero.
pub(super) fn initial(history: &[u32], first_minute: u64, seasons: Seasons, params: Params) -> Model {
    let window = match seasons {
        Seasons::DailyWeekly => 2 * WEEK,
        _ => WEEK,
    };
    let start = &history[..history.len().min(window as usize)];
    let points = || {
        start
            .iter()
            .enumerate()
            .filter_map(move |(i, &n)| Some((first_minute.saturating_add(i as u64), observation(n)?)))
    };
    let (sum, count) = points().fold((0.0, 0u64), |(s, c), (_, y)| (s + y, c + 1));
    let level = if count == 0 { 0.0 } else { sum / count as f64 };
    let mut daily = Vec::new();
    let mut weekly = Vec::new();
    if seasons >= Seasons::Daily {
        daily = bucket_means(points().map(|(t, y)| (t % DAY, y - level)), DAY, DAILY_BUCKET);
    }
    if seasons >= Seasons::DailyWeekly {
        let rest = points().map(|(t, y)| (t % WEEK, y - level - interpolate(&daily, DAILY_BUCKET, t % DAY)));
        weekly = bucket_means(rest, WEEK, WEEKLY_BUCKET);
    }
    Model {
        params,
        seasons,
        level,
        trend: 0.0,
        daily,
        weekly,
        residual: 0.0,
        next: first_minute,
        mean_error: 0.0,
        mean_abs_error: 0.0,
        observed: 0,
    }
}

/// The mean per bucket of `(offset in period, value)` points, centred.
fn bucket_means(points: impl Iterator<Item = (u64, f64)>, period: u64, bucket: u64) -> Vec<f64> {
    let len = (period / bucket) as usize;
    let mut sums = vec![(0.0, 0u32); len];
    for (offset, y) in points {
        let s = &mut sums[(offset / bucket) as usize];
        s.0 += y;
        s.1 += 1;
    }
    let mut means: Vec<f64> = sums.iter().map(|&(s, c)| if c == 0 { 0.0 } else { s / f64::from(c) }).collect();
    let seen = sums.iter().filter(|s| s.1 > 0).count();
    if seen > 0 {
        let centre = means.iter().sum::<f64>() / seen as f64;
        for (m, s) in means.iter_mut().zip(&sums) {
            if s.1 > 0 {
                *m -= centre;
            }
        }
    }
    means
}
