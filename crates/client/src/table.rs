//! Listings for people (aligned plain-text tables) and for programs (JSON:
//! arrays of objects, or one object), shared by `streamletctl` and the
//! daemon's demo.
//!
//! The text is safe to print on a terminal: every field is escaped where it
//! is laid out ([`streamlet_proto::escape::escape`]: each cell of a table,
//! each value of a detail line, each event line whole), so a tenant, a label
//! or a reason holds no control character and no line break of its own.
//! The JSON values hold the fields as they are; print them through
//! [`streamlet_proto::escape::escape_json`], which JSON's own escaping
//! (C0 only) leaves necessary for DEL and C1.
//!
//! ```
//! use streamlet_client::proto::{StreamId, StreamInfo, WorkerId};
//! use streamlet_client::table::streams_table;
//!
//! let stream = StreamInfo {
//!     id: StreamId(12),
//!     pool: "echo".into(),
//!     tenant: "default".into(),
//!     worker: WorkerId(2),
//!     age_ms: 252_000,
//!     bytes_in: 1229,
//!     bytes_out: 1229,
//!     rate: Some(1_000_000),
//!     priority: 0,
//!     sending: Some(125_000),
//!     stalled_ms: 0,
//! };
//! assert_eq!(
//!     streams_table(&[stream]),
//!     "ID  POOL  TENANT   WORKER    AGE  BYTES_IN  BYTES_OUT      RATE   SENDING  STALLED\n\
//!      12  echo  default       2  4m12s   1.2 KiB    1.2 KiB  8 Mbit/s  1 Mbit/s      0ms\n",
//! );
//! ```

mod events;
mod grid;
pub mod human;
mod json;

use streamlet_proto::escape::escape;
use streamlet_proto::{StatusReport, StreamInfo, WorkerInfo, WorkerState};

pub use self::events::{event_line, reload_summary};
use self::grid::{Align, Grid};
pub use self::json::{pools_json, quota_json, status_json, streams_json, worker_json, workers_json};

/// POOL ID PID STATE STREAMS UPTIME SLOT RESTARTS, then CPU THROTTLED MEM
/// PEAK PIDS OOM when the daemon has cgroups, and SLOT LAST EXIT when a
/// streamlet replaced another. UPTIME is the process's own; the SLOT columns
/// are the history of its place in the pool, which a replacement (or a spare
/// that took the place) inherits: the streamlets that held it before. A spare
/// holds no slot yet: `-`.
pub fn workers_table(workers: &[WorkerInfo]) -> String {
    let with_last_exit = workers.iter().any(|w| w.last_exit.is_some());
    let with_usage = workers.iter().any(|w| w.usage.is_some());
    let with_labels = workers.iter().any(|w| !w.labels.is_empty());
    let mut columns = vec![
        ("POOL", Align::Left),
        ("ID", Align::Right),
        ("PID", Align::Right),
        ("STATE", Align::Left),
        ("STREAMS", Align::Right),
        ("UPTIME", Align::Right),
        ("SLOT RESTARTS", Align::Right),
    ];
    if with_usage {
        columns.extend([
            ("CPU", Align::Right),
            ("THROTTLED", Align::Right),
            ("MEM", Align::Right),
            ("PEAK", Align::Right),
            ("PIDS", Align::Right),
            ("OOM", Align::Right),
        ]);
    }
    if with_labels {
        columns.push(("LABELS", Align::Left));
    }
    if with_last_exit {
        columns.push(("SLOT LAST EXIT", Align::Left));
    }
    let mut grid = Grid::new(&columns);
    for w in workers {
        let spare = w.state == WorkerState::Spare;
        let mut row = vec![
            w.pool.clone(),
            w.id.to_string(),
            w.pid.to_string(),
            w.state.as_str().to_owned(),
            format!("{}/{}", w.streams, w.capacity),
            human::duration_ms(w.uptime_ms),
            if spare { "-".to_owned() } else { w.restarts.to_string() },
        ];
        if with_usage {
            match &w.usage {
                Some(u) => row.extend([
                    human::duration_ms(u.cpu_usage_us / 1000),
                    human::duration_ms(u.cpu_throttled_us / 1000),
                    human::bytes(u.memory_current),
                    human::bytes(u.memory_peak),
                    u.pids.to_string(),
                    u.oom_kills.to_string(),
                ]),
                None => row.extend(std::iter::repeat_n("-".to_owned(), 6)),
            }
        }
        if with_labels {
            let labels: Vec<String> = w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            row.push(if labels.is_empty() { "-".to_owned() } else { labels.join(",") });
        }
        if with_last_exit {
            row.push(w.last_exit.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string));
        }
        grid.row(row);
    }
    grid.render("(no streamlets)")
}

/// ID POOL TENANT WORKER AGE BYTES_IN BYTES_OUT RATE SENDING STALLED: RATE is the allocated
/// rate (`-` without quota), SENDING how fast it sent lately, STALLED how long its writes waited
/// for its rate.
pub fn streams_table(streams: &[StreamInfo]) -> String {
    let mut grid = Grid::new(&[
        ("ID", Align::Right),
        ("POOL", Align::Left),
        ("TENANT", Align::Left),
        ("WORKER", Align::Right),
        ("AGE", Align::Right),
        ("BYTES_IN", Align::Right),
        ("BYTES_OUT", Align::Right),
        ("RATE", Align::Right),
        ("SENDING", Align::Right),
        ("STALLED", Align::Right),
    ]);
    for s in streams {
        grid.row(vec![
            s.id.to_string(),
            s.pool.clone(),
            s.tenant.clone(),
            s.worker.to_string(),
            human::duration_ms(s.age_ms),
            human::bytes(s.bytes_in),
            human::bytes(s.bytes_out),
            s.rate.map_or_else(|| "-".to_owned(), streamlet_proto::units::format_rate),
            s.sending.map_or_else(|| "-".to_owned(), streamlet_proto::units::format_rate),
            human::duration_ms(s.stalled_ms),
        ]);
    }
    grid.render("(no streams)")
}

/// LEVEL NAME CAPACITY RESERVED ALLOCATED FREE STREAMS RATED LEASES
/// MAX_STREAMS: the host, each pool, each tenant with streams or leases or a
/// `[tenants.NAME]` entry; rates in bits per second. STREAMS counts every
/// open stream at the level, RATED those of them under the quota (with an
/// allocated rate); a line under the table says so.
pub fn quota_table(report: &streamlet_proto::QuotaReport) -> String {
    let mut grid = Grid::new(&[
        ("LEVEL", Align::Left),
        ("NAME", Align::Left),
        ("CAPACITY", Align::Right),
        ("RESERVED", Align::Right),
        ("ALLOCATED", Align::Right),
        ("FREE", Align::Right),
        ("STREAMS", Align::Right),
        ("RATED", Align::Right),
        ("LEASES", Align::Right),
        ("MAX_STREAMS", Align::Right),
    ]);
    let rate = streamlet_proto::units::format_rate;
    for l in &report.lines {
        grid.row(vec![
            l.level.clone(),
            l.name.clone(),
            l.capacity.map_or_else(|| "-".to_owned(), rate),
            rate(l.reserved),
            rate(l.allocated),
            l.free.map_or_else(|| "-".to_owned(), rate),
            l.open_streams.to_string(),
            l.rated_streams.to_string(),
            l.leases.to_string(),
            l.max_streams.map_or_else(|| "-".to_owned(), |m| m.to_string()),
        ]);
    }
    let mut text = grid.render("(no quota)");
    text.push_str("STREAMS: open streams; RATED: those of them under the quota, with an allocated rate\n");
    text
}

/// One streamlet: its listing's fields one per line, its streams, then its
/// slot's deaths, newest first. `uptime` is the process's own; the `slot`
/// lines are the history of its place in the pool (see [`workers_table`]).
pub fn worker_detail(detail: &streamlet_proto::WorkerDetail) -> String {
    let w = &detail.info;
    let mut out = String::new();
    let mut line = |k: &str, v: String| out.push_str(&format!("{k:<14} {}\n", escape(&v)));
    line("streamlet", w.id.to_string());
    line("pool", w.pool.clone());
    line("pid", w.pid.to_string());
    line("state", w.state.as_str().to_owned());
    line("streams", format!("{}/{}", w.streams, w.capacity));
    line("uptime", human::duration_ms(w.uptime_ms));
    if w.state == WorkerState::Spare {
        line("slot", "none yet: a spare takes the slot of the pool's next streamlet to die".to_owned());
    } else {
        line("slot restarts", format!("{} (streamlets that held this slot before it)", w.restarts));
    }
    if let Some(exit) = &w.last_exit {
        line("slot last exit", exit.to_string());
    }
    if !w.labels.is_empty() {
        line("labels", w.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","));
    }
    if let Some(u) = &w.usage {
        line(
            "cpu",
            format!(
                "{} (throttled {})",
                human::duration_ms(u.cpu_usage_us / 1000),
                human::duration_ms(u.cpu_throttled_us / 1000)
            ),
        );
        line("memory", format!("{} (peak {})", human::bytes(u.memory_current), human::bytes(u.memory_peak)));
        line("pids", u.pids.to_string());
        line("oom kills", u.oom_kills.to_string());
    }
    if !detail.streams.is_empty() {
        line("stream ids", detail.streams.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "));
    }
    if detail.deaths.is_empty() {
        out.push_str("\nno deaths in this slot\n");
        return out;
    }
    let mut grid = Grid::new(&[
        ("AGO", Align::Right),
        ("STREAMLET", Align::Right),
        ("RAN", Align::Right),
        ("STREAMS", Align::Right),
        ("CAUSE", Align::Left),
    ]);
    for d in &detail.deaths {
        grid.row(vec![
            human::duration_ms(d.ago_ms),
            d.worker.to_string(),
            human::duration_ms(d.uptime_ms),
            d.streams.to_string(),
            d.cause.to_string(),
        ]);
    }
    out.push_str(&format!("\nlast deaths in this slot, newest first\n{}", grid.render("")));
    out
}

/// A line about the daemon, then POOL HANDLER PLACEMENT WORKERS READY STREAMS
/// CAPACITY, STATE when a pool is degraded, ERRORS when one has errors and
/// LISTEN when one accepts its clients itself.
pub fn status_table(status: &StatusReport) -> String {
    let any_degraded = status.pools.iter().any(|p| p.degraded_for_ms.is_some());
    let mut columns = vec![
        ("POOL", Align::Left),
        ("HANDLER", Align::Left),
        ("PLACEMENT", Align::Left),
        ("WORKERS", Align::Right),
        ("READY", Align::Right),
        ("STREAMS", Align::Right),
        ("CAPACITY", Align::Right),
    ];
    if any_degraded {
        columns.push(("STATE", Align::Left));
    }
    let any_errors = status.pools.iter().any(|p| !p.errors.is_empty());
    if any_errors {
        columns.push(("ERRORS", Align::Left));
    }
    let any_listening = status.pools.iter().any(|p| !p.listening.is_empty());
    if any_listening {
        columns.push(("LISTEN", Align::Left));
    }
    let mut grid = Grid::new(&columns);
    for p in &status.pools {
        let mut row = vec![
            p.name.clone(),
            p.handler.clone(),
            p.placement.clone(),
            p.workers.to_string(),
            p.ready.to_string(),
            p.streams.to_string(),
            p.capacity.to_string(),
        ];
        if any_degraded {
            row.push(match p.degraded_for_ms {
                Some(ms) => format!("degraded: crash loop, restarts paused {} more", human::duration_ms(ms)),
                None => "ok".to_owned(),
            });
        }
        if any_errors {
            let errors: Vec<String> = p.errors.iter().map(|(k, v)| format!("{k}={v}")).collect();
            row.push(if errors.is_empty() { "-".to_owned() } else { errors.join(",") });
        }
        if any_listening {
            row.push(if p.listening.is_empty() { "-".to_owned() } else { p.listening.join(",") });
        }
        grid.row(row);
    }
    let daemon = format!(
        "streamletd {}, pid {}, up {}, socket {}",
        status.version,
        status.pid,
        human::duration_ms(status.uptime_ms),
        status.socket
    );
    format!("{}\n{}", escape(&daemon), grid.render("(no pools)"))
}

/// POOL AUTOSCALE MIN MAX CURRENT READY DESIRED FORECAST STREAMS: how each
/// pool's size compares with what the autoscaler and the forecast want.
/// FORECAST is `-` where the pool has none (reactive, or nothing learnt
/// yet), else the streamlets it asks for and the streams it expects.
pub fn pools_table(status: &StatusReport) -> String {
    let mut grid = Grid::new(&[
        ("POOL", Align::Left),
        ("AUTOSCALE", Align::Left),
        ("MIN", Align::Right),
        ("MAX", Align::Right),
        ("CURRENT", Align::Right),
        ("READY", Align::Right),
        ("DESIRED", Align::Right),
        ("FORECAST", Align::Right),
        ("STREAMS", Align::Right),
    ]);
    for p in &status.pools {
        let forecast = match (p.forecast, p.predicted_streams) {
            (Some(workers), Some(streams)) => format!("{workers} ({streams} streams)"),
            (Some(workers), None) => workers.to_string(),
            _ => "-".to_owned(),
        };
        grid.row(vec![
            p.name.clone(),
            p.autoscale.clone(),
            p.min.to_string(),
            p.max.to_string(),
            p.slots.to_string(),
            p.ready.to_string(),
            p.desired.to_string(),
            forecast,
            p.streams.to_string(),
        ]);
    }
    grid.render("(no pools)")
}

#[cfg(test)]
pub(crate) mod tests {
    use streamlet_proto::{ExitCause, PoolStatus, WorkerId};

    use super::*;

    pub fn worker(id: u64, pool: &str, last_exit: Option<ExitCause>) -> WorkerInfo {
        WorkerInfo {
            id: WorkerId(id),
            pool: pool.to_owned(),
            pid: 4000 + id as u32,
            state: WorkerState::Ready,
            streams: 3,
            capacity: 8,
            uptime_ms: 252_000,
            restarts: 0,
            last_exit,
            usage: None,
            labels: Default::default(),
        }
    }

    pub fn status() -> StatusReport {
        StatusReport {
            version: "0.1.0".into(),
            pid: 99,
            uptime_ms: 7_380_000,
            socket: "/run/streamlet/streamletd.sock".into(),
            pools: vec![PoolStatus {
                name: "echo".into(),
                handler: "echo".into(),
                placement: "least_loaded".into(),
                workers: 2,
                ready: 2,
                streams: 3,
                capacity: 16,
                degraded_for_ms: None,
                spares: 0,
                slots: 2,
                errors: Default::default(),
                min: 1,
                max: 8,
                desired: 3,
                forecast: None,
                predicted_streams: None,
                autoscale: "reactive".into(),
                listening: Vec::new(),
            }],
        }
    }

    #[test]
    fn workers_table_lines_up_and_shows_load_as_a_fraction() {
        let table = workers_table(&[worker(1, "echo", None), worker(12, "uppercase", None)]);
        assert_eq!(
            table,
            "POOL       ID   PID  STATE  STREAMS  UPTIME  SLOT RESTARTS\n\
             echo        1  4001  ready      3/8   4m12s              0\n\
             uppercase  12  4012  ready      3/8   4m12s              0\n"
        );
    }

    #[test]
    fn workers_table_shows_labels_only_when_a_streamlet_has_some() {
        let mut eu = worker(1, "video", None);
        eu.labels = [("region".to_owned(), "eu-west".to_owned()), ("zone".to_owned(), "a".to_owned())].into();
        let table = workers_table(&[eu, worker(2, "video", None)]);
        let mut lines = table.lines();
        assert!(lines.next().unwrap().ends_with("SLOT RESTARTS  LABELS"), "{table}");
        assert!(lines.next().unwrap().ends_with("  region=eu-west,zone=a"), "{table}");
        assert!(lines.next().unwrap().ends_with("  -"), "{table}");
        assert!(!workers_table(&[worker(1, "echo", None)]).contains("LABELS"));
    }

    #[test]
    fn workers_table_adds_last_exit_only_when_there_is_one() {
        let killed = ExitCause::Signaled { signal: 9, core_dumped: false };
        let table = workers_table(&[worker(1, "echo", Some(killed)), worker(2, "echo", None)]);
        let mut lines = table.lines();
        assert!(lines.next().unwrap().ends_with("SLOT RESTARTS  SLOT LAST EXIT"), "{table}");
        assert!(lines.next().unwrap().ends_with("  signal SIGKILL"), "{table}");
        assert!(lines.next().unwrap().ends_with("  -"), "{table}");
    }

    /// A spare that took a dead streamlet's slot: its own uptime, and the
    /// slot's history under the slot's name.
    #[test]
    fn the_history_shows_as_the_slots_and_a_spare_has_none() {
        let mut promoted = worker(3, "echo", Some(ExitCause::KilledByOperator));
        promoted.uptime_ms = 121_000;
        promoted.restarts = 1;
        let mut spare = worker(4, "echo", None);
        spare.state = WorkerState::Spare;
        let table = workers_table(&[promoted.clone(), spare.clone()]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("UPTIME  SLOT RESTARTS  SLOT LAST EXIT"), "{table}");
        assert!(lines[1].ends_with("2m01s              1  killed by operator"), "{table}");
        assert!(lines[2].ends_with("4m12s              -  -"), "{table}");
        let detail = |info| worker_detail(&streamlet_proto::WorkerDetail { info, streams: vec![], deaths: vec![] });
        let text = detail(promoted);
        assert!(text.contains("\nuptime         2m01s\n"), "{text}");
        assert!(text.contains("\nslot restarts  1 (streamlets that held this slot before it)\n"), "{text}");
        assert!(text.contains("\nslot last exit killed by operator\n"), "{text}");
        let text = detail(spare);
        assert!(text.contains("\nslot           none yet: a spare") && !text.contains("restarts"), "{text}");
    }

    /// Every level counts its open streams, and apart those with a rate.
    #[test]
    fn the_quota_table_says_what_its_stream_counts_count() {
        let line = |level: &str, name: &str, open, rated| streamlet_proto::QuotaLine {
            name: name.into(),
            level: level.into(),
            capacity: None,
            reserved: 0,
            allocated: 0,
            free: None,
            streams: rated,
            leases: 0,
            max_streams: None,
            open_streams: open,
            rated_streams: rated,
        };
        let report = streamlet_proto::QuotaReport {
            lines: vec![line("host", "host", 1, 0), line("pool", "echo", 1, 0), line("tenant", "acme", 1, 0)],
            next: None,
        };
        let table = quota_table(&report);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].ends_with("FREE  STREAMS  RATED  LEASES  MAX_STREAMS"), "{table}");
        for row in &lines[1..4] {
            assert!(row.ends_with("-        1      0       0            -"), "{table}");
        }
        assert!(lines[4].starts_with("STREAMS: open streams; RATED: those of them under the quota"), "{table}");
    }

    #[test]
    fn empty_tables_say_so() {
        assert_eq!(workers_table(&[]), "POOL  ID  PID  STATE  STREAMS  UPTIME  SLOT RESTARTS\n(no streamlets)\n");
        assert!(streams_table(&[]).ends_with("STALLED\n(no streams)\n"));
    }

    #[test]
    fn status_table_starts_with_the_daemon_line() {
        let table = status_table(&status());
        assert_eq!(
            table,
            "streamletd 0.1.0, pid 99, up 2h03m, socket /run/streamlet/streamletd.sock\n\
             POOL  HANDLER  PLACEMENT     WORKERS  READY  STREAMS  CAPACITY\n\
             echo  echo     least_loaded        2      2        3        16\n"
        );
    }

    #[test]
    fn status_table_says_where_a_pool_listens_when_one_does() {
        let mut report = status();
        report.pools[0].listening = vec!["127.0.0.1:7000".into(), "[::1]:7000".into()];
        let mut other = report.pools[0].clone();
        other.name = "relay".into();
        other.listening.clear();
        report.pools.push(other);
        let table = status_table(&report);
        assert!(table.lines().nth(1).is_some_and(|l| l.ends_with("LISTEN")), "{table}");
        assert!(table.contains("127.0.0.1:7000,[::1]:7000"), "{table}");
        assert!(table.lines().last().is_some_and(|l| l.starts_with("relay") && l.ends_with('-')), "{table}");
    }

    /// What a gateway, a streamlet or a client may write into a field.
    const HOSTILE: &str = "x\x1b[2J\x07\r\n\u{9b}31m\x7f";
    const ESCAPED: &str = r"x\x1b[2J\x07\r\n\u{9b}31m\x7f";

    fn assert_safe(text: &str, lines: usize) {
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert_eq!(text.lines().count(), lines, "{text}");
        assert!(text.contains(ESCAPED), "{text}");
    }

    #[test]
    fn every_listing_escapes_the_fields_it_lays_out() {
        let mut w = worker(3, "echo", Some(ExitCause::ProtocolError { message: HOSTILE.into() }));
        w.labels = [("zone".to_owned(), HOSTILE.to_owned())].into();
        assert_safe(&workers_table(&[w.clone()]), 2);
        let detail = streamlet_proto::WorkerDetail {
            info: w,
            streams: vec![],
            deaths: vec![streamlet_proto::Death {
                worker: WorkerId(2),
                cause: ExitCause::ProtocolError { message: HOSTILE.into() },
                uptime_ms: 1,
                ago_ms: 1,
                streams: 0,
            }],
        };
        // Nine fields, a blank line, the deaths' title, header and row.
        assert_safe(&worker_detail(&detail), 13);
        let stream = StreamInfo {
            id: streamlet_proto::StreamId(1),
            pool: "echo".into(),
            tenant: HOSTILE.into(),
            worker: WorkerId(3),
            age_ms: 0,
            bytes_in: 0,
            bytes_out: 0,
            rate: None,
            priority: 0,
            sending: None,
            stalled_ms: 0,
        };
        assert_safe(&streams_table(&[stream]), 2);
        let tenant = streamlet_proto::QuotaLine {
            name: HOSTILE.into(),
            level: "tenant".into(),
            capacity: None,
            reserved: 0,
            allocated: 0,
            free: None,
            streams: 1,
            leases: 0,
            max_streams: None,
            open_streams: 1,
            rated_streams: 0,
        };
        // The title, the line, the note under them.
        assert_safe(&quota_table(&streamlet_proto::QuotaReport { lines: vec![tenant], next: None }), 3);
        let mut status = status();
        status.socket = HOSTILE.into();
        status.pools[0].errors = [(HOSTILE.to_owned(), 1)].into();
        assert_safe(&status_table(&status), 3);
    }

    #[test]
    fn pools_table_shows_current_desired_and_forecast() {
        let mut status = status();
        let mut predictive = status.pools[0].clone();
        predictive.name = "llm".into();
        predictive.autoscale = "predictive".into();
        predictive.forecast = Some(6);
        predictive.predicted_streams = Some(40);
        status.pools.push(predictive);
        assert_eq!(
            pools_table(&status),
            "POOL  AUTOSCALE   MIN  MAX  CURRENT  READY  DESIRED        FORECAST  STREAMS\n\
             echo  reactive      1    8        2      2        3               -        3\n\
             llm   predictive    1    8        2      2        3  6 (40 streams)        3\n"
        );
    }
}
