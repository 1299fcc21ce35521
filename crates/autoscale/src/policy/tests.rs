//! One test (at least) per rule.

use super::*;

fn rules() -> Rules {
    Rules {
        min: 1,
        max: 10,
        min_free: 0,
        streams_per_worker: 4,
        lookahead: false,
        idle_grace_ms: 30_000,
        mode: Mode::Reactive,
        headroom: 0.2,
    }
}

fn busy(id: u64, streams: u32) -> WorkerLoad {
    WorkerLoad { id, streams, started_ms: id, idle_since_ms: None }
}

fn idle(id: u64, since: u64) -> WorkerLoad {
    WorkerLoad { id, streams: 0, started_ms: id, idle_since_ms: Some(since) }
}

fn decide(scaler: &Scaler, now_ms: u64, workers: &[WorkerLoad], starting: u32) -> Decision {
    scaler.decide(&Snapshot { now_ms, workers, starting, replacing: 0 })
}

#[test]
fn min_is_filled_and_counts_what_is_starting() {
    let s = Scaler::new(Rules { min: 3, ..rules() });
    let d = decide(&s, 0, &[], 0);
    assert_eq!(d.spawn, vec![Reason::Min; 3]);
    assert_eq!(d.desired, 3);
    let d = decide(&s, 0, &[busy(1, 4)], 1);
    assert_eq!(d.spawn, vec![Reason::Min], "one ready and one starting: one more");
}

#[test]
fn min_free_keeps_empty_streamlets_ready() {
    let s = Scaler::new(Rules { min_free: 2, ..rules() });
    let d = decide(&s, 0, &[busy(1, 1), idle(2, 0)], 0);
    assert_eq!(d.spawn, vec![Reason::MinFree], "one empty of the two wanted");
    let d = decide(&s, 0, &[busy(1, 1), idle(2, 0)], 1);
    assert!(d.spawn.is_empty(), "a starting streamlet is empty: {d:?}");
}

#[test]
fn lookahead_spawns_when_no_streamlet_has_two_free_slots() {
    let s = Scaler::new(Rules { lookahead: true, ..rules() });
    assert!(decide(&s, 0, &[busy(1, 2)], 0).spawn.is_empty(), "two free slots left");
    let d = decide(&s, 0, &[busy(1, 3)], 0);
    assert_eq!(d.spawn, vec![Reason::Lookahead], "reached streams_per_worker - 1");
    // A balanced pool near full spawns one, not one per streamlet.
    let d = decide(&s, 0, &[busy(1, 3), busy(2, 3), busy(3, 4)], 0);
    assert_eq!(d.spawn, vec![Reason::Lookahead]);
    assert!(decide(&s, 0, &[busy(1, 3)], 1).spawn.is_empty(), "one is already on its way");
    assert!(decide(&s, 0, &[busy(1, 3), busy(2, 1)], 0).spawn.is_empty(), "another has room");
    // Without the rule nothing happens until min_free or min asks.
    let plain = Scaler::new(rules());
    assert!(decide(&plain, 0, &[busy(1, 4)], 0).spawn.is_empty());
}

#[test]
fn lookahead_with_one_stream_per_streamlet_wants_one_empty() {
    let s = Scaler::new(Rules { lookahead: true, streams_per_worker: 1, ..rules() });
    assert_eq!(decide(&s, 0, &[busy(1, 1)], 0).spawn, vec![Reason::Lookahead]);
    assert!(decide(&s, 0, &[busy(1, 1), idle(2, 0)], 0).spawn.is_empty(), "no spawn loop");
}

#[test]
fn max_caps_every_rule() {
    let s = Scaler::new(Rules { min: 2, max: 3, min_free: 5, lookahead: true, ..rules() });
    let d = decide(&s, 0, &[], 0);
    assert_eq!(d.spawn, vec![Reason::Min, Reason::Min, Reason::MinFree]);
    assert_eq!(d.desired, 3);
    assert!(decide(&s, 0, &[busy(1, 4), busy(2, 4), busy(3, 4)], 0).spawn.is_empty());
}

#[test]
fn idle_grace_retires_only_after_the_grace() {
    let s = Scaler::new(rules());
    let workers = [busy(1, 2), idle(2, 1_000)];
    assert!(decide(&s, 30_999, &workers, 0).retire.is_empty(), "grace not over");
    let d = decide(&s, 31_000, &workers, 0);
    assert_eq!(d.retire, vec![(2, Reason::IdleGrace)]);
    assert_eq!(d.desired, 1);
}

#[test]
fn scale_in_never_goes_below_min_nor_takes_a_busy_streamlet() {
    let s = Scaler::new(Rules { min: 2, ..rules() });
    let workers = [idle(1, 0), idle(2, 0), idle(3, 0)];
    let d = decide(&s, 60_000, &workers, 0);
    assert_eq!(d.retire.len(), 1, "three idle, min two: {d:?}");
    let workers = [busy(1, 1), busy(2, 1), busy(3, 1)];
    assert!(decide(&s, 60_000, &workers, 0).retire.is_empty(), "busy streamlets stay");
}

#[test]
fn scale_in_keeps_min_free_and_lookahead() {
    let s = Scaler::new(Rules { min_free: 1, ..rules() });
    let d = decide(&s, 60_000, &[busy(1, 1), idle(2, 0), idle(3, 0)], 0);
    assert_eq!(d.retire.len(), 1, "one empty stays for min_free: {d:?}");
    let s = Scaler::new(Rules { lookahead: true, ..rules() });
    let d = decide(&s, 60_000, &[busy(1, 3), idle(2, 0)], 0);
    assert!(d.retire.is_empty(), "the only streamlet with room stays: {d:?}");
}

#[test]
fn scale_in_picks_the_oldest_idle_streamlet() {
    let s = Scaler::new(rules());
    let old = WorkerLoad { id: 9, streams: 0, started_ms: 5, idle_since_ms: Some(100) };
    let young = WorkerLoad { id: 4, streams: 0, started_ms: 50, idle_since_ms: Some(0) };
    let d = decide(&s, 60_000, &[busy(1, 1), young, old], 0);
    assert_eq!(d.retire, vec![(9, Reason::IdleGrace), (4, Reason::IdleGrace)]);
    let s = Scaler::new(Rules { min: 2, ..rules() });
    let d = decide(&s, 60_000, &[busy(1, 1), young, old], 0);
    assert_eq!(d.retire, vec![(9, Reason::IdleGrace)], "the older goes first");
}

#[test]
fn failed_spawns_back_off_and_double() {
    let mut s = Scaler::new(Rules { min: 2, ..rules() });
    s.spawn_failed(1_000);
    let d = decide(&s, 1_050, &[], 0);
    assert!(d.spawn.is_empty());
    assert_eq!(d.backoff_until_ms, Some(1_000 + FIRST_BACKOFF_MS));
    assert_eq!(decide(&s, 1_100, &[], 0).spawn.len(), 2, "the pause is over");
    s.spawn_failed(1_100);
    assert!(decide(&s, 1_299, &[], 0).spawn.is_empty(), "twice as long after a second failure");
    assert_eq!(decide(&s, 1_300, &[], 0).spawn.len(), 2);
    for _ in 0..30 {
        s.spawn_failed(0);
    }
    assert_eq!(decide(&s, 0, &[], 0).backoff_until_ms, Some(MAX_BACKOFF_MS));
    s.spawn_succeeded();
    assert_eq!(decide(&s, 0, &[], 0).spawn.len(), 2);
}

#[test]
fn forecast_raises_the_pool_ahead_of_demand() {
    let mut s = Scaler::new(Rules { mode: Mode::Predictive, max: 64, ..rules() });
    // 30 streams expected, 4 per streamlet, 20% headroom: ceil(9.0) = 9.
    s.set_prediction(Some(30.0));
    let d = decide(&s, 0, &[busy(1, 1)], 0);
    assert_eq!(d.forecast, Some(9));
    assert_eq!(d.spawn, vec![Reason::Forecast; 8]);
    assert_eq!(d.desired, 9);
}

#[test]
fn forecast_formula_rounds_up_and_stays_in_bounds() {
    let r = Rules { min: 2, max: 20, headroom: 0.25, ..rules() };
    assert_eq!(r.forecast_workers(0.0), 2, "min");
    assert_eq!(r.forecast_workers(16.0), 5, "16/4*1.25 = 5 exactly");
    assert_eq!(r.forecast_workers(16.1), 6);
    assert_eq!(r.forecast_workers(1e9), 20, "max");
    assert_eq!(r.forecast_workers(f64::NAN), 2);
}

#[test]
fn forecast_never_removes_what_reactive_rules_want() {
    let mut s = Scaler::new(Rules { mode: Mode::Predictive, min_free: 1, lookahead: true, ..rules() });
    s.set_prediction(Some(0.0));
    // Everything is busy; the forecast says nothing is coming.
    let d = decide(&s, 0, &[busy(1, 3), busy(2, 4)], 0);
    assert_eq!(d.spawn, vec![Reason::MinFree], "reactive rules still spawn");
    // And the forecast keeps idle streamlets it predicts a need for.
    s.set_prediction(Some(12.0));
    let workers = [busy(1, 1), idle(2, 0), idle(3, 0), idle(4, 0)];
    let d = decide(&s, 60_000, &workers, 0);
    assert_eq!(d.forecast, Some(4));
    assert!(d.retire.is_empty(), "{d:?}");
}

#[test]
fn forecast_only_reports_without_acting() {
    let mut s = Scaler::new(Rules { mode: Mode::ForecastOnly, max: 64, ..rules() });
    s.set_prediction(Some(30.0));
    let d = decide(&s, 0, &[busy(1, 1)], 0);
    assert!(d.spawn.is_empty());
    assert_eq!((d.forecast, d.would_spawn, d.desired), (Some(9), 8, 1));
    // Nor does it hold idle streamlets.
    let d = decide(&s, 60_000, &[busy(1, 1), idle(2, 0)], 0);
    assert_eq!(d.retire.len(), 1);
}

#[test]
fn reactive_mode_ignores_a_prediction() {
    let mut s = Scaler::new(rules());
    s.set_prediction(Some(1000.0));
    let d = decide(&s, 0, &[busy(1, 1)], 0);
    assert_eq!((d.forecast, d.spawn.len()), (None, 0));
}

#[test]
fn a_streamlet_being_replaced_counts_toward_min_and_max_but_offers_no_room() {
    let s = Scaler::new(Rules { min: 2, max: 2, lookahead: true, ..rules() });
    let replacing = |workers: &[WorkerLoad], now_ms| s.decide(&Snapshot { now_ms, workers, starting: 0, replacing: 1 });
    // One drains (its slot will be filled again): min needs nothing more.
    assert!(replacing(&[busy(1, 1)], 0).spawn.is_empty(), "min 2 holds with the one to come back");
    // And the only streamlet with room is never retired for it.
    let s = Scaler::new(Rules { lookahead: true, idle_grace_ms: 1_000, ..rules() });
    let d = s.decide(&Snapshot { now_ms: 60_000, workers: &[idle(2, 0)], starting: 0, replacing: 1 });
    assert!(d.retire.is_empty(), "the draining one is no room: {d:?}");
}

#[test]
fn modes_are_read_by_the_names_as_str_gives() {
    use serde::de::IntoDeserializer;
    use serde::Deserialize;
    for mode in [Mode::Reactive, Mode::Predictive, Mode::ForecastOnly] {
        let read = Mode::deserialize(mode.as_str().into_deserializer());
        assert_eq!(read, Ok::<_, serde::de::value::Error>(mode));
    }
    let wrong = Mode::deserialize("psychic".into_deserializer()).map_err(|e: serde::de::value::Error| e.to_string());
    assert_eq!(
        wrong,
        Err("unknown variant `psychic`, expected one of `reactive`, `predictive`, `forecast-only`".into())
    );
}
