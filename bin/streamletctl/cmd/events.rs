//! `streamletctl events [-f] [--json]`: the daemon's latest lifecycle
//! events, then (with `-f`) each new one as it happens, until Ctrl-C or the
//! daemon goes away. With `--json`, one object a line (a stream of events
//! has no end to close an array with): `seq, at_ms, event`, `seq` null for
//! those that follow, which the daemon sends unnumbered.

use serde_json::{json, Value};
use streamlet_client::proto::{Event, LoggedEvent};
use streamlet_client::{table, Client};

use crate::out;

pub async fn run(client: &mut Client, recent: u32, follow: bool, json: bool) -> anyhow::Result<()> {
    let log = client.events(Some(recent), follow).await?;
    for logged in &log.events {
        if json {
            out::json_line(&logged_json(logged))?;
        } else {
            out::listing(&table::event_line(logged.at_ms, &logged.event))?;
        }
    }
    if !follow {
        return Ok(());
    }
    loop {
        let event = tokio::select! {
            event = client.next_event() => event?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let at_ms =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        if json {
            out::json_line(&json!({ "seq": null, "at_ms": at_ms, "event": event }))?;
        } else {
            out::listing(&table::event_line(at_ms, &event))?;
        }
        if matches!(event, Event::SubscriberDropped(_)) {
            anyhow::bail!("the daemon dropped this subscriber for reading too slowly; run it again");
        }
    }
}

/// An event of the daemon's log as `--json` prints it: `seq, at_ms, event`.
pub fn logged_json(logged: &LoggedEvent) -> Value {
    json!({ "seq": logged.seq, "at_ms": logged.at_ms, "event": logged.event })
}
