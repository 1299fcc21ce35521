use super::*;
use crate::forecast::{Seasons, WEEK};
use crate::history::MISSING;

const M: u64 = MINUTE_MS;

/// Two weeks of a daily wave between 10 and 50 arrivals a minute.
fn wave(first: u64, len: u64) -> Vec<u32> {
    (first..first + len)
        .map(|t| (30.0 + 20.0 * (std::f64::consts::TAU * (t % DAY) as f64 / DAY as f64).sin()).round() as u32)
        .collect()
}

#[test]
fn ticks_close_minutes_and_a_jump_closes_quiet_ones() {
    let mut d = Demand::new(PoolHistory::default());
    assert!(!d.tick(100 * M));
    d.arrival(100 * M + 5);
    d.arrival(100 * M + 59_999);
    assert!(!d.tick(100 * M + 59_999));
    d.arrival(101 * M);
    assert!(d.history().arrivals.iter().eq(&[2]));
    assert!(d.tick(105 * M + 1));
    assert_eq!(d.history().first_minute, 100);
    assert!(d.history().arrivals.iter().eq(&[2, 1, 0, 0, 0]));
    assert_eq!(d.model().next_minute(), 105);
    assert_eq!(d.model().observed(), 5);
    // Time going backwards closes nothing, and its arrivals count now.
    assert!(!d.tick(90 * M));
    d.arrival(90 * M);
    d.tick(106 * M);
    assert_eq!(d.history().get(105), Some(1));
}

#[test]
fn a_restart_leaves_the_downtime_missing() {
    let mut h = PoolHistory::from_series(1000, &[5; 300]);
    h.mean_duration_ms = 30_000.0;
    h.durations = 10;
    let d = Demand::resume(h.clone(), 1310 * M + 7);
    assert_eq!(d.history().end_minute(), 1310);
    assert!(d.history().arrivals.iter().skip(300).all(|&n| n == MISSING));
    assert_eq!(d.model().next_minute(), 1310);
    let rate = d.predicted_arrivals(1310 * M, 0).unwrap();
    assert!((rate - 5.0).abs() < 0.5, "{rate}");

    // `new` then a first tick later: the same.
    let mut d = Demand::new(h);
    d.tick(1310 * M);
    assert_eq!(d.history().end_minute(), 1310);
    assert_eq!(d.history().get(1309), Some(MISSING));
    d.tick(1311 * M);
    assert_eq!(d.history().get(1310), Some(0));
}

#[test]
fn nothing_to_go_on_is_no_prediction() {
    let mut d = Demand::new(PoolHistory::default());
    assert_eq!(d.predicted_arrivals(0, M), None);
    d.tick(10 * M);
    d.arrival(10 * M);
    assert_eq!(d.predicted_arrivals(10 * M, M), None);
    d.tick(11 * M);
    assert!(d.predicted_arrivals(11 * M, M).is_some());
    // No stream has ended: no concurrency.
    assert_eq!(d.predicted_concurrency(11 * M, M), None);
    d.ended(30_000);
    let rate = d.predicted_arrivals(11 * M, M).unwrap();
    assert_eq!(d.predicted_concurrency(11 * M, M), Some(rate / 2.0));
}

#[test]
fn the_prediction_is_the_largest_minute_of_the_lead() {
    let first = 20_000_000;
    let len = 2 * WEEK;
    let d = Demand::from_series(first, &wave(first, len), 120_000.0);
    assert_eq!(d.model().seasons(), Seasons::DailyWeekly);
    assert_eq!(d.history().durations, DURATION_WINDOW);
    let mut d = d;
    d.tick((first + len) * M);
    let model = d.model().clone();
    let now = first + len;
    let by_hand = |from: u64, to: u64| (from..=to).map(|t| model.forecast(t)).fold(0.0, f64::max);
    for lead in [0, 1, 5, 59, 60, 61, 180, 600] {
        let got = d.predicted_arrivals(now * M, lead * M).unwrap();
        assert!((got - by_hand(now, now + lead)).abs() < 1e-9, "lead {lead}: {got}");
    }
    // Asked ahead of the tick, without the cache.
    let later = now + 30;
    let got = d.predicted_arrivals(later * M, 90 * M).unwrap();
    assert!((got - by_hand(later, later + 90)).abs() < 1e-9);
    // The peak of the wave is 50; a day's lead finds it.
    let day = d.predicted_arrivals(now * M, 2 * DAY * M).unwrap();
    assert!((day - 50.0).abs() < 3.0, "{day}");
    let concurrency = d.predicted_concurrency(now * M, DAY * M).unwrap();
    assert!((concurrency - 2.0 * d.predicted_arrivals(now * M, DAY * M).unwrap()).abs() < 1e-9);
}

#[test]
fn the_current_minute_counts_what_has_arrived() {
    let first = 20_000_000;
    let mut d = Demand::from_series(first, &[20; 600], 1000.0);
    let now = (first + 600) * M;
    d.tick(now);
    let forecast = d.predicted_arrivals(now, 0).unwrap();
    assert!((forecast - 20.0).abs() < 1.0);
    // Half a minute gone and nothing arrived: half the forecast is left.
    let quiet = d.predicted_arrivals(now + 30_000, 0).unwrap();
    assert!((quiet - forecast / 2.0).abs() < 1e-9, "{quiet}");
    // A burst in the first second: the burst plus the rest of the minute.
    for _ in 0..100 {
        d.arrival(now + 1000);
    }
    let burst = d.predicted_arrivals(now + 1000, 5 * M).unwrap();
    assert!((burst - (100.0 + forecast * 59.0 / 60.0)).abs() < 1e-9, "{burst}");
}

#[test]
fn growing_history_brings_in_the_daily_season() {
    let first = 20_000_000;
    let mut d = Demand::from_series(first, &wave(first, DAY - 60), 1000.0);
    assert_eq!(d.model().seasons(), Seasons::None);
    let mut t = first + DAY - 60;
    d.tick(t * M);
    while d.model().seasons() == Seasons::None && t < first + 3 * DAY {
        t += 1;
        for _ in 0..wave(t - 1, 1)[0] {
            d.arrival((t - 1) * M);
        }
        d.tick(t * M);
        d.refit_now();
    }
    assert_eq!(d.model().seasons(), Seasons::Daily);
    // Checked once per day of history: at a day and a day after it.
    assert!(t <= first + 2 * DAY, "refit at minute {}", t - first);
    assert_eq!(d.model().next_minute(), t);
}

#[test]
fn a_refit_fitted_elsewhere_catches_up_with_the_minutes_since() {
    let first = 20_000_000;
    let mut d = Demand::from_series(first, &wave(first, DAY - 60), 1000.0);
    let mut t = first + DAY - 60;
    d.tick(t * M);
    let mut job = None;
    while job.is_none() && t < first + 3 * DAY {
        t += 1;
        for _ in 0..wave(t - 1, 1)[0] {
            d.arrival((t - 1) * M);
        }
        d.tick(t * M);
        job = d.refit_job();
    }
    let job = job.expect("a refit falls due within two days");
    assert_eq!(d.model().seasons(), Seasons::None, "nothing changes until the new model is installed");
    // Ten more minutes go by while the job runs.
    for _ in 0..10 {
        t += 1;
        for _ in 0..wave(t - 1, 1)[0] {
            d.arrival((t - 1) * M);
        }
        d.tick(t * M);
    }
    d.install(job.fit());
    assert_eq!(d.model().seasons(), Seasons::Daily);
    assert_eq!(d.model().next_minute(), t, "the minutes since the copy were replayed");
    assert!(d.refit_job().is_none(), "one job per refit");
}

#[derive(Debug, Clone)]
enum Op {
    Arrival(u64),
    Tick(u64),
    Ended(u64),
    Predict(u64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    // Steps forward of up to two hours, sometimes a week, sometimes back.
    let step = prop_oneof![0u64..2 * 3600 * 1000, Just(WEEK * M), Just(0)];
    prop_oneof![
        step.clone().prop_map(Op::Arrival),
        step.prop_map(Op::Tick),
        (0u64..600_000).prop_map(Op::Ended),
        (0u64..2 * DAY * M).prop_map(Op::Predict),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(32))]

    /// Whatever the clock does, nothing panics, the history stays whole and
    /// the predictions are finite and not negative.
    #[test]
    fn any_sequence_keeps_demand_sane(
        start in 0u64..1u64 << 45,
        ops in proptest::collection::vec(op(), 1..200),
        back in 0u64..3,
    ) {
        let mut d = Demand::from_series(start / M, &wave(start / M, 3 * DAY), 5000.0);
        let mut now = start + 3 * DAY * M;
        for (i, op) in ops.into_iter().enumerate() {
            match op {
                Op::Arrival(dt) => { now += dt; d.arrival(now - (i as u64 % 4 == back) as u64 * 90_000) }
                Op::Tick(dt) => { now += dt; d.tick(now); }
                Op::Ended(ms) => d.ended(ms),
                Op::Predict(lead) => {
                    for p in [d.predicted_arrivals(now, lead), d.predicted_concurrency(now, lead)] {
                        let p = p.unwrap();
                        proptest::prop_assert!(p.is_finite() && p >= 0.0, "{p}");
                    }
                }
            }
            let h = d.history();
            proptest::prop_assert!(h.arrivals.len() <= crate::history::MINUTES_KEPT);
            proptest::prop_assert_eq!(d.model().next_minute(), h.end_minute());
        }
    }
}
