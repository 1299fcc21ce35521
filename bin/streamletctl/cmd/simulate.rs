//! `streamletctl simulate`: replays a trace through a pool's placement,
//! quota and scaling rules on a virtual clock, with no daemon, and prints
//! what each policy would have cost and missed.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Map, Value};
use streamlet_config::{Config, PoolConfig};
use streamlet_simulate::{
    self as simulate, format_duration, format_minute, format_span, parse_duration, Durations, Options, Outcome, Policy,
    SimulateError, Trace, Workload,
};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The trace: arrivals per minute (minute,arrivals,observed), LLM requests
    /// (TIMESTAMP,ContextTokens,GeneratedTokens) or streams (at_ms,duration_ms)
    #[arg(long, value_name = "FILE")]
    trace: PathBuf,
    /// The daemon's configuration to take the pool from [default: the embedded one]
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The pool to simulate [default: the configuration's only pool]
    #[arg(long, value_name = "POOL")]
    pool: Option<String>,
    /// reactive, lookahead, predictive, or all three on the same streams
    #[arg(long, value_name = "POLICY", default_value = "all")]
    policy: String,
    /// From a spawn to the streamlet being ready
    #[arg(long, value_name = "DURATION", default_value = "2ms", value_parser = parse_duration)]
    spawn_delay: u64,
    /// How long streams last: trace, fixed:DURATION or exp:MEAN [default: trace]
    #[arg(long, value_name = "SOURCE")]
    durations: Option<Durations>,
    /// An LLM request streams for this many milliseconds per generated token
    #[arg(long, value_name = "MS", default_value_t = 30)]
    ms_per_token: u64,
    /// Multiplies the arrivals (0.5 keeps about half, 3 makes three of each)
    #[arg(long, value_name = "K", default_value_t = 1.0)]
    scale: f64,
    /// Evaluate the trace's last stretch of this length (like 14d); what comes
    /// before trains the forecast [default: all of it, untrained]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    evaluate_last: Option<u64>,
    /// Of the minutes before the evaluated ones, play this many first without
    /// counting them, so each policy starts with the pool it would have had
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    warm_up: u64,
    /// How long an open waits for a starting streamlet before it is refused
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    wait: u64,
    /// Seeds every random choice: the same seed, the same numbers
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// Write the runs minute by minute as CSV
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Draw the runs as an SVG chart
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
}

pub fn run(args: &Args, json: bool) -> anyhow::Result<()> {
    let policies: Vec<Policy> = match args.policy.as_str() {
        "all" => Policy::ALL.to_vec(),
        one => match one.parse() {
            Ok(policy) => vec![policy],
            Err(_) => bail!("--policy {one:?}: give reactive, lookahead, predictive or all"),
        },
    };
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    let pool = choose_pool(&config, args.pool.as_deref())?;
    let trace = Trace::read(&args.trace)?;
    let options = Options {
        spawn_delay_ms: args.spawn_delay,
        wait_ms: args.wait,
        scale: args.scale,
        durations: args.durations.unwrap_or(Durations::Trace),
        ms_per_token: args.ms_per_token,
        evaluate_last_ms: args.evaluate_last,
        warm_up_ms: args.warm_up,
        seed: args.seed,
    };
    let workload = Workload::new(&trace, &options).map_err(|e| match e {
        SimulateError::NoDurations { trace } => anyhow!(
            "{trace} counts arrivals only, with no durations: give --durations exp:30s (or fixed:10s, or another mean)"
        ),
        other => other.into(),
    })?;
    let outcomes: Vec<Outcome> =
        policies.iter().map(|&p| simulate::run(pool, &config, p, &workload, &options)).collect();

    let conditions = conditions(pool, &config, &workload, &options);
    if let Some(path) = &args.csv {
        std::fs::write(path, simulate::csv(&outcomes)).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.svg {
        let title = format!(
            "{} ({}): streamlets, {} to {}",
            workload.trace,
            workload.kind,
            format_minute(workload.start_ms),
            format_minute(workload.end_ms)
        );
        std::fs::write(path, simulate::svg(&title, &conditions, &outcomes))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    super::print(json, || table(&workload, &conditions, &outcomes), || totals_json(&outcomes))
}

/// The named pool, or the only one.
fn choose_pool<'a>(config: &'a Config, name: Option<&str>) -> anyhow::Result<&'a PoolConfig> {
    let names = || config.pools.keys().cloned().collect::<Vec<_>>().join(", ");
    match name {
        Some(name) => match config.pools.get(name) {
            Some(pool) => Ok(pool),
            None => bail!("{}: no pool {name:?}; its pools: {}", config.source, names()),
        },
        None if config.pools.len() == 1 => Ok(config.pools.values().next().expect("one pool")),
        None => bail!("{} has several pools: choose one with --pool ({})", config.source, names()),
    }
}

/// The pool's rules and the run's conditions, in a line.
fn conditions(pool: &PoolConfig, config: &Config, workload: &Workload, options: &Options) -> String {
    let rules = pool.rules();
    let mut line = format!(
        "pool {} ({}): {} streams per streamlet, {} to {}, min_free {}, idle grace {}, lead {}, headroom {}",
        pool.name,
        config.source,
        rules.streams_per_worker,
        rules.min,
        rules.max,
        rules.min_free,
        format_duration(rules.idle_grace_ms),
        format_duration(pool.autoscale.lead.as_millis() as u64),
        rules.headroom,
    );
    let _ = write!(
        line,
        "; spawn delay {}, durations {}, scale {}, seed {}",
        format_duration(options.spawn_delay_ms),
        options.durations,
        options.scale,
        options.seed
    );
    if workload.start_ms > workload.warm_ms {
        let _ = write!(line, "; warmed up {}", format_span(workload.start_ms - workload.warm_ms));
    }
    if workload.training_minutes > 0 {
        let _ = write!(line, " after training on {}", format_span(workload.training_minutes * 60_000));
    }
    line
}

fn table(workload: &Workload, conditions: &str, outcomes: &[Outcome]) -> String {
    let mut out = format!(
        "{} ({}): {} streams from {} to {}\n{conditions}\n\n",
        workload.trace,
        workload.kind,
        workload.stream_count(),
        format_minute(workload.start_ms),
        format_minute(workload.end_ms),
    );
    let header = ["POLICY", "ADMITTED", "COLD_WAITS", "COLD_WAIT_S", "REJECTED", "WORKER_S", "PEAK_WORKERS"];
    let rows: Vec<[String; 7]> = outcomes
        .iter()
        .map(|o| {
            let t = &o.totals;
            [
                o.policy.to_string(),
                t.admitted.to_string(),
                t.cold_waits.to_string(),
                format!("{:.1}", t.cold_wait_seconds),
                t.rejected.to_string(),
                format!("{:.0}", t.worker_seconds),
                t.peak_workers.to_string(),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].len()).chain([header[i].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: &[&str]| -> String {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                let _ = write!(s, "{cell:<w$}");
            } else {
                let _ = write!(s, "  {cell:>w$}");
            }
        }
        s.trim_end().to_owned() + "\n"
    };
    out.push_str(&line(&header));
    for row in &rows {
        out.push_str(&line(&row.iter().map(String::as_str).collect::<Vec<_>>()));
    }
    // Rows alike because no policy could scale the pool: say why.
    if let Some(pinned) = simulate::pinned(outcomes) {
        let _ = write!(out, "\nnote: {pinned}\n");
    }
    out
}

/// `{"reactive": {"admitted": .., ..}, ..}`: the six totals per policy.
fn totals_json(outcomes: &[Outcome]) -> Value {
    let mut map = Map::new();
    for o in outcomes {
        let t = &o.totals;
        map.insert(
            o.policy.to_string(),
            json!({
                "admitted": t.admitted,
                "cold_waits": t.cold_waits,
                "cold_wait_seconds": t.cold_wait_seconds,
                "rejected": t.rejected,
                "worker_seconds": t.worker_seconds,
                "peak_workers": t.peak_workers,
            }),
        );
    }
    Value::Object(map)
}
