use super::*;
use crate::history::MISSING;

/// A small deterministic noise source (xorshift).
struct Noise(u64);

impl Noise {
    /// Uniform in `[-1, 1)`.
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
}

/// Arrivals expected at `minute`: a daily wave around 40 a minute, 15 fewer
/// on two days of the week.
fn expected(minute: u64) -> f64 {
    let day = (minute % DAY) as f64 / DAY as f64;
    let weekend = (minute % WEEK) / DAY >= 5;
    40.0 + 20.0 * (std::f64::consts::TAU * day).sin() - if weekend { 15.0 } else { 0.0 }
}

fn series(first: u64, len: u64, seed: u64) -> Vec<u32> {
    let mut noise = Noise(seed);
    (first..first + len).map(|t| (expected(t) + 4.0 * noise.next()).round().max(0.0) as u32).collect()
}

/// Mean absolute error of the model's forecasts of `minutes` against the
/// expected arrivals.
fn mae(model: &Model, minutes: std::ops::Range<u64>) -> f64 {
    let n = minutes.end - minutes.start;
    minutes.map(|t| (model.forecast(t) - expected(t)).abs()).sum::<f64>() / n as f64
}

const START: u64 = 29_000_000; // some Sunday in 2025, for no reason

#[test]
fn seasons_follow_the_observed_history() {
    assert_eq!(Seasons::for_observed(DAY - 1), Seasons::None);
    assert_eq!(Seasons::for_observed(DAY), Seasons::Daily);
    assert_eq!(Seasons::for_observed(WEEK), Seasons::DailyWeekly);
    let mut h = series(START, DAY + 100, 1);
    assert_eq!(Model::fit(&h, START).seasons(), Seasons::Daily);
    h[..200].fill(MISSING);
    assert_eq!(Model::fit(&h, START).seasons(), Seasons::None);
}

#[test]
fn a_double_seasonal_series_is_learned() {
    let len = 3 * WEEK;
    let model = Model::fit(&series(START, len, 7), START);
    assert_eq!(model.seasons(), Seasons::DailyWeekly);
    assert_eq!(model.next_minute(), START + len);
    // A week ahead, every weekday and the weekend: within 2.5 a minute of a
    // series that swings from 5 to 60 with noise of up to 4.
    let err = mae(&model, START + len..START + len + WEEK);
    assert!(err < 2.5, "mae {err:.2}");
    // A flat forecast at the mean would be off by about 15.
    let flat = Model::fit_with(&series(START, len, 7), START, Seasons::None, Params::SHORT);
    assert!(mae(&flat, START + len..START + len + WEEK) > 10.0);
}

#[test]
fn the_search_beats_its_starting_point() {
    let h = series(START, 2 * WEEK, 3);
    let chosen = Model::fit(&h, START).params();
    let start = search::one_step_mae(&h, START, Seasons::DailyWeekly, Params::SEASONAL);
    let found = search::one_step_mae(&h, START, Seasons::DailyWeekly, chosen);
    assert!(found <= start, "{found} > {start}");
    assert_ne!(chosen, Params::SEASONAL);
}

#[test]
fn missing_minutes_do_not_corrupt_the_model() {
    let len = 3 * WEEK;
    let whole = series(START, len, 11);
    let mut holed = whole.clone();
    // Two days down in the second week, and scattered minutes.
    holed[(WEEK + DAY) as usize..(WEEK + 3 * DAY) as usize].fill(MISSING);
    for i in (0..len as usize).step_by(37) {
        holed[i] = MISSING;
    }
    let params = Model::fit(&whole, START).params();
    let a = Model::fit_with(&whole, START, Seasons::DailyWeekly, params);
    let b = Model::fit_with(&holed, START, Seasons::DailyWeekly, params);
    let next_week = START + len..START + len + WEEK;
    let (ea, eb) = (mae(&a, next_week.clone()), mae(&b, next_week.clone()));
    assert!(eb < ea + 0.5, "with holes {eb:.2}, without {ea:.2}");

    // The same hole read as zero demand would drag the profiles down.
    let mut zeroed = holed.clone();
    zeroed.iter_mut().filter(|n| **n == MISSING).for_each(|n| *n = 0);
    let c = Model::fit_with(&zeroed, START, Seasons::DailyWeekly, params);
    assert!(mae(&c, next_week) > eb + 0.5);
}

#[test]
fn a_missing_minute_teaches_nothing() {
    let h = series(START, 2 * WEEK, 5);
    let mut model = Model::fit(&h, START);
    let before = model.clone();
    let end = START + 2 * WEEK;
    for t in end..end + 600 {
        model.update(t, None);
    }
    assert_eq!(model.daily, before.daily);
    assert_eq!(model.weekly, before.weekly);
    assert_eq!(model.observed(), before.observed());
    // Skipping in one go is the same as minute by minute.
    let mut skipped = before.clone();
    skipped.skip_to(end + 600);
    assert_eq!(skipped.next_minute(), model.next_minute());
    assert!((skipped.forecast(end + 700) - model.forecast(end + 700)).abs() < 1e-9);
    // NaN and negative counts are missing too; an old minute is ignored.
    let mut odd = skipped.clone();
    odd.update(end + 600, Some(f64::NAN));
    odd.update(end + 601, Some(-5.0));
    odd.update(end, Some(1e9));
    assert_eq!(odd.daily, before.daily);
    assert_eq!(odd.next_minute(), end + 602);
}

#[test]
fn a_short_history_gives_a_level() {
    let h: Vec<u32> = series(START, 360, 9).iter().map(|&n| n % 5 + 20).collect();
    let model = Model::fit(&h, START);
    assert_eq!(model.seasons(), Seasons::None);
    assert_eq!(model.params(), Params::SHORT);
    let end = START + 360;
    for ahead in [0, 1, 5, 60, 600] {
        let f = model.forecast(end + ahead);
        assert!((f - 22.0).abs() < 3.0, "{ahead} minutes ahead: {f}");
    }
    assert!(Model::fit(&[], START).forecast(START) == 0.0);
    assert!(Model::fit(&[MISSING; 10], START).observed() == 0);
}

#[test]
fn a_step_change_is_followed() {
    // A seasonal model trained on two quiet weeks, then demand triples.
    let h = series(START, 2 * WEEK, 13);
    let mut model = Model::fit(&h, START);
    let end = START + 2 * WEEK;
    for t in end..end + 60 {
        model.update(t, Some(3.0 * expected(t)));
    }
    let t = end + 60;
    let (f, want) = (model.forecast(t), 3.0 * expected(t));
    assert!((f - want).abs() < 0.2 * want, "after an hour: {f:.1}, demand {want:.1}");

    // The short-history model follows within minutes.
    let mut short = Model::fit(&[10; 300], START);
    for t in START + 300..START + 320 {
        short.update(t, Some(40.0));
    }
    let f = short.forecast(START + 320);
    assert!((f - 40.0).abs() < 4.0, "after 20 minutes: {f:.1}");
}

#[test]
fn forecasts_are_never_negative() {
    // A sharp drop to nothing pulls the level and the trend below zero.
    let mut h = vec![100u32; 600];
    h.extend([0; 30]);
    let model = Model::fit(&h, START);
    assert!(model.level + model.trend < 0.0 || model.residual < 0.0);
    for ahead in 0..2000 {
        assert!(model.forecast(START + 630 + ahead) >= 0.0);
    }
}

#[test]
fn buckets_wrap_around_the_period() {
    // Minute 0 sits between the last bucket's centre and the first's.
    let (j0, j1, f) = around(96, DAILY_BUCKET, 0);
    assert_eq!((j0, j1), (95, 0));
    assert!((f - (0.5 + 0.5 / 15.0)).abs() < 1e-12);
    let (j0, j1, f) = around(96, DAILY_BUCKET, 7);
    assert_eq!((j0, j1), (0, 1));
    assert!(f.abs() < 1e-12);
    let mut profile = vec![0.0; 96];
    spread(&mut profile, DAILY_BUCKET, DAY - 1, 1.0);
    assert!((profile.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert!(profile[95] > 0.0 && profile[0] > 0.0);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Any counts, any holes: forecasts are finite and not negative.
    #[test]
    fn any_history_forecasts_sanely(
        counts in proptest::collection::vec(proptest::prop_oneof![0u32..1000, proptest::strategy::Just(MISSING), proptest::strategy::Just(u32::MAX - 1)], 0..3000),
        first in 0u64..1u64 << 40,
        ahead in 0u64..100_000,
    ) {
        let model = Model::fit(&counts, first);
        let end = first + counts.len() as u64;
        for t in [first, end, end + ahead] {
            let f = model.forecast(t);
            proptest::prop_assert!(f.is_finite() && f >= 0.0, "{f}");
        }
    }
}
