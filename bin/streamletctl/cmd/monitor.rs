//! `streamletctl worker <ID>`, `drain <ID>`, `kill <ID>` and `restart <POOL>`:
//! a streamlet's history, and the operator's hands on the monitor.

use serde_json::json;
use streamlet_client::proto::WorkerId;
use streamlet_client::{table, Client};

pub async fn worker(client: &mut Client, id: WorkerId, json: bool) -> anyhow::Result<()> {
    let detail = client.worker(id).await?;
    super::print(json, || table::worker_detail(&detail), || table::worker_json(&detail))
}

pub async fn drain(client: &mut Client, id: WorkerId, timeout_ms: Option<u64>, json: bool) -> anyhow::Result<()> {
    client.drain(id, timeout_ms).await?;
    let text = || {
        match timeout_ms {
        Some(ms) => format!("streamlet {id} is draining: it takes no new streams and exits when empty, or is killed in {ms} ms"),
        None => format!("streamlet {id} is draining: it takes no new streams and exits when empty, or at the daemon's shutdown timeout"),
    }
    };
    // `timeout`: seconds until it is killed, or null for the daemon's shutdown timeout.
    let timeout = timeout_ms.map(|ms| ms as f64 / 1000.0);
    super::say(json, text, || json!({ "worker": id.0, "state": "draining", "timeout": timeout }))
}

pub async fn kill(client: &mut Client, id: WorkerId, json: bool) -> anyhow::Result<()> {
    client.kill(id).await?;
    super::say(
        json,
        || format!("killed streamlet {id}; its slot is filled again at once"),
        || json!({ "worker": id.0, "killed": true }),
    )
}

pub async fn restart(client: &mut Client, pool: String, json: bool) -> anyhow::Result<()> {
    let accepted = client.restart(pool).await?;
    let ids: Vec<String> = accepted.workers.iter().map(ToString::to_string).collect();
    let text = || {
        format!(
            "restarting pool {}: streamlets {} are drained and replaced one at a time (`streamletctl workers` shows progress)",
            accepted.pool,
            ids.join(", ")
        )
    };
    let workers: Vec<u64> = accepted.workers.iter().map(|w| w.0).collect();
    super::say(json, text, || json!({ "pool": accepted.pool, "workers": workers }))
}

pub async fn reload(client: &mut Client, json: bool) -> anyhow::Result<()> {
    let summary = client.reload().await?;
    super::print(
        json,
        || format!("reloaded {}", table::reload_summary(&summary)),
        || serde_json::to_value(&summary).unwrap_or_default(),
    )
}

pub async fn scale(
    client: &mut Client,
    pool: &str,
    min: Option<u32>,
    max: Option<u32>,
    json: bool,
) -> anyhow::Result<()> {
    let accepted = client.scale(pool, min, max).await?;
    super::say(
        json,
        || {
            format!(
                "pool {}: {} to {} streamlets until the next reload; the autoscaler wants {} now",
                accepted.pool, accepted.min, accepted.max, accepted.desired
            )
        },
        || serde_json::to_value(&accepted).unwrap_or_default(),
    )
}
