//! `top` without a terminal: what the live view shows, once. The daemon's
//! line and its pools (as `status`), its streamlets (as `workers`, with CPU
//! time, since a CPU% needs two samples) and its latest events (as
//! `events`); as JSON, an object with those three, in the shapes
//! docs/json.md gives them.

use serde_json::{json, Value};
use streamlet_client::proto::LoggedEvent;
use streamlet_client::{table, Client};

use crate::cmd::events::logged_json;
use crate::out;

/// The latest events a snapshot shows.
const EVENTS: u32 = 20;

struct Snapshot {
    status: streamlet_client::proto::StatusReport,
    workers: Vec<streamlet_client::proto::WorkerInfo>,
    events: Vec<LoggedEvent>,
}

async fn take(client: &mut Client) -> anyhow::Result<Snapshot> {
    let status = client.status().await?;
    let workers = client.workers(None).await?;
    let events = client.events(Some(EVENTS), false).await?.events;
    Ok(Snapshot { status, workers, events })
}

/// The snapshot as text, each part as its own command prints it.
pub async fn text(client: &mut Client) -> anyhow::Result<()> {
    let s = take(client).await?;
    let mut text = table::status_table(&s.status);
    text.push('\n');
    text.push_str(&table::workers_table(&s.workers));
    text.push_str("\nlatest events\n");
    if s.events.is_empty() {
        text.push_str("(no events)\n");
    }
    for logged in &s.events {
        text.push_str(&table::event_line(logged.at_ms, &logged.event));
        text.push('\n');
    }
    out::listing(&text)
}

/// The snapshot as one JSON object: `status`, `workers`, `events`.
pub async fn json(client: &mut Client) -> anyhow::Result<()> {
    let s = take(client).await?;
    let events: Vec<Value> = s.events.iter().map(logged_json).collect();
    out::json(&json!({
        "status": table::status_json(&s.status),
        "workers": table::workers_json(&s.workers),
        "events": events,
    }))
}
