//! Small scenarios whose decisions and counters are worked out by hand, the
//! workload's arithmetic, and the writers.

use streamlet_autoscale::history::MISSING;
use streamlet_autoscale::Reason;

use super::*;
use streamlet_config::Config;

/// One pool `p` with these keys after its handler.
fn config(keys: &str) -> Config {
    Config::parse(&format!("[pools.p]\nhandler = {{ kind = \"echo\" }}\n{keys}"), "test.toml").unwrap()
}

fn streams(rows: &[(u64, u64)]) -> Trace {
    let text: String = rows.iter().map(|(at, d)| format!("{at},{d}\n")).collect();
    Trace::parse(&format!("at_ms,duration_ms\n{text}"), "streams.csv").unwrap()
}

fn play(config: &Config, policy: Policy, trace: &Trace, options: &Options) -> Outcome {
    let workload = Workload::new(trace, options).unwrap();
    run(&config.pools["p"], config, policy, &workload, options)
}

fn spawn(at_ms: u64, worker: u64, reason: Reason) -> Logged {
    Logged { at_ms, action: Action::Spawn { worker }, reason }
}

fn retire(at_ms: u64, worker: u64) -> Logged {
    Logged { at_ms, action: Action::Retire { worker }, reason: Reason::IdleGrace }
}

fn one_second() -> Options {
    Options { spawn_delay_ms: 1000, ..Options::default() }
}

#[test]
fn three_at_once_one_cold_wait_then_idle_streamlets_retire_on_the_tick() {
    // min 1, min_free 1, two streams per streamlet, spawns take a second.
    let config = config("workers = { min = 1, max = 3, min_free = 1 }\nstreams_per_worker = 2\n");
    let trace = streams(&[(0, 10_000), (0, 10_010), (0, 10_000)]);
    let outcome = play(&config, Policy::Reactive, &trace, &one_second());
    // t=0: w1 (min) is ready; the first stream takes w1's first slot and
    // min_free spawns w2; the second fills w1; the third waits for w2.
    // t=1s: w2 is ready and takes it (a one-second wait); min_free spawns w3.
    // w1 empties at 10.010s, w2 at 11s, w3 never had a stream (ready at 2s).
    // Idle grace 30s: w3 goes at 32s; w1 at 40.010s, on the tick at 40.050s;
    // w2 would go at 41s but is the last one (min 1).
    assert_eq!(
        outcome.decisions,
        [
            spawn(0, 1, Reason::Min),
            spawn(0, 2, Reason::MinFree),
            spawn(1000, 3, Reason::MinFree),
            retire(32_000, 3),
            retire(40_050, 1),
        ]
    );
    let t = outcome.totals;
    assert_eq!((t.admitted, t.cold_waits, t.rejected, t.peak_workers), (3, 1, 0, 3));
    assert_eq!(t.cold_wait_seconds, 1.0);
    // w1 0..40.05s, w2 0..60s (starting counts), w3 1..32s.
    assert_eq!(t.worker_seconds, 40.05 + 60.0 + 31.0);
    assert_eq!(outcome.minutes.len(), 1);
    let m = outcome.minutes[0];
    assert_eq!((m.arrivals, m.streams, m.needed, m.live), (3, 3, 2, 3));
}

#[test]
fn lookahead_spawns_before_the_last_slot_and_reactive_without_min_free_refuses() {
    let config = config("workers = { min = 1, max = 3 }\nstreams_per_worker = 2\n");
    let trace = streams(&[(0, 10_000), (0, 10_000), (500, 10_000)]);
    let reactive = play(&config, Policy::Reactive, &trace, &one_second());
    assert_eq!(reactive.decisions, [spawn(0, 1, Reason::Min)], "nothing asks for a second streamlet");
    let t = reactive.totals;
    assert_eq!((t.admitted, t.cold_waits, t.rejected), (2, 0, 1));

    // The first stream leaves w1 one slot: lookahead spawns w2 at once; the
    // third stream waits for it from 0.5s to 1s, which brings w2 within one
    // slot of full in turn.
    let lookahead = play(&config, Policy::Lookahead, &trace, &one_second());
    assert_eq!(
        lookahead.decisions[..3],
        [spawn(0, 1, Reason::Min), spawn(0, 2, Reason::Lookahead), spawn(1000, 3, Reason::Lookahead)]
    );
    let t = lookahead.totals;
    assert_eq!((t.admitted, t.cold_waits, t.rejected), (3, 1, 0));
    assert_eq!(t.cold_wait_seconds, 0.5);
}

#[test]
fn at_max_and_full_an_open_is_rejected() {
    let config = config("workers = { min = 1, max = 2 }\nstreams_per_worker = 1\n");
    let trace = streams(&[(0, 5000), (0, 5000), (2000, 5000), (2000, 5000)]);
    let outcome = play(&config, Policy::Lookahead, &trace, &one_second());
    // w1 takes the first; lookahead spawns w2, which the second waits for
    // (1s); at 2s both are busy, the pool is at max: both refused.
    let t = outcome.totals;
    assert_eq!((t.admitted, t.cold_waits, t.rejected, t.peak_workers), (2, 1, 2, 2));
    assert_eq!(t.cold_wait_seconds, 1.0);
}

#[test]
fn a_wait_longer_than_the_timeout_is_rejected() {
    let config = config("workers = { min = 1, max = 2 }\nstreams_per_worker = 1\n");
    let trace = streams(&[(0, 100_000), (0, 1000)]);
    let options = Options { spawn_delay_ms: 40_000, wait_ms: 30_000, ..Options::default() };
    let outcome = play(&config, Policy::Lookahead, &trace, &options);
    let t = outcome.totals;
    assert_eq!((t.admitted, t.cold_waits, t.rejected), (1, 0, 1));
    assert_eq!(t.worker_seconds, 120.0, "w1 and w2 (starting, then ready at 40s) for the whole minute");
}

#[test]
fn the_quota_and_the_tenant_limit_refuse_as_the_daemon_does() {
    // 8 Mbit/s for the host, 4 Mbit/s for each stream: two fit.
    let keys =
        "workers = { min = 3, max = 3 }\nstreams_per_worker = 1\ndefault_rate = { min = \"4Mbit\", max = \"4Mbit\" }\n";
    let quota = Config::parse(
        &format!("[capacity]\negress = \"8Mbit\"\n[pools.p]\nhandler = {{ kind = \"echo\" }}\n{keys}"),
        "quota.toml",
    )
    .unwrap();
    let trace = streams(&[(0, 5000), (0, 5000), (0, 5000), (6000, 5000)]);
    let t = play(&quota, Policy::Reactive, &trace, &Options::default()).totals;
    assert_eq!((t.admitted, t.rejected), (3, 1), "the third is refused; the fourth comes after two ended");
    let plain = play(&config(keys), Policy::Reactive, &trace, &Options::default()).totals;
    assert_eq!((plain.admitted, plain.rejected), (4, 0), "without a capacity nothing is managed");

    let limited = Config::parse(
        "[tenants.default]\nmax_streams = 1\n[pools.p]\nhandler = { kind = \"echo\" }\nworkers = { min = 3, max = 3 }\nstreams_per_worker = 1\n",
        "tenants.toml",
    )
    .unwrap();
    let t = play(&limited, Policy::Reactive, &trace, &Options::default()).totals;
    assert_eq!((t.admitted, t.rejected), (2, 2));
}

/// `minutes` of per-minute counts from 1995-07-01 00:00, `observed = 0`
/// where the count is `None`.
fn per_minute(counts: &[Option<u32>]) -> Trace {
    let mut text = String::from("minute,arrivals,observed\n");
    for (i, c) in counts.iter().enumerate() {
        let at = clock::format_iso(804_556_800_000 + i as u64 * clock::MINUTE_MS);
        text.push_str(&format!("{at},{},{}\n", c.unwrap_or(0), u8::from(c.is_some())));
    }
    Trace::parse(&text, "minutes.csv").unwrap()
}

#[test]
fn the_forecast_trained_before_the_window_spawns_ahead() {
    let config = config(
        "workers = { min = 1, max = 20 }\nstreams_per_worker = 2\nautoscale = { mode = \"predictive\", headroom = 0.2 }\n",
    );
    let trace = per_minute(&[Some(60); 30]);
    let options = Options {
        durations: Durations::Fixed(10_000),
        evaluate_last_ms: Some(5 * clock::MINUTE_MS),
        spawn_delay_ms: 2000,
        warm_up_ms: 0,
        ..Options::default()
    };
    let workload = Workload::new(&trace, &options).unwrap();
    assert_eq!(workload.training_minutes, 25);
    let pool = &config.pools["p"];
    let predictive = run(pool, &config, Policy::Predictive, &workload, &options);
    // 60 a minute for 10 s each: about 10 streams, 5 streamlets, 6 with 20%.
    let first = predictive.minutes[0].forecast.expect("a forecast from the first minute");
    assert!((5..=7).contains(&first), "{first}");
    let at_start = predictive.decisions.iter().filter(|d| d.at_ms == workload.start_ms).count();
    assert!((5..=first as usize).contains(&at_start), "the pool starts at the forecast: {:?}", predictive.decisions);
    assert!(predictive.decisions.iter().any(|d| d.reason == Reason::Forecast));
    let lookahead = run(pool, &config, Policy::Lookahead, &workload, &options);
    assert!(lookahead.decisions.iter().all(|d| d.reason != Reason::Forecast));
    let missed = |o: &Outcome| o.totals.cold_waits + o.totals.rejected;
    assert!(missed(&predictive) <= missed(&lookahead), "{:?} vs {:?}", predictive.totals, lookahead.totals);
}

#[test]
fn the_warm_up_is_played_but_not_counted() {
    let config = config("workers = { min = 1, max = 50 }\nstreams_per_worker = 4\n");
    // 40 streams of 30 s a minute: 20 open, five streamlets' worth.
    let trace = per_minute(&[Some(40); 30]);
    let cold = Options {
        durations: Durations::Fixed(30_000),
        evaluate_last_ms: Some(10 * clock::MINUTE_MS),
        spawn_delay_ms: 2000,
        warm_up_ms: 0,
        ..Options::default()
    };
    let warm = Options { warm_up_ms: 5 * clock::MINUTE_MS, ..cold.clone() };
    let w = Workload::new(&trace, &warm).unwrap();
    assert_eq!((w.training_minutes, w.start_ms - w.warm_ms), (15, 5 * clock::MINUTE_MS));
    assert_eq!((w.streams.len(), w.stream_count()), (15 * 40, 10 * 40), "the warm-up's streams are played");
    let warmed = play(&config, Policy::Lookahead, &trace, &warm);
    let t = warmed.totals;
    assert_eq!(t.admitted + t.rejected, 400, "only the window's streams count");
    assert!(warmed.decisions.iter().all(|d| d.at_ms >= w.start_ms));
    assert!(warmed.minutes[0].live >= 5, "the pool was grown in the warm-up: {:?}", warmed.minutes[0]);
    let from_empty = play(&config, Policy::Lookahead, &trace, &cold);
    assert_eq!(from_empty.decisions[0], spawn(w.start_ms, 1, Reason::Min), "without, the pool starts at min");
    assert!(
        from_empty.totals.cold_waits > t.cold_waits,
        "from one streamlet, lookahead catches up one spawn at a time: {:?} vs {:?}",
        from_empty.totals,
        t
    );
}

#[test]
fn unobserved_minutes_are_missing_in_history_and_empty_in_the_window() {
    let mut counts = vec![Some(10); 10];
    counts[2] = None;
    counts[7] = None;
    let trace = per_minute(&counts);
    let options = Options {
        durations: Durations::Fixed(1000),
        evaluate_last_ms: Some(5 * 60_000),
        warm_up_ms: 0,
        ..Options::default()
    };
    let w = Workload::new(&trace, &options).unwrap();
    assert_eq!(w.history, [10, 10, MISSING, 10, 10]);
    assert_eq!(w.mean_duration_ms, 1000.0);
    let demand = w.trained_demand();
    assert_eq!(demand.history().get(804_556_800_000 / clock::MINUTE_MS + 2), Some(MISSING));
    assert_eq!(demand.history().end_minute(), w.start_ms / clock::MINUTE_MS);
    let first_minute = 804_556_800_000 / clock::MINUTE_MS;
    assert_eq!(w.gaps, [(first_minute + 7, first_minute + 8)]);
    assert_eq!(w.stream_count(), 40);
    let config = config("workers = { min = 1, max = 4 }\nstreams_per_worker = 4\n");
    let outcome = run(&config.pools["p"], &config, Policy::Predictive, &w, &options);
    let arrivals: Vec<u32> = outcome.minutes.iter().map(|m| m.arrivals).collect();
    assert_eq!(arrivals, [10, 10, 0, 10, 10]);
    assert_eq!(outcome.totals.admitted + outcome.totals.rejected, 40);
}

#[test]
fn per_minute_arrivals_spread_within_their_minute_and_scale() {
    let trace = per_minute(&[Some(100); 10]);
    let options = Options { durations: Durations::Exponential(5000), scale: 2.0, ..Options::default() };
    let w = Workload::new(&trace, &options).unwrap();
    assert_eq!(w.stream_count(), 2000, "a whole scale is exact");
    for (i, m) in w.demand.iter().enumerate() {
        assert_eq!(m.arrivals, 200, "minute {i}");
    }
    let half = Workload::new(&trace, &Options { scale: 0.5, ..options.clone() }).unwrap();
    assert!((400..=600).contains(&half.stream_count()), "{}", half.stream_count());
    let mean = w.streams.iter().map(|s| s.duration_ms as f64).sum::<f64>() / 2000.0;
    assert!((4000.0..6000.0).contains(&mean), "exponential with a 5 s mean: {mean}");
}

#[test]
fn the_same_seed_plays_the_same_run_and_another_does_not() {
    let counts: Vec<Option<u32>> = (0..30).map(|i| Some(20 + (i * 7) % 30)).collect();
    let trace = per_minute(&counts);
    let config = config("workers = { min = 1, max = 10 }\nstreams_per_worker = 2\n");
    let options = Options { durations: Durations::Exponential(20_000), scale: 1.5, seed: 7, ..Options::default() };
    let a = play(&config, Policy::Lookahead, &trace, &options);
    let b = play(&config, Policy::Lookahead, &trace, &options);
    assert_eq!(a, b);
    let c = play(&config, Policy::Lookahead, &trace, &Options { seed: 8, ..options });
    assert_ne!(a.minutes, c.minutes);
}

#[test]
fn llm_requests_last_their_tokens_times_the_time_per_token() {
    let trace = Trace::parse(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.000,10,100\n2023-11-16 18:15:47.000,10,7\n",
        "llm.csv",
    )
    .unwrap();
    let w = Workload::new(&trace, &Options::default()).unwrap();
    let durations: Vec<u64> = w.streams.iter().map(|s| s.duration_ms).collect();
    assert_eq!(durations, [3000, 210]);
    let w = Workload::new(&trace, &Options { ms_per_token: 10, ..Options::default() }).unwrap();
    assert_eq!(w.streams[0].duration_ms, 1000);
}

#[test]
fn options_that_make_no_workload_say_why() {
    let trace = per_minute(&[Some(1); 10]);
    let e = Workload::new(&trace, &Options::default()).unwrap_err();
    assert!(matches!(e, SimulateError::NoDurations { .. }), "{e}");
    assert!(e.to_string().contains("exp:30s"), "{e}");
    let fixed = Options { durations: Durations::Fixed(1000), ..Options::default() };
    let e = Workload::new(&trace, &Options { evaluate_last_ms: Some(10 * 60_000), ..fixed.clone() }).unwrap_err();
    assert!(e.to_string().contains("spans 10m"), "{e}");
    let e = Workload::new(&trace, &Options { scale: 0.0, ..fixed.clone() }).unwrap_err();
    assert!(matches!(e, SimulateError::Scale(_)), "{e}");
    let e = Workload::new(&trace, &Options { evaluate_last_ms: Some(30_000), ..fixed }).unwrap_err();
    assert!(matches!(e, SimulateError::ShortWindow(_)), "{e}");
}

#[test]
fn durations_and_policies_parse() {
    assert_eq!("trace".parse(), Ok(Durations::Trace));
    assert_eq!("fixed:10s".parse(), Ok(Durations::Fixed(10_000)));
    assert_eq!("exp:30s".parse(), Ok(Durations::Exponential(30_000)));
    for bad in ["exp", "exp:", "exp:0s", "fixed:10", "gauss:1s", "trace:1"] {
        assert!(bad.parse::<Durations>().is_err(), "{bad}");
    }
    assert_eq!(Durations::Exponential(30_000).to_string(), "exp:30s");
    assert_eq!(parse_duration("14d"), Ok(14 * 86_400_000));
    assert_eq!(parse_duration("2ms"), Ok(2));
    assert!(parse_duration("2 s").is_err());
    assert!(parse_duration("s").is_err());
    assert_eq!("predictive".parse(), Ok(Policy::Predictive));
    assert!("all".parse::<Policy>().unwrap_err().to_string().contains("reactive, lookahead or predictive"));
}

fn three_policies() -> Vec<Outcome> {
    let counts: Vec<Option<u32>> = (0..120).map(|i| Some(10 + (i % 60))).collect();
    let trace = per_minute(&counts);
    let config = config("workers = { min = 1, max = 40 }\nstreams_per_worker = 4\nautoscale = { lead = \"90s\" }\n");
    let options =
        Options { durations: Durations::Exponential(30_000), evaluate_last_ms: Some(3_600_000), ..Options::default() };
    let workload = Workload::new(&trace, &options).unwrap();
    Policy::ALL.iter().map(|&p| run(&config.pools["p"], &config, p, &workload, &options)).collect()
}

#[test]
fn the_csv_has_a_row_per_minute_and_a_column_per_policy() {
    let outcomes = three_policies();
    let text = csv(&outcomes);
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    assert!(header.starts_with("time,arrivals,streams,needed,forecast,live_reactive,cold_waits_reactive,"), "{header}");
    assert!(header.ends_with(",live_predictive,cold_waits_predictive,rejected_predictive"), "{header}");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 60);
    assert!(rows[0].starts_with("1995-07-01T01:00:00,"), "{}", rows[0]);
    assert!(rows.iter().all(|r| r.split(',').count() == 14), "{rows:?}");
    let rejected: u64 = rows.iter().map(|r| r.split(',').nth(7).unwrap().parse::<u64>().unwrap()).sum();
    assert_eq!(rejected, outcomes[0].totals.rejected, "reactive's refusals, minute by minute");
    assert!(rows.iter().all(|r| !r.split(',').nth(4).unwrap().is_empty()), "a forecast every minute: {rows:?}");
}

#[test]
fn the_svg_is_balanced_and_draws_a_line_per_series() {
    let outcomes = three_policies();
    let text = svg("A <trace> & its title", "conditions", &outcomes);
    // Every element closes, in order.
    let mut open: Vec<&str> = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find('<') {
        let end = rest[start..].find('>').expect("every tag ends") + start;
        let tag = &rest[start + 1..end];
        let name = tag.trim_start_matches('/').split([' ', '\n']).next().unwrap();
        if let Some(closing) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(closing.trim()), "at {tag}");
        } else if !tag.ends_with('/') {
            open.push(name);
        }
        rest = &rest[end + 1..];
    }
    assert!(open.is_empty(), "{open:?}");
    assert!(text.contains("A &lt;trace&gt; &amp; its title"));
    // Demand, forecast and three policies, a point per minute (60 < 1500).
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("<polyline")).collect();
    assert_eq!(lines.len(), 5);
    for line in lines {
        let points = line.split("points=\"").nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(points.split(' ').count(), 60, "{line}");
    }
    for policy in Policy::ALL {
        assert!(text.contains(&format!("{policy}: ")), "a legend entry for {policy}");
    }
}

#[test]
fn a_long_run_is_cut_into_buckets_at_their_peak() {
    let mut outcome = three_policies().remove(0);
    outcome.minutes = (0..20_160u64)
        .map(|i| Minute { at_ms: i * 60_000, needed: u32::from(i == 5000) * 9, live: 3, ..Minute::default() })
        .collect();
    let text = svg("t", "s", &[outcome]);
    let demand = text.lines().find(|l| l.starts_with("<polyline")).unwrap();
    let points: Vec<&str> = demand.split("points=\"").nth(1).unwrap().split('"').next().unwrap().split(' ').collect();
    assert!(points.len() <= chart::POINTS, "{}", points.len());
    let ys: Vec<f64> = points.iter().map(|p| p.split(',').nth(1).unwrap().parse().unwrap()).collect();
    let floor = ys.iter().copied().fold(f64::MIN, f64::max);
    assert_eq!(
        ys.iter().filter(|y| **y < floor).count(),
        1,
        "the one-minute peak shows, in its bucket only: {points:?}"
    );
}

/// The three identical rows: a pool of min = max gives every policy
/// the same run, and so does a demand that keeps a pool at its max; a pool
/// with room and a demand below it is not pinned.
#[test]
fn runs_held_at_workers_max_are_called_pinned() {
    let all = |config: &Config, trace: &Trace| -> Vec<Outcome> {
        Policy::ALL.iter().map(|&p| play(config, p, trace, &one_second())).collect()
    };
    let fixed = config("workers = { min = 2, max = 2 }\n");
    let few = streams(&[(0, 5_000), (1_000, 5_000)]);
    let runs = all(&fixed, &few);
    assert_eq!(pinned(&runs), Some(Pinned::Fixed { workers: 2 }));
    let note = pinned(&runs).unwrap().to_string();
    assert!(note.contains("workers.max (2)") && note.contains("benches/autoscale/*.toml"), "{note}");
    let svg = svg("title", "conditions", &runs);
    assert!(svg.contains("Note: every policy ran the pool at workers.max (2)"), "the chart says why");
    assert!(svg.contains("2 streamlet-minutes"), "two streamlets for the minute, not 0 streamlet-hours");

    let roomy = config("workers = { min = 1, max = 4 }\nstreams_per_worker = 2\n");
    assert_eq!(pinned(&all(&roomy, &few)), None, "one or two of four: room to differ");
    assert!(!svg_of(&all(&roomy, &few)).contains("Note:"));
    let flood: Vec<(u64, u64)> = (0..40).map(|i| (i * 100, 120_000)).collect();
    let small = config("workers = { min = 2, max = 3, min_free = 1 }\nstreams_per_worker = 1\n");
    let crowded = all(&small, &streams(&flood));
    assert!(crowded.iter().all(|o| o.minutes.iter().all(|m| m.live == 3)), "{:?}", crowded[0].minutes);
    assert_eq!(pinned(&crowded), Some(Pinned::AtMax { max: 3 }));
    assert!(pinned(&crowded).unwrap().to_string().contains("raise workers.max"));
    assert_eq!(pinned(&[]), None);
}

fn svg_of(outcomes: &[Outcome]) -> String {
    svg("title", "conditions", outcomes)
}
