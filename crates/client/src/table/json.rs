//! The listings as JSON for scripts (`--json`): a listing is an array of
//! flat objects, one thing (the daemon's status, a streamlet) an object.
//! docs/json.md documents every command's shape.
//!
//! Durations are seconds as floats; `last_exit` is the exit's description or
//! `null`. The field names are an interface: change them only by adding.

use serde::Serialize;
use serde_json::Value;
use streamlet_proto::{StatusReport, StreamInfo, WorkerInfo};

use super::human::seconds;

#[derive(Serialize)]
struct WorkerRow<'a> {
    pool: &'a str,
    id: u64,
    pid: u32,
    state: &'static str,
    streams: u32,
    capacity: u32,
    uptime: f64,
    restarts: u32,
    last_exit: Option<String>,
    /// From the streamlet's cgroup; absent without cgroups.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<UsageRow>,
    labels: &'a std::collections::BTreeMap<String, String>,
}

#[derive(Serialize)]
struct UsageRow {
    /// CPU time, seconds.
    cpu: f64,
    /// Time held back by the CPU quota, seconds.
    cpu_throttled: f64,
    memory: u64,
    memory_peak: u64,
    pids: u64,
    oom_kills: u64,
}

#[derive(Serialize)]
struct StreamRow<'a> {
    id: u64,
    pool: &'a str,
    tenant: &'a str,
    worker: u64,
    age: f64,
    bytes_in: u64,
    bytes_out: u64,
    /// The allocated rate, bytes per second; null without quota.
    rate: Option<u64>,
    priority: u8,
    /// How fast it sent lately, bytes per second; null before the first measure.
    sending: Option<u64>,
    /// Seconds its writes waited for its rate.
    stalled: f64,
}

#[derive(Serialize)]
struct PoolRow<'a> {
    pool: &'a str,
    handler: &'a str,
    placement: &'a str,
    workers: u32,
    ready: u32,
    streams: u32,
    capacity: u32,
    /// Seconds its restarts stay paused by the crash-loop breaker; null when not degraded.
    degraded_for: Option<f64>,
    /// Error counts by kind.
    errors: &'a std::collections::BTreeMap<String, u64>,
    /// Where the daemon accepts the pool's clients itself; empty without `listen`.
    listening: &'a [String],
}

#[derive(Serialize)]
struct ScaleRow<'a> {
    pool: &'a str,
    autoscale: &'a str,
    min: u32,
    max: u32,
    /// Streamlets now (ready or starting), and ready.
    current: u32,
    ready: u32,
    /// Streamlets the autoscaler wants.
    desired: u32,
    /// Streamlets the forecast asks for; null without a forecast.
    forecast: Option<u32>,
    /// Concurrent streams the forecast expects over the lead window.
    predicted_streams: Option<u32>,
    streams: u32,
}

/// One object per pool: `pool, autoscale, min, max, current, ready, desired,
/// forecast, predicted_streams, streams`.
pub fn pools_json(status: &StatusReport) -> Value {
    rows(status.pools.iter().map(|p| ScaleRow {
        pool: &p.name,
        autoscale: &p.autoscale,
        min: p.min,
        max: p.max,
        current: p.slots,
        ready: p.ready,
        desired: p.desired,
        forecast: p.forecast,
        predicted_streams: p.predicted_streams,
        streams: p.streams,
    }))
}

#[derive(Serialize)]
struct DeathRow {
    worker: u64,
    cause: String,
    /// Seconds it ran, and seconds since it died.
    uptime: f64,
    ago: f64,
    streams: u32,
}

/// One streamlet as in `workers_json`, with `streams` (its stream ids) as
/// `stream_ids` and `deaths` (its slot's, newest first: `worker, cause,
/// uptime, ago, streams`).
pub fn worker_json(detail: &streamlet_proto::WorkerDetail) -> Value {
    let mut row = workers_json(std::slice::from_ref(&detail.info));
    let Some(object) = row.get_mut(0).and_then(Value::as_object_mut) else { return Value::Null };
    let ids: Vec<u64> = detail.streams.iter().map(|s| s.0).collect();
    object.insert("stream_ids".into(), serde_json::json!(ids));
    let deaths: Vec<DeathRow> = detail
        .deaths
        .iter()
        .map(|d| DeathRow {
            worker: d.worker.0,
            cause: d.cause.to_string(),
            uptime: seconds(d.uptime_ms),
            ago: seconds(d.ago_ms),
            streams: d.streams,
        })
        .collect();
    object.insert("deaths".into(), serde_json::to_value(deaths).unwrap_or(Value::Null));
    row[0].take()
}

/// One object per streamlet: `pool, id, pid, state, streams, capacity, uptime, restarts, last_exit,
/// labels`, and `usage` (`cpu, cpu_throttled, memory, memory_peak, pids, oom_kills`) with cgroups.
pub fn workers_json(workers: &[WorkerInfo]) -> Value {
    rows(workers.iter().map(|w| WorkerRow {
        pool: &w.pool,
        id: w.id.0,
        pid: w.pid,
        state: w.state.as_str(),
        streams: w.streams,
        capacity: w.capacity,
        uptime: seconds(w.uptime_ms),
        restarts: w.restarts,
        last_exit: w.last_exit.as_ref().map(ToString::to_string),
        usage: w.usage.map(|u| UsageRow {
            cpu: u.cpu_usage_us as f64 / 1e6,
            cpu_throttled: u.cpu_throttled_us as f64 / 1e6,
            memory: u.memory_current,
            memory_peak: u.memory_peak,
            pids: u.pids,
            oom_kills: u.oom_kills,
        }),
        labels: &w.labels,
    }))
}

/// One object per stream: `id, pool, tenant, worker, age, bytes_in, bytes_out, rate, priority, sending, stalled`.
pub fn streams_json(streams: &[StreamInfo]) -> Value {
    rows(streams.iter().map(|s| StreamRow {
        id: s.id.0,
        pool: &s.pool,
        tenant: &s.tenant,
        worker: s.worker.0,
        age: seconds(s.age_ms),
        bytes_in: s.bytes_in,
        bytes_out: s.bytes_out,
        rate: s.rate,
        priority: s.priority,
        sending: s.sending,
        stalled: seconds(s.stalled_ms),
    }))
}

#[derive(Serialize)]
struct StatusRow<'a> {
    version: &'a str,
    pid: u32,
    /// Seconds since the daemon started.
    uptime: f64,
    socket: &'a str,
    pools: Value,
}

/// The daemon, `version, pid, uptime, socket`, and `pools`, one object per
/// pool: `pool, handler, placement, workers, ready, streams, capacity,
/// degraded_for, errors, listening`.
pub fn status_json(status: &StatusReport) -> Value {
    let row = StatusRow {
        version: &status.version,
        pid: status.pid,
        uptime: seconds(status.uptime_ms),
        socket: &status.socket,
        pools: status_pools_json(status),
    };
    serde_json::to_value(row).unwrap_or(Value::Null)
}

fn status_pools_json(status: &StatusReport) -> Value {
    rows(status.pools.iter().map(|p| PoolRow {
        pool: &p.name,
        handler: &p.handler,
        placement: &p.placement,
        workers: p.workers,
        ready: p.ready,
        streams: p.streams,
        capacity: p.capacity,
        degraded_for: p.degraded_for_ms.map(seconds),
        errors: &p.errors,
        listening: &p.listening,
    }))
}

/// One object per line of the quota report: `level, name, capacity, reserved,
/// allocated, free, streams, leases, max_streams` (rates in bytes per second;
/// null where there is no limit).
pub fn quota_json(report: &streamlet_proto::QuotaReport) -> Value {
    serde_json::to_value(&report.lines).unwrap_or(Value::Null)
}

fn rows<T: Serialize>(rows: impl Iterator<Item = T>) -> Value {
    // Serializing these structs cannot fail: every field is a string, a number
    // or an option of one.
    Value::Array(rows.map(|row| serde_json::to_value(row).unwrap_or(Value::Null)).collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use streamlet_proto::{ExitCause, StreamId, WorkerId};

    use super::*;
    use crate::table::tests::{status, worker};

    fn keys(value: &Value) -> Vec<&str> {
        let mut keys: Vec<&str> = value[0].as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    #[test]
    fn workers_have_the_documented_fields() {
        let value = workers_json(&[worker(3, "echo", Some(ExitCause::Exited { code: 1 }))]);
        assert_eq!(
            keys(&value),
            ["capacity", "id", "labels", "last_exit", "pid", "pool", "restarts", "state", "streams", "uptime"]
        );
        assert_eq!(value[0]["labels"], json!({}));
        assert_eq!(value[0]["uptime"], json!(252.0));
        assert_eq!(value[0]["state"], json!("ready"));
        assert_eq!(value[0]["last_exit"], json!("exit code 1"));
        assert_eq!(workers_json(&[worker(3, "echo", None)])[0]["last_exit"], Value::Null);
    }

    #[test]
    fn streams_have_the_documented_fields() {
        let stream = StreamInfo {
            id: StreamId(5),
            pool: "echo".into(),
            tenant: "acme".into(),
            worker: WorkerId(2),
            age_ms: 1500,
            bytes_in: 10,
            bytes_out: 20,
            rate: None,
            priority: 0,
            sending: None,
            stalled_ms: 2500,
        };
        let value = streams_json(&[stream]);
        assert_eq!(
            keys(&value),
            [
                "age",
                "bytes_in",
                "bytes_out",
                "id",
                "pool",
                "priority",
                "rate",
                "sending",
                "stalled",
                "tenant",
                "worker"
            ]
        );
        assert_eq!(value[0]["stalled"], json!(2.5));
        assert_eq!(value[0]["age"], json!(1.5));
        assert_eq!(value[0]["worker"], json!(2));
    }

    #[test]
    fn status_is_the_daemon_and_its_pools() {
        let value = status_json(&status());
        let mut daemon: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        daemon.sort_unstable();
        assert_eq!(daemon, ["pid", "pools", "socket", "uptime", "version"]);
        assert_eq!((&value["pid"], &value["version"], &value["uptime"]), (&json!(99), &json!("0.1.0"), &json!(7380.0)));
        assert_eq!(value["socket"], json!("/run/streamlet/streamletd.sock"));
        let pools = &value["pools"];
        assert_eq!(
            keys(pools),
            [
                "capacity",
                "degraded_for",
                "errors",
                "handler",
                "listening",
                "placement",
                "pool",
                "ready",
                "streams",
                "workers"
            ]
        );
        assert_eq!(pools[0]["pool"], json!("echo"));
        assert_eq!(pools[0]["degraded_for"], Value::Null);
        let mut degraded = status();
        degraded.pools[0].degraded_for_ms = Some(1500);
        assert_eq!(status_json(&degraded)["pools"][0]["degraded_for"], json!(1.5));
        let table = crate::table::status_table(&degraded);
        assert!(table.contains("degraded: crash loop, restarts paused 1s more"), "{table}");
    }

    #[test]
    fn a_worker_in_detail_has_its_streams_and_deaths() {
        let detail = streamlet_proto::WorkerDetail {
            info: worker(3, "echo", Some(ExitCause::Hung { silent_ms: 2100 })),
            streams: vec![StreamId(7), StreamId(9)],
            deaths: vec![streamlet_proto::Death {
                worker: WorkerId(2),
                cause: ExitCause::Hung { silent_ms: 2100 },
                uptime_ms: 61_000,
                ago_ms: 4_000,
                streams: 3,
            }],
        };
        let value = worker_json(&detail);
        assert_eq!(value["stream_ids"], json!([7, 9]));
        assert_eq!(value["deaths"][0]["cause"], json!("hung (silent for 2100 ms)"));
        assert_eq!(value["deaths"][0]["ago"], json!(4.0));
        let text = crate::table::worker_detail(&detail);
        assert!(text.contains("stream ids     7 9"), "{text}");
        assert!(text.lines().any(|l| l.contains("2") && l.ends_with("hung (silent for 2100 ms)")), "{text}");
    }

    #[test]
    fn empty_listings_are_empty_arrays() {
        assert_eq!(workers_json(&[]), json!([]));
        assert_eq!(streams_json(&[]), json!([]));
    }
}
